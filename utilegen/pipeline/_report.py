"""`Report`: the masks, the particle table, the batch distributions and summaries of an
`analyze` run, and how it is saved."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from ..io import unique_names
from ._files import _safe_name, _write_png, _write_text
from ._overlay import overlay

#: The quantity of the particle size distribution (PSD) and of `Report.summary`.
SIZE_COLUMN = "equivalent_diameter"
#: Quantities for which `Report.distributions` holds a batch `SizeDistribution`.
DISTRIBUTION_COLUMNS = ("equivalent_diameter", "feret_diameter_max", "feret_diameter_min",
                        "aspect_ratio", "circularity")
# Shape statistics averaged per image in the summary.
_SHAPE_STATS = ("aspect_ratio", "circularity", "solidity", "roundness")


class Report:
    """The result of `analyze`: masks, the particle table, distributions and summaries.

    Attributes
    ----------
    ids : list of str
        Ids of the images analyzed, in input order (failed images are not included).
    masks : dict of str -> InstanceMask
        The predicted instances of every image (all of them, including those excluded from
        the table for touching the border).
    images : dict of str -> (M, N) ndarray
        The micrographs, as read (for overlays).
    particles : pandas.DataFrame
        One row per measured particle: ``image_id``, ``image_class`` (the image's shape
        class: from a per-particle classifier, the shape of highest mean probability; from
        an image classifier, its answer; empty with the rules alone), ``shape_class`` (per
        particle, from the classifier or the morphometry rules), ``shape_rules`` (the
        rules' answer, beside a per-particle classifier's), then every column of
        `utilegen.morphometry.measure`. ``particles.attrs["units"]`` gives the unit of
        each column.
    summary : pandas.DataFrame
        One row for the whole batch (``image_id == "all"``) and one per image: particle
        count, calibration, the resize factor the segmenter used (``segmentation_scale``;
        ``report.json`` also says why), the size distribution's statistics
        (``equivalent_diameter_*``: mean, std, median, mode, D10/D50/D90, geometric
        mean/std, log-normal fit, and 95 % sampling confidence intervals of the mean and of
        D10/D50/D90, ``*_ci_low`` / ``*_ci_high``: how far they could move with other
        particles of the same sample), the mean shape descriptors and the fraction of
        particles of each shape (``fraction_sphere``, ...: counts of ``shape_class``, which
        may differ from the image class, a mean of probabilities).
    distributions : dict of str -> SizeDistribution
        Batch distributions of `DISTRIBUTION_COLUMNS` (empty when no particle was found).
    classes : dict of str -> str or None
        Image-level shape class per image (None with the rules alone).
    calibration : dict of str -> (pixel_size, unit)
    errors : list of (str, str)
        ``(image id or file, message)`` for every input that was skipped.
    warnings : list of str
    settings : dict
        What was run (parameters, models), written to ``report.json`` by `save`.
    """

    def __init__(self, *, ids, masks, images, particles, classes, calibration, errors,
                 warnings, settings, calibration_info=None, segmentation_info=None):
        self.ids = list(ids)
        self.masks = dict(masks)
        self.images = dict(images)
        self.particles = particles
        self.classes = dict(classes)
        self.calibration = dict(calibration)
        # per image: {"source": "metadata:..."|"scale bar"|"user"|"none", "pixel_size",
        # "unit", "relative_error" (a scale bar's one pixel, as a fraction; else None),
        # and the scale bar found ("box", "label", "confidence", ...)}
        self.calibration_info = dict(calibration_info or {})
        # per image, for a StarDist segmenter: {"scale" (resize factor used), "mode"
        # ("fixed" | "auto" | "sweep"), "passes", "reason", "particle_width_px" (auto)}
        self.segmentation_info = dict(segmentation_info or {})
        self.errors = list(errors)
        self.warnings = list(warnings)
        self.settings = dict(settings)
        self.distributions = self._distributions()
        self.summary = self._summary()

    def __repr__(self) -> str:
        return (f"Report({len(self.ids)} images, {len(self.particles)} particles, "
                f"{len(self.errors)} errors)")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def unit(self) -> str:
        """The length unit of the batch distributions (the most common image unit)."""
        units = [u for _, u in (self.calibration[i] for i in self.ids)]
        return Counter(units).most_common(1)[0][0] if units else "px"

    def count(self, image_id: str) -> int:
        """Number of measured particles in one image."""
        return int((self.particles["image_id"] == image_id).sum())

    def _batch_table(self):
        """Particles of the images in the batch's unit (mixed units are never pooled)."""
        unit = self.unit
        same = [i for i in self.ids if self.calibration[i][1] == unit]
        table = self.particles[self.particles["image_id"].isin(same)]
        table.attrs = dict(self.particles.attrs)
        return table

    def _distributions(self) -> dict:
        from ..morphometry import SizeDistribution

        table = self._batch_table()
        units = {c: _column_unit(c, self.unit) for c in DISTRIBUTION_COLUMNS}
        out = {}
        if len(table) == 0:
            return out
        for column in DISTRIBUTION_COLUMNS:
            values = table[column].to_numpy(dtype=np.float64)
            if np.isfinite(values).any():
                out[column] = SizeDistribution(values[np.isfinite(values)], unit=units[column],
                                               name=column.replace("_", " "))
        return out

    def _summary_row(self, image_id, table, pixel_size, unit, image_class):
        from ..morphometry import SizeDistribution

        info = self.calibration_info.get(image_id) or {}
        seg = self.segmentation_info.get(image_id) or {}
        row = {"image_id": image_id, "image_class": image_class, "particles": len(table),
               "pixel_size": pixel_size, "unit": unit,
               "calibration_source": info.get("source"),
               "segmentation_scale": seg.get("scale")}
        values = table[SIZE_COLUMN].to_numpy(dtype=np.float64) if len(table) else np.array([])
        values = values[np.isfinite(values)]
        keys = ("mean", "std", "median", "mode", "d10", "d50", "d90", "geometric_mean",
                "geometric_std", "best_fit", "lognormal_mu", "lognormal_sigma",
                *(f"{stat}_ci_{end}" for stat in ("mean", "d10", "d50", "d90")
                  for end in ("low", "high")))
        stats = SizeDistribution(values, unit=unit).summary() if values.size else {}
        for key in keys:
            value = stats.get(key, None) if len(stats) else None
            row[f"{SIZE_COLUMN}_{key}"] = (value if key == "best_fit"
                                           else float("nan") if value is None else float(value))
        for column in _SHAPE_STATS:
            row[f"{column}_mean"] = float(table[column].mean()) if len(table) else float("nan")
        shapes = table["shape_class"].dropna() if len(table) else table.get("shape_class", [])
        for name in self._shape_names():
            row[f"fraction_{name}"] = (float((shapes == name).mean()) if len(shapes)
                                       else float("nan"))
        return row

    def _shape_names(self) -> list[str]:
        """Per-particle shape names in the table, in utilegen.classify's order."""
        found = set(self.particles["shape_class"].dropna()) if len(self.particles) else set()
        order = ("sphere", "cube", "rod", "other")
        return [n for n in order if n in found] + sorted(found - set(order))

    def _summary(self):
        import pandas as pd

        rows = []
        if self.ids:
            batch = self._batch_table()
            classes = {c for c in self.classes.values() if c is not None}
            batch_class = classes.pop() if len(classes) == 1 else None
            size = self.settings.get("pixel_size")
            rows.append(self._summary_row("all", batch, size if isinstance(size, (int, float))
                                          else float("nan"),
                                          self.unit, batch_class))
        for image_id in self.ids:
            table = self.particles[self.particles["image_id"] == image_id]
            size, unit = self.calibration[image_id]
            rows.append(self._summary_row(image_id, table, size, unit, self.classes.get(image_id)))
        summary = pd.DataFrame(rows)
        if summary.empty:
            summary = pd.DataFrame(columns=["image_id", "image_class", "particles",
                                            "pixel_size", "unit"])
        return summary

    # ------------------------------------------------------------------ output
    def overlay(self, image_id: str) -> np.ndarray:
        """(M, N, 3) uint8 RGB: the image with its particle outlines and labels (see `overlay`)."""
        if image_id not in self.masks:
            raise KeyError(f"no image {image_id!r} in this report; ids: {self.ids}")
        table = self.particles[self.particles["image_id"] == image_id]
        return overlay(self.images[image_id], self.masks[image_id],
                       measured=table["label"].to_numpy(), boxes=self._boxes(image_id))

    def _boxes(self, image_id: str) -> list:
        """The scale bar and data bar of an image, with captions, for its overlay."""
        info = self.calibration_info.get(image_id) or {}
        out = []
        bar = info.get("scale_bar")
        if bar:
            used = info.get("source") == "scale bar"
            value = f"{bar['nm_per_px']:.4g} nm/px" if bar.get("nm_per_px") else "unread"
            label = f'"{bar["label"]}"' if bar.get("label") else "scale bar"
            out.append((tuple(bar["box"]), f"{label}: {value}"
                        + ("" if used else f" (not used: {info.get('source')})")))
        if info.get("data_bar"):
            out.append((tuple(info["data_bar"]), "data bar (not measured)"))
        return out

    def calibration_text(self, image_id: str) -> str:
        """One line saying how image `image_id` was calibrated, for people."""
        info = self.calibration_info.get(image_id) or {}
        size, unit = self.calibration.get(image_id, (None, None))
        source = info.get("source", "none")
        if source == "none" or unit == "px":
            text = "uncalibrated: sizes in pixels"
        else:
            text = f"{size:.4g} {unit}/px from " + {
                "user": "your input", "scale bar": "the scale bar"}.get(
                source, source.replace("metadata:", "") + " metadata")
        if source == "scale bar" and info.get("relative_error"):
            text += (f" (±{100 * info['relative_error']:.1f} %: one pixel of its "
                     f"{info['scale_bar']['length_px']:.0f} px)")
        bar = info.get("scale_bar")
        if bar and bar.get("label"):
            text += f'; scale bar "{bar["label"]}" read with confidence {bar["confidence"]:.2f}'
        elif bar:
            text += "; a scale bar was found but its label was not read"
        return text

    def psd_figure(self, column: str = SIZE_COLUMN):
        """The batch distribution of `column` as a matplotlib Figure: histogram, KDE,
        log-normal and normal fits; a figure saying so when no particle was found."""
        dist = self.distributions.get(column)
        if dist is not None:
            n_images = len([i for i in self.ids if self.count(i)])
            return dist.plot(title=f"{len(dist)} particles in {n_images} image(s)")
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 4), layout="constrained")
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no particles found", ha="center", va="center", fontsize=14)
        ax.set_axis_off()
        return fig

    def file_names(self) -> dict[str, str]:
        """The file-name-safe stem used for each image's overlay and label files."""
        return dict(zip(self.ids, unique_names(_safe_name(i) for i in self.ids)))

    def save(self, directory, *, overwrite: bool = False, dpi: int = 150) -> Path:
        """Write the report to a folder.

        Files: ``particles.csv``, ``summary.csv``, ``psd.png`` (histogram, KDE, log-normal
        and normal fits), ``psd_histogram.csv``, ``overlays/<id>.png``,
        ``labels/<id>.tif`` (label images: uint16, int32 above 65535 particles), ``errors.csv``
        (when any input was skipped) and ``report.json`` (settings, units, counts).

        Refuses to write into a folder that is not empty unless ``overwrite=True``; every
        file is written atomically (a temporary file, then a rename).
        """
        from ..io import atomic_path, write_mask

        out = Path(directory)
        if out.exists() and not out.is_dir():
            raise FileExistsError(f"{out} exists and is not a folder")
        if out.exists() and any(out.iterdir()) and not overwrite:
            raise FileExistsError(f"{out} is not empty; choose a new folder or pass overwrite=True")
        out.mkdir(parents=True, exist_ok=True)
        names = self.file_names()
        with atomic_path(out / "particles.csv", overwrite=overwrite) as tmp:
            self.particles.to_csv(tmp, index=False)
        with atomic_path(out / "summary.csv", overwrite=overwrite) as tmp:
            self.summary.to_csv(tmp, index=False)
        fig = self.psd_figure()
        with atomic_path(out / "psd.png", overwrite=overwrite) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
        if SIZE_COLUMN in self.distributions:
            self.distributions[SIZE_COLUMN].to_csv(out / "psd_histogram.csv", overwrite=overwrite)
        for image_id in self.ids:
            name = names[image_id]
            _write_png(out / "overlays" / f"{name}.png", self.overlay(image_id),
                       overwrite=overwrite)
            write_mask(out / "labels" / f"{name}.tif", self.masks[image_id], overwrite=overwrite)
        if self.errors:
            import pandas as pd

            with atomic_path(out / "errors.csv", overwrite=overwrite) as tmp:
                pd.DataFrame(self.errors, columns=["image", "error"]).to_csv(tmp, index=False)
        info = {
            "utilegen_version": _version(),
            "settings": self.settings,
            "images": [{"id": i, "file_stem": names[i], "particles": self.count(i),
                        "instances": len(self.masks[i]), "pixel_size": self.calibration[i][0],
                        "unit": self.calibration[i][1], "image_class": self.classes.get(i),
                        "calibration": self.calibration_info.get(i),
                        "segmentation": self.segmentation_info.get(i)}
                       for i in self.ids],
            "errors": [{"image": e[0], "error": e[1]} for e in self.errors],
            "warnings": self.warnings,
            "column_units": self.particles.attrs.get("units", {}),
        }
        _write_text(out / "report.json", json.dumps(info, indent=2, default=str) + "\n",
                    overwrite=overwrite)
        return out


def _version() -> str:
    from .. import __version__

    return __version__


def _column_unit(column: str, unit: str) -> str:
    from ..morphometry import column_unit

    try:
        return column_unit(column, unit)
    except (KeyError, ValueError):
        return ""


def _empty_particles():
    import pandas as pd

    from ..morphometry import measure

    empty = measure(np.zeros((4, 4), np.uint16), np.zeros((4, 4), np.uint8))
    empty.insert(0, "shape_class", pd.Series(dtype=object))
    empty.insert(0, "image_class", pd.Series(dtype=object))
    empty.insert(0, "image_id", pd.Series(dtype=object))
    return empty
