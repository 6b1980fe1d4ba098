"""`SizeDistribution`: histogram, KDE, maximum-likelihood fits and summary of one quantity."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ._columns import column_unit

__all__ = ["Fit", "SizeDistribution"]

_FIT_NAMES = ("lognormal", "normal")


@dataclass(frozen=True)
class Fit:
    """A distribution fitted by maximum likelihood.

    Attributes
    ----------
    name : {"lognormal", "normal"}
    params : dict
        lognormal: ``mu``, ``sigma`` of log(values) (median = exp(mu)); normal: ``mean``,
        ``std``. Both are the closed-form maximum-likelihood estimates (ddof=0).
    log_likelihood, aic : float
        AIC = 2 k - 2 log L with k = 2 parameters.
    ks_statistic, ks_pvalue : float
        One-sample Kolmogorov-Smirnov test of the values against the fitted law (the
        p-value is optimistic since the parameters were fitted on the same values).
    """

    name: str
    params: dict
    log_likelihood: float
    aic: float
    ks_statistic: float
    ks_pvalue: float

    def frozen(self):
        """The fitted law as a frozen `scipy.stats` distribution."""
        from scipy import stats

        if self.name == "lognormal":
            return stats.lognorm(s=self.params["sigma"], scale=math.exp(self.params["mu"]))
        return stats.norm(loc=self.params["mean"], scale=self.params["std"])

    def pdf(self, x):
        return self.frozen().pdf(x)


class SizeDistribution:
    """Distribution of one particle quantity: histogram, KDE, log-normal and normal fits.

    Parameters
    ----------
    values : (K,) array-like
        One value per particle (e.g. ``table["equivalent_diameter"]``). NaNs are dropped.
    unit : str, optional
        Unit of the values, shown on plot axes and in `summary` ("" for ratios).
    name : str
        What the values are, for labels (default "size").
    bins : "auto", str, int or sequence
        Histogram bins: a `numpy.histogram_bin_edges` rule ("auto" = the larger of the
        Freedman-Diaconis and Sturges bin counts), a number of bins, or explicit edges.

    Examples
    --------
    >>> import numpy as np
    >>> d = np.random.default_rng(0).lognormal(np.log(20), 0.25, 2000)
    >>> psd = SizeDistribution(d, unit="nm", name="diameter")
    >>> round(psd.fits["lognormal"].params["sigma"], 2), psd.best_fit.name
    (0.25, 'lognormal')
    """

    def __init__(self, values, *, unit: str = "", name: str = "size", bins="auto"):
        try:
            arr = np.array(values, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise ValueError("values must be numbers") from None
        arr = arr[~np.isnan(arr)]
        if not np.all(np.isfinite(arr)):
            raise ValueError("values contain infinities")
        if arr.size == 0:
            raise ValueError("values is empty: no particles to make a distribution from")
        if isinstance(bins, str):
            pass
        elif np.ndim(bins) == 0:
            if int(bins) < 1:
                raise ValueError(f"bins must be >= 1, got {bins!r}")
            bins = int(bins)
        else:
            bins = np.asarray(bins, dtype=np.float64)
            if bins.ndim != 1 or len(bins) < 2 or np.any(np.diff(bins) <= 0):
                raise ValueError("bins as edges must be an increasing sequence of >= 2 numbers")
        self.values = arr
        self.values.setflags(write=False)
        self.unit = unit
        self.name = name
        self.bins = bins

    @classmethod
    def from_table(cls, table, column: str = "equivalent_diameter", **kwargs):
        """The distribution of one column of a `measure` table, with its unit."""
        if column not in table.columns:
            raise ValueError(f"table has no column {column!r}; columns: {list(table.columns)}")
        unit = table.attrs.get("units", {}).get(column)
        if unit is None:
            unit = column_unit(column, table.attrs.get("unit", "px"))
        kwargs.setdefault("unit", unit)
        kwargs.setdefault("name", column.replace("_", " "))
        return cls(table[column].to_numpy(dtype=np.float64), **kwargs)

    def __len__(self) -> int:
        return int(self.values.size)

    def __repr__(self) -> str:
        return f"SizeDistribution(name={self.name!r}, n={len(self)}, unit={self.unit!r})"

    # ------------------------------------------------------------------ histogram & KDE
    @cached_property
    def edges(self) -> np.ndarray:
        """Histogram bin edges."""
        v = self.values
        if not isinstance(self.bins, str):
            return np.histogram_bin_edges(v, bins=self.bins)
        if np.ptp(v) == 0:
            return np.array([v[0] - 0.5, v[0] + 0.5])
        return np.histogram_bin_edges(v, bins=self.bins)

    def histogram(self, density: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(counts, edges)``; with ``density=True`` counts are normalised to unit area."""
        counts, edges = np.histogram(self.values, bins=self.edges, density=density)
        return counts, edges

    def kde(self, x) -> np.ndarray:
        """Gaussian kernel density estimate (Scott's bandwidth) at `x`."""
        x = np.asarray(x, dtype=np.float64)
        if len(self) < 2 or np.ptp(self.values) == 0:
            return np.full(x.shape, np.nan)
        from scipy.stats import gaussian_kde

        return gaussian_kde(self.values)(x)

    # ------------------------------------------------------------------ fits
    @cached_property
    def fits(self) -> dict[str, Fit]:
        """Maximum-likelihood fits: "normal" always, "lognormal" when all values are > 0."""
        from scipy import stats

        v = self.values
        out = {}
        if len(v) < 2 or np.ptp(v) == 0:
            return out
        if np.all(v > 0):
            logv = np.log(v)
            mu, sigma = float(logv.mean()), float(logv.std())
            law = stats.lognorm(s=sigma, scale=math.exp(mu))
            ll = float(law.logpdf(v).sum())
            ks = stats.kstest(v, law.cdf)
            out["lognormal"] = Fit("lognormal", {"mu": mu, "sigma": sigma}, ll, 4 - 2 * ll,
                                   float(ks.statistic), float(ks.pvalue))
        mean, std = float(v.mean()), float(v.std())
        law = stats.norm(loc=mean, scale=std)
        ll = float(law.logpdf(v).sum())
        ks = stats.kstest(v, law.cdf)
        out["normal"] = Fit("normal", {"mean": mean, "std": std}, ll, 4 - 2 * ll,
                            float(ks.statistic), float(ks.pvalue))
        return out

    @property
    def best_fit(self) -> Fit | None:
        """The fit with the lowest AIC (None with fewer than 2 distinct values)."""
        if not self.fits:
            return None
        return min(self.fits.values(), key=lambda f: f.aic)

    # ------------------------------------------------------------------ summary
    def percentile(self, q) -> float:
        """Number-weighted percentile (q in 0..100), linear interpolation."""
        return float(np.percentile(self.values, q))

    @property
    def mode(self) -> float:
        """Position of the KDE's maximum (the sample value when all values are equal)."""
        v = self.values
        if len(v) < 2 or np.ptp(v) == 0:
            return float(v[0])
        grid = np.linspace(v.min(), v.max(), 1024)
        return float(grid[np.argmax(self.kde(grid))])

    def confidence_interval(self, statistic: str = "d50",
                            level: float = 0.95) -> tuple[float, float]:
        """Sampling confidence interval of the mean or of a percentile.

        How far the statistic could move had other particles of the same population been
        measured; it does not include the segmentation's own error (an adapted model's
        held-out D50 error says that).

        statistic : "mean", "median", or "d<q>" for the q-th percentile ("d10", "d50", ...)
            The mean's interval is Student's t. A percentile's is distribution-free, from
            order statistics: ``[x_(l), x_(u)]`` with ranks from the binomial law, coverage
            at least `level` for any continuous distribution.
        level : float in (0, 1)

        Returns ``(nan, nan)`` when there are too few particles for that level (a
        percentile's interval then reaches past the smallest or largest value).
        """
        from scipy import stats

        if not (isinstance(level, (int, float)) and 0 < level < 1):
            raise ValueError(f"level must be in (0, 1), got {level!r}")
        v = np.sort(self.values)
        n = len(v)
        alpha = 1 - level
        if statistic == "mean":
            if n < 2:
                return (float("nan"), float("nan"))
            half = stats.t.ppf(1 - alpha / 2, n - 1) * v.std(ddof=1) / np.sqrt(n)
            return (float(v.mean() - half), float(v.mean() + half))
        q = 50.0 if statistic == "median" else None
        if q is None and isinstance(statistic, str) and statistic[:1] == "d":
            try:
                q = float(statistic[1:])
            except ValueError:
                q = None
        if q is None or not 0 < q < 100:
            raise ValueError(f"statistic must be 'mean', 'median' or 'd<q>' with 0 < q < 100 "
                             f"(e.g. 'd50'), got {statistic!r}")
        p = q / 100
        # ranks (1-based) l and u with P(B < l) <= alpha/2 and P(B >= u) <= alpha/2,
        # B ~ Binomial(n, p): the true percentile lies in [x_(l), x_(u)] with >= level
        low = int(stats.binom.ppf(alpha / 2, n, p))
        high = int(stats.binom.ppf(1 - alpha / 2, n, p)) + 1
        if low < 1 or high > n:
            return (float("nan"), float("nan"))
        return (float(v[low - 1]), float(v[high - 1]))

    def summary(self, level: float = 0.95):
        """count, mean, std (ddof=1), median, mode, D10/D50/D90, geometric mean and
        geometric standard deviation (exp of the std of the logs, ddof=1, positive values
        only), and the best fit with its KS statistic; a `pandas.Series`. The mean and
        D10/D50/D90 come with their sampling confidence intervals at `level`
        (`confidence_interval`: ``mean_ci_low``, ``mean_ci_high``, ``d50_ci_low``, ...)."""
        import pandas as pd

        v = self.values
        n = len(v)
        positive = np.all(v > 0)
        logv = np.log(v) if positive else None
        best = self.best_fit
        data = {
            "count": n,
            "mean": float(v.mean()),
            "std": float(v.std(ddof=1)) if n > 1 else float("nan"),
            "median": float(np.median(v)),
            "mode": self.mode,
            "d10": self.percentile(10),
            "d50": self.percentile(50),
            "d90": self.percentile(90),
            "geometric_mean": float(np.exp(logv.mean())) if positive else float("nan"),
            "geometric_std": float(np.exp(logv.std(ddof=1))) if positive and n > 1
            else float("nan"),
            **{f"{stat}_ci_{end}": value for stat in ("mean", "d10", "d50", "d90")
               for end, value in zip(("low", "high"), self.confidence_interval(stat, level))},
            "best_fit": best.name if best else None,
            "best_fit_ks": best.ks_statistic if best else float("nan"),
        }
        for fit in self.fits.values():
            for key, value in fit.params.items():
                data[f"{fit.name}_{key}"] = value
            data[f"{fit.name}_aic"] = fit.aic
        series = pd.Series(data, name=self.name, dtype=object)
        series.attrs["unit"] = self.unit
        return series

    # ------------------------------------------------------------------ output
    def _axis_label(self) -> str:
        return f"{self.name} ({self.unit})" if self.unit else self.name

    def plot(self, ax=None, *, kde: bool = True, fits=("lognormal", "normal"), title=None,
             d50: bool = True):
        """Histogram (as density) with the KDE, fitted curves and the D50 with its 95 %
        confidence interval.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Draw into this axes; otherwise a new `matplotlib.figure.Figure` is made
            (no pyplot, safe in scripts and servers).
        kde : bool
            Draw the kernel density estimate.
        fits : sequence of {"lognormal", "normal"}
            Fitted laws to draw (those that could be fitted); the best by AIC is marked.
        d50 : bool
            Mark the D50 (a line) and its 95 % sampling interval (a band, when there are
            enough particles for one: `confidence_interval`).

        Returns
        -------
        matplotlib.figure.Figure
            Save with ``fig.savefig("psd.png")`` or `save`.
        """
        from matplotlib.figure import Figure

        if ax is None:
            fig = Figure(figsize=(6, 4), layout="constrained")
            ax = fig.add_subplot()
        else:
            fig = ax.figure
        _counts, edges = self.histogram(density=True)
        ax.hist(self.values, bins=edges, density=True, color="0.75", edgecolor="0.35",
                label=f"histogram (n = {len(self)})")
        pad = 0.05 * (edges[-1] - edges[0])
        x = np.linspace(max(edges[0] - pad, 0 if np.all(self.values > 0) else -np.inf),
                        edges[-1] + pad, 400)
        if kde and len(self) > 1 and np.ptp(self.values) > 0:
            ax.plot(x, self.kde(x), color="C0", lw=2, label="KDE")
        best = self.best_fit
        styles = {"lognormal": ("C3", "-"), "normal": ("C2", "--")}
        for name in fits:
            if name not in _FIT_NAMES:
                raise ValueError(f"unknown fit {name!r}; choose from {_FIT_NAMES}")
            fit = self.fits.get(name)
            if fit is None:
                continue
            colour, style = styles[name]
            params = ", ".join(f"{k} = {v:.3g}" for k, v in fit.params.items())
            mark = " (best AIC)" if best is not None and fit.name == best.name else ""
            ax.plot(x, fit.pdf(x), color=colour, ls=style, lw=1.5,
                    label=f"{name}: {params}{mark}")
        if d50:
            median = self.percentile(50)
            low, high = self.confidence_interval("d50")
            unit = f" {self.unit}" if self.unit else ""
            text = f"D50 = {median:.3g}{unit}"
            if np.isfinite(low):
                ax.axvspan(low, high, color="C1", alpha=0.15, lw=0)
                text += f" (95 % CI {low:.3g}-{high:.3g})"
            ax.axvline(median, color="C1", lw=1.5, label=text)
        ax.set_xlabel(self._axis_label())
        ax.set_ylabel(f"probability density (1/{self.unit})" if self.unit
                      else "probability density")
        if title is not None:
            ax.set_title(title)
        ax.legend(fontsize="small", frameon=False)
        return fig

    def save(self, path, *, overwrite: bool = False, dpi: int = 150, **plot_kwargs) -> Path:
        """Plot and save the figure (format from the suffix: .png, .svg, .pdf), atomically."""
        from ..io import atomic_path

        path = Path(path)
        fmt = path.suffix.lower().lstrip(".")
        if fmt not in ("png", "svg", "pdf"):
            raise ValueError(f"save as .png, .svg or .pdf, got {path.name!r}")
        fig = self.plot(**plot_kwargs)
        with atomic_path(path, overwrite=overwrite) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi)
        return path

    def histogram_table(self):
        """The histogram as a DataFrame: bin edges, centre, count, density, and the KDE
        and fitted densities at the bin centres."""
        import pandas as pd

        counts, edges = self.histogram()
        density, _ = self.histogram(density=True)
        centre = (edges[:-1] + edges[1:]) / 2
        table = pd.DataFrame({"bin_left": edges[:-1], "bin_right": edges[1:],
                              "bin_centre": centre, "count": counts, "density": density,
                              "kde": self.kde(centre)})
        for name, fit in self.fits.items():
            table[f"{name}_pdf"] = fit.pdf(centre)
        table.attrs["unit"] = self.unit
        return table

    def to_csv(self, path, *, overwrite: bool = False) -> Path:
        """Write `histogram_table` as CSV (atomically; never replaces a file unless asked)."""
        from ..io import atomic_path

        path = Path(path)
        with atomic_path(path, overwrite=overwrite) as tmp:
            self.histogram_table().to_csv(tmp, index=False)
        return path

