"""The end-to-end pipeline: micrographs in, particle sizes, shapes and distributions out.

>>> import utilegen
>>> report = utilegen.analyze.analyze("micrographs/*.tif", pixel_size=0.5, unit="nm")  # doctest: +SKIP
>>> report.particles.head()                                   # doctest: +SKIP
>>> report.save("report/")                                    # doctest: +SKIP

`analyze` segments every image (StarDist, tiled for large images), measures every
particle (`utilegen.morphometry.measure`), classifies the images when a shape classifier
is available, and gathers it all in a `Report`. A file that cannot be read or segmented is
recorded in ``report.errors`` and skipped; it never aborts the batch.
"""

from __future__ import annotations

import glob as _glob
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from .io import check_pixel_size, unique_names
from .masks import InstanceMask

__all__ = [
    "DISTRIBUTION_COLUMNS",
    "SIZE_COLUMN",
    "IsolatedWorker",
    "Report",
    "ThresholdSegmenter",
    "analyze",
    "load_classifier",
    "load_segmenter",
    "overlay",
]

#: The quantity of the particle size distribution (PSD) and of `Report.summary`.
SIZE_COLUMN = "equivalent_diameter"
#: Quantities for which `Report.distributions` holds a batch `SizeDistribution`.
DISTRIBUTION_COLUMNS = ("equivalent_diameter", "feret_diameter_max", "feret_diameter_min",
                        "aspect_ratio", "circularity")
# Shape statistics averaged per image in the summary.
_SHAPE_STATS = ("aspect_ratio", "circularity", "solidity", "roundness")
_GLOB_CHARS = re.compile(r"[*?\[]")


# ----------------------------------------------------------------------------- models
def load_segmenter(segmenter=None):
    """The segmenter `analyze` uses: a model object, a saved model folder, or the default.

    Parameters
    ----------
    segmenter : None, str, Path or object with ``predict(image) -> InstanceMask``
        None loads the default model shipped inside utilegen (``StarDist.pretrained("emps")``);
        a path loads a folder written by ``StarDist.save``; a bare name that is not a folder
        (``"emps"``) is a shipped model, as in ``utilegen segment --model emps``.
    """
    if segmenter is None:
        from .segment import StarDist

        try:
            return StarDist.pretrained("emps")
        except (FileNotFoundError, OSError, ValueError) as exc:
            raise FileNotFoundError(
                "no segmenter was given and utilegen's default segmentation model could not be "
                f"loaded ({exc}). Pass a trained model: analyze(..., segmenter=StarDist.load("
                "'my_model')) or, on the command line, --model my_model/") from None
    if isinstance(segmenter, (str, Path)):
        from .segment import StarDist

        path = Path(segmenter)
        if not path.is_dir():
            if isinstance(segmenter, str) and "/" not in segmenter and "\\" not in segmenter:
                try:
                    return StarDist.pretrained(segmenter)  # a shipped model's name, e.g. "emps"
                except ValueError as exc:
                    raise FileNotFoundError(f"no model folder {segmenter!r}, and {exc}") from None
            raise FileNotFoundError(f"segmenter model folder not found: {path}")
        return StarDist.load(path)
    if not callable(getattr(segmenter, "predict", None)):
        raise ValueError("segmenter must be a StarDist model, a saved model folder, or an object "
                         f"with a predict(image) method; got {type(segmenter).__name__}")
    return segmenter


def load_classifier(classifier=None):
    """The image classifier `analyze` uses, or None when there is none.

    None takes the shape classifier shipped inside utilegen if there is one (no classes
    otherwise); a path loads a saved ``ShapeClassifier``; an object with ``predict(image)``
    is used as it is.
    """
    if classifier is None:
        try:
            from .classify import ShapeClassifier
        except ImportError:
            return None
        pretrained = getattr(ShapeClassifier, "pretrained", None)
        if pretrained is None:
            return None
        try:
            return pretrained()
        except Exception:  # noqa: BLE001 - no shipped classifier: classes stay empty
            return None
    if isinstance(classifier, (str, Path)):
        from .classify import ShapeClassifier

        path = Path(classifier)
        if not path.exists():
            raise FileNotFoundError(f"classifier model not found: {path}")
        return ShapeClassifier.load(path)
    if not callable(getattr(classifier, "predict", None)):
        raise ValueError("classifier must be a ShapeClassifier, a saved classifier, or an object "
                         f"with a predict(image) method; got {type(classifier).__name__}")
    return classifier


def _image_class(classifier, image) -> str | None:
    """The class name a classifier gives one image (a `Prediction`, a str, or a list)."""
    result = classifier.predict(image)
    labels = getattr(result, "labels", None)  # utilegen.classify.Prediction
    if labels is not None:
        result = labels
    if isinstance(result, dict):
        result = result.get("class", result.get("label"))
    if isinstance(result, (list, tuple, np.ndarray)):
        result = result[0] if len(result) else None
    return None if result is None else str(result)


def _particle_shapes(table, pixel_size: float):
    """Per-particle shape names (sphere / cube / rod / other) from utilegen.classify's
    morphometry rules, or None when that part of utilegen is not available."""
    try:
        from .classify import ShapeRules
    except ImportError:
        return None
    # The rules expect pixel areas; the other descriptors they use have no unit.
    px = table[["area", "solidity", "aspect_ratio", "circularity", "feret_diameter_max",
                "feret_diameter_min"]].copy()
    px["area"] = px["area"] / pixel_size**2
    return list(ShapeRules().classify(px))


# ----------------------------------------------------------------------------- inputs
def _safe_name(text: str) -> str:
    """A file-name-safe version of an image id (letters, digits, ``._-``)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._")
    return name[:100] or "image"


def _expand_path(path: Path) -> list[Path]:
    from .io import list_images

    return list_images(path) if path.is_dir() else [path]


def _collect(images) -> list:
    """Flatten `images` into a list of sources (paths or arrays)."""
    if isinstance(images, np.ndarray):
        if images.ndim == 2 or (images.ndim == 3 and images.shape[-1] in (3, 4)):
            return [images]
        if images.ndim == 3:
            return list(images)  # a stack of 2-D images
        raise ValueError(f"an image array must be 2-D (or a 3-D stack), got shape {images.shape}")
    if isinstance(images, (str, Path)):
        text = str(images)
        path = Path(text).expanduser()
        if not path.exists() and _GLOB_CHARS.search(text):
            found = sorted(Path(p) for p in _glob.glob(str(path), recursive=True))
            found = [p for p in found if p.is_file()]
            if not found:
                raise FileNotFoundError(f"no files match {text!r}")
            return found
        if not path.exists():
            raise FileNotFoundError(f"no such file or folder: {path}")
        found = _expand_path(path)
        if not found:
            raise ValueError(f"no image files (TIFF, PNG, JPEG, BMP) in {path}")
        return found
    sources: list = []
    for item in images:
        if isinstance(item, (str, Path)):
            path = Path(item).expanduser()
            if path.is_dir():
                sources.extend(_expand_path(path))
            elif not path.exists() and _GLOB_CHARS.search(str(item)):
                sources.extend(sorted(Path(p) for p in _glob.glob(str(path), recursive=True)
                                      if Path(p).is_file()))
            else:
                sources.append(path)  # a missing file is reported by analyze, not raised
        else:
            sources.append(item)
    return sources


def _default_id(source, index: int) -> str:
    return Path(source).stem if isinstance(source, Path) else f"image_{index}"


def _as_image(source) -> np.ndarray:
    from .io import read_image, to_grayscale

    if isinstance(source, Path):
        return read_image(source)
    if isinstance(source, InstanceMask):
        raise ValueError("got an InstanceMask where an image was expected")
    arr = np.asarray(source)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = to_grayscale(arr)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
        raise ValueError(f"expected a numeric image, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError("the image is empty")
    return arr


def _calibration(source, pixel_size, unit) -> tuple[float, str]:
    if pixel_size is not None:
        return float(pixel_size), unit
    if isinstance(source, Path):
        from .io import read_pixel_size

        found = read_pixel_size(source)
        if found is not None:
            return float(found[0]), found[1]
    return 1.0, "px"


# ----------------------------------------------------------------------------- overlay
def _to_uint8(image: np.ndarray) -> np.ndarray:
    """Contrast-stretch an image to uint8 for display (0.5 / 99.5 percentiles)."""
    img = np.asarray(image, dtype=np.float64)
    finite = img[np.isfinite(img)]
    if finite.size == 0:
        return np.zeros(img.shape, np.uint8)
    lo, hi = np.percentile(finite, (0.5, 99.5))
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        return np.full(img.shape, 128, np.uint8)
    out = np.clip((np.nan_to_num(img, nan=lo) - lo) / (hi - lo), 0, 1)
    return np.round(out * 255).astype(np.uint8)


def overlay(image, mask: InstanceMask, *, measured=None, labels_text: bool = True) -> np.ndarray:
    """The micrograph in gray with instance outlines and ids drawn on it.

    Parameters
    ----------
    image : (M, N) array
        The micrograph (any dtype; contrast-stretched for display).
    mask : InstanceMask
        Its instances.
    measured : sequence of int, optional
        Labels that are in the particle table (outlined in colour and numbered); other
        instances (e.g. excluded for touching the border) are outlined in gray.
        Default: all.
    labels_text : bool
        Write each measured instance's label at its centroid.

    Returns
    -------
    (M, N, 3) uint8 RGB array
    """
    import cv2
    from skimage.segmentation import find_boundaries

    gray = _to_uint8(image)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    labels = np.asarray(mask.labels)
    if labels.shape != gray.shape:
        raise ValueError(f"image shape {gray.shape} does not match mask shape {labels.shape}")
    ids = mask.ids
    if len(ids) == 0:
        return rgb
    measured_set = {int(i) for i in (ids if measured is None else measured)}
    thickness = max(1, round(max(labels.shape) / 700))
    edges = find_boundaries(labels, mode="inner")
    if thickness > 1:
        edges = cv2.dilate(edges.astype(np.uint8), np.ones((thickness, thickness), np.uint8)) > 0
    is_measured = np.isin(labels, np.fromiter(measured_set, dtype=np.int64, count=len(measured_set)))
    # Outlines of excluded instances are found on the dilated edges, by the nearest label.
    rgb[edges & is_measured] = (255, 40, 40)
    rgb[edges & (labels > 0) & ~is_measured] = (150, 150, 150)
    if labels_text:
        from scipy import ndimage as ndi

        keep = [i for i in ids if int(i) in measured_set]
        centres = ndi.center_of_mass(np.ones_like(labels, np.uint8), labels, keep)
        scale = max(0.3, max(labels.shape) / 1500)
        font = cv2.FONT_HERSHEY_SIMPLEX
        for label, (cy, cx) in zip(keep, centres):
            text = str(int(label))
            (w, h), _ = cv2.getTextSize(text, font, scale, 1)
            org = (round(cx - w / 2), round(cy + h / 2))
            cv2.putText(rgb, text, org, font, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
            cv2.putText(rgb, text, org, font, scale, (255, 230, 0), thickness, cv2.LINE_AA)
    return rgb


def _write_png(path: Path, rgb: np.ndarray, *, overwrite: bool) -> None:
    import cv2

    from .io import atomic_path

    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode {path.name} as PNG")
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data.tobytes())


def _write_text(path: Path, text: str, *, overwrite: bool) -> None:
    from .io import atomic_path

    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")


# ----------------------------------------------------------------------------- report
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
        class, empty without a classifier), ``shape_class`` (per particle, empty when
        utilegen.classify has no per-particle rule), then every column of
        `utilegen.morphometry.measure`. ``particles.attrs["units"]`` gives the unit of
        each column.
    summary : pandas.DataFrame
        One row for the whole batch (``image_id == "all"``) and one per image: particle
        count, calibration, the size distribution's statistics (``equivalent_diameter_*``:
        mean, std, median, mode, D10/D50/D90, geometric mean/std, log-normal fit), the
        mean shape descriptors and the fraction of particles of each shape
        (``fraction_sphere``, ...).
    distributions : dict of str -> SizeDistribution
        Batch distributions of `DISTRIBUTION_COLUMNS` (empty when no particle was found).
    classes : dict of str -> str or None
        Image-level shape class per image (None without a classifier).
    calibration : dict of str -> (pixel_size, unit)
    errors : list of (str, str)
        ``(image id or file, message)`` for every input that was skipped.
    warnings : list of str
    settings : dict
        What was run (parameters, models), written to ``report.json`` by `save`.
    """

    def __init__(self, *, ids, masks, images, particles, classes, calibration, errors,
                 warnings, settings):
        self.ids = list(ids)
        self.masks = dict(masks)
        self.images = dict(images)
        self.particles = particles
        self.classes = dict(classes)
        self.calibration = dict(calibration)
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
        from .morphometry import SizeDistribution

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
        from .morphometry import SizeDistribution

        row = {"image_id": image_id, "image_class": image_class, "particles": len(table),
               "pixel_size": pixel_size, "unit": unit}
        values = table[SIZE_COLUMN].to_numpy(dtype=np.float64) if len(table) else np.array([])
        values = values[np.isfinite(values)]
        keys = ("mean", "std", "median", "mode", "d10", "d50", "d90", "geometric_mean",
                "geometric_std", "best_fit", "lognormal_mu", "lognormal_sigma")
        stats = SizeDistribution(values, unit=unit).summary() if values.size else {}
        for key in keys:
            value = stats.get(key, None) if len(stats) else None
            row[f"{SIZE_COLUMN}_{key}"] = (value if key == "best_fit"
                                           else float("nan") if value is None else float(value))
        for column in _SHAPE_STATS:
            row[f"{column}_mean"] = float(table[column].mean()) if len(table) else float("nan")
        shapes = table["shape_class"].dropna() if len(table) else table.get("shape_class", [])
        for name in self._shape_names():
            row[f"fraction_{name}"] = float((shapes == name).mean()) if len(shapes) else float("nan")
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
            rows.append(self._summary_row("all", batch, size if size is not None else float("nan"),
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
                       measured=table["label"].to_numpy())

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
        ``labels/<id>.tif`` (label images: uint16, int32 above 65535 particles), ``errors.csv`` (when any input
        was skipped) and ``report.json`` (settings, units, counts).

        Refuses to write into a folder that is not empty unless ``overwrite=True``; every
        file is written atomically (a temporary file, then a rename).
        """
        from .io import atomic_path, write_mask

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
            _write_png(out / "overlays" / f"{name}.png", self.overlay(image_id), overwrite=overwrite)
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
                        "unit": self.calibration[i][1], "image_class": self.classes.get(i)}
                       for i in self.ids],
            "errors": [{"image": e[0], "error": e[1]} for e in self.errors],
            "warnings": self.warnings,
            "column_units": self.particles.attrs.get("units", {}),
        }
        _write_text(out / "report.json", json.dumps(info, indent=2, default=str) + "\n",
                    overwrite=overwrite)
        return out


def _version() -> str:
    from . import __version__

    return __version__


def _column_unit(column: str, unit: str) -> str:
    from .morphometry import column_unit

    try:
        return column_unit(column, unit)
    except (KeyError, ValueError):
        return ""


def _empty_particles():
    import pandas as pd

    from .morphometry import measure

    empty = measure(np.zeros((4, 4), np.uint16), np.zeros((4, 4), np.uint8))
    empty.insert(0, "shape_class", pd.Series(dtype=object))
    empty.insert(0, "image_class", pd.Series(dtype=object))
    empty.insert(0, "image_id", pd.Series(dtype=object))
    return empty


# ----------------------------------------------------------------------------- analyze
def analyze(images, *, segmenter=None, classifier=None, pixel_size: float | None = None,
            unit: str = "nm", exclude_border: bool = True, ids: Iterable[str] | None = None,
            progress: bool = False,
            callback: Callable[[int, int, str], None] | None = None, client=None,
            isolate=False) -> Report:
    """Segment, measure and classify micrographs: the whole UTILE-Gen analysis in one call.

    Parameters
    ----------
    images : folder, glob pattern, path, array, or a sequence of paths/arrays
        A folder is read in sorted order (TIFF, PNG, JPEG, BMP files); a glob such as
        ``"data/*.tif"`` is expanded; arrays are 2-D grayscale (RGB is converted) or a
        3-D stack. Images of any size (large ones are predicted in tiles).
    segmenter : StarDist, path to a saved model folder, or object with ``predict``, optional
        Default: the segmentation model shipped with utilegen (``StarDist.pretrained("emps")``).
    classifier : ShapeClassifier, path, or object with ``predict(image)``, optional
        Gives each image a shape class. Default: the classifier shipped with utilegen if
        there is one; otherwise classes are left empty.
    pixel_size : float, optional
        Size of one pixel in `unit`. When None, each TIFF's own calibration is used
        (ImageJ metadata); uncalibrated images are measured in pixels ("px").
    unit : str
        Unit of `pixel_size` ("nm", "µm", ...).
    exclude_border : bool
        Leave particles cut by the image border out of the table and statistics (they
        stay in the masks and are outlined in gray on the overlays).
    ids : sequence of str, optional
        Image ids (default: file stems, or ``image_0``, ``image_1``, ... for arrays).
    progress : bool
        Show a progress bar (tqdm).
    callback : callable, optional
        ``callback(done, total, image_id)`` after each image (for progress in a UI).
    client : dask.distributed.Client, optional
        Map the images over a Dask cluster (``pip install 'utilegen[distributed]'``): the
        models are sent to the workers once, each image is one task, and the per-particle
        tables are gathered into one report, in input order. Paths must be readable by
        the workers.

    Returns
    -------
    Report
        Failed inputs are listed in ``report.errors`` as ``(id, message)``.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    if pixel_size is not None:
        pixel_size = check_pixel_size(pixel_size)
    if not isinstance(unit, str) or not unit.strip():
        raise ValueError(f"unit must be a non-empty string such as 'nm', got {unit!r}")
    sources = _collect(images)
    if not sources:
        raise ValueError("no images given")
    if ids is None:
        id_list = unique_names(_default_id(s, i) for i, s in enumerate(sources))
    else:
        id_list = [str(i) for i in ids]
        if len(id_list) != len(sources):
            raise ValueError(f"ids has {len(id_list)} items but there are {len(sources)} images")
        if len(set(id_list)) != len(id_list):
            raise ValueError("ids must be unique")
    model = load_segmenter(segmenter)
    shape_classifier = load_classifier(classifier)

    masks, read, classes, calibration, tables = {}, {}, {}, {}, []
    errors: list[tuple[str, str, str]] = []
    warnings: list[str] = []
    units_by_column: dict = {}
    bar = tqdm(total=len(sources), desc="analyzing", unit="image", disable=not progress)
    settings_one = {"pixel_size": pixel_size, "unit": unit, "exclude_border": exclude_border}
    if client is not None and isolate:
        raise ValueError("pass either client= (Dask) or isolate=, not both")
    own_worker = None
    if isinstance(isolate, IsolatedWorker):
        outcomes = isolate.map(id_list, sources, model, shape_classifier, settings_one)
    elif isolate:
        own_worker = IsolatedWorker()
        outcomes = own_worker.map(id_list, sources, model, shape_classifier, settings_one)
    elif client is None:
        outcomes = (_analyze_one(i, s, model, shape_classifier, **settings_one)
                    for i, s in zip(id_list, sources))
    else:
        outcomes = _map_on_dask(client, id_list, sources, model, shape_classifier, settings_one)
    for done, outcome in enumerate(outcomes, start=1):
        image_id = outcome["id"]
        bar.update(1)
        if callback is not None:
            callback(done, len(sources), image_id)
        if "error" in outcome:
            errors.append((image_id, outcome["name"], outcome["error"]))
            continue
        warnings.extend(f"{image_id}: {note}" for note in outcome.get("warnings", []))
        table = outcome["table"]
        units_by_column.update(table.attrs.get("units", {}))
        tables.append(table)
        masks[image_id], read[image_id] = outcome["mask"], outcome["image"]
        classes[image_id], calibration[image_id] = outcome["class"], outcome["calibration"]
    bar.close()
    if own_worker is not None:
        own_worker.close()
    # Reports list images in input order, whatever order the workers finished in.
    order = {image_id: k for k, image_id in enumerate(id_list)}
    tables.sort(key=lambda t: order[t["image_id"].iloc[0]] if len(t) else -1)
    errors = [(name, message) for _, name, message in sorted(errors, key=lambda e: order[e[0]])]
    ok_ids = [i for i in id_list if i in masks]
    units = sorted({calibration[i][1] for i in ok_ids})
    if len(units) > 1:
        warnings.append(f"images have different units {units}; batch distributions use "
                        "only the images in the most common unit")
    non_empty = [t for t in tables if len(t)]
    particles = (pd.concat(non_empty, ignore_index=True) if non_empty else _empty_particles())
    if not units_by_column and ok_ids:
        units_by_column = dict(_empty_particles().attrs.get("units", {}))
    particles.attrs = {"units": units_by_column, "unit": units[0] if len(units) == 1 else units}
    settings = {"pixel_size": pixel_size, "unit": unit if pixel_size is not None else None,
                "exclude_border": bool(exclude_border),
                "segmenter": repr(model), "classifier": repr(shape_classifier)
                if shape_classifier is not None else None,
                "inputs": len(sources)}
    return Report(ids=ok_ids, masks=masks, images=read, particles=particles, classes=classes,
                  calibration=calibration, errors=errors, warnings=warnings, settings=settings)


def _analyze_one(image_id, source, model, shape_classifier, *, pixel_size, unit, exclude_border) -> dict:
    """Segment, measure and classify one image; errors are returned, never raised."""
    import pandas as pd

    from .morphometry import measure

    try:
        image = _as_image(source)
        size, image_unit = _calibration(source, pixel_size, unit)
        notes = []
        if callable(getattr(model, "trust_warnings", None)):  # a StarDist: say when in doubt
            mask, details = model.predict(image, return_details=True)
            notes = model.trust_warnings(mask, details)
        else:
            mask = model.predict(image)
        if not isinstance(mask, InstanceMask):
            mask = InstanceMask(np.asarray(mask))
        if mask.shape != image.shape:
            raise ValueError(f"the segmenter returned a mask of shape {mask.shape} for an "
                             f"image of shape {image.shape}")
        table = measure(mask, image, pixel_size=size, unit=image_unit,
                        exclude_border=exclude_border)
        image_class = (_image_class(shape_classifier, image)
                       if shape_classifier is not None else None)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - one bad file must not abort the batch
        name = str(source) if isinstance(source, Path) else image_id
        return {"id": image_id, "name": name,
                "error": f"{type(exc).__name__}: {exc}" if not isinstance(
                    exc, (ValueError, FileNotFoundError)) else str(exc)}
    shapes = _particle_shapes(table, size) if len(table) else []
    attrs = dict(table.attrs)
    table.insert(0, "shape_class", pd.Series(shapes if shapes is not None else [None] * len(table),
                                             index=table.index, dtype=object))
    table.insert(0, "image_class", pd.Series([image_class] * len(table), index=table.index,
                                             dtype=object))
    table.insert(0, "image_id", pd.Series([image_id] * len(table), index=table.index, dtype=object))
    table.attrs = attrs
    return {"id": image_id, "table": table, "mask": mask, "image": image, "class": image_class,
            "calibration": (size, image_unit), "warnings": notes}


def _map_on_dask(client, id_list, sources, model, shape_classifier, settings):
    """Yield `_analyze_one` outcomes computed on a Dask cluster, as they finish.

    The models are scattered to the workers once; a task whose worker dies is retried
    elsewhere, and an image that fails is reported like in a local run.
    """
    try:
        from distributed import as_completed
    except ImportError:
        raise ValueError("client= needs Dask: pip install 'utilegen[distributed]'") from None
    remote_model, remote_classifier = client.scatter([model, shape_classifier], broadcast=True)
    futures = client.map(_analyze_one, id_list, sources, [remote_model] * len(sources),
                         [remote_classifier] * len(sources), pure=False, retries=2, **settings)
    for future in as_completed(futures):
        yield future.result()


class IsolatedWorker:
    """A worker process that runs `analyze` one image at a time, restarted after a crash.

    Native code (NMS, OpenCV, image decoders) can abort the whole process on a bad input;
    no Python ``try`` catches that. In the worker such a crash fails only the image it
    was on: `map` reports it as that image's error, starts a new worker and goes on. The
    worker keeps the models it was last sent, so a server pays for starting it (a few
    seconds) once, not per request. Not thread-safe: one `map` at a time.
    """

    def __init__(self):
        self._pool = None
        self._models = None

    def _start(self, model, shape_classifier):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # spawn: a fresh interpreter (a fork of a threaded server, torch included, can hang)
        self._pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"),
                                         initializer=_worker_init,
                                         initargs=(model, shape_classifier))
        self._models = (model, shape_classifier)

    def map(self, id_list, sources, model, shape_classifier, settings):
        """Yield `_analyze_one` outcomes in input order, each computed in the worker."""
        from concurrent.futures.process import BrokenProcessPool

        for image_id, source in zip(id_list, sources):
            if self._pool is None or self._models is None or \
                    self._models[0] is not model or self._models[1] is not shape_classifier:
                self.close()
                self._start(model, shape_classifier)
            try:
                yield self._pool.submit(_worker_analyze, image_id, source, settings).result()
            except BrokenProcessPool:
                self.close()
                name = str(source) if isinstance(source, Path) else image_id
                yield {"id": image_id, "name": name,
                       "error": "the analysis of this image crashed its worker process (a "
                                "native error); the other images are not affected"}

    def close(self) -> None:
        """Stop the worker process (a later `map` starts a new one)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = self._models = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_WORKER_MODELS: tuple = (None, None)


def _worker_init(model, shape_classifier) -> None:
    global _WORKER_MODELS
    _WORKER_MODELS = (model, shape_classifier)


def _worker_analyze(image_id, source, settings) -> dict:
    return _analyze_one(image_id, source, *_WORKER_MODELS, **settings)


# ----------------------------------------------------------------------------- baseline
class ThresholdSegmenter:
    """A classical baseline segmenter: Otsu threshold, then connected components.

    Not a trained model and no substitute for StarDist (touching particles merge); it
    needs no weights and runs in milliseconds, so it serves as a stand-in where only the
    pipeline is being exercised (tests, demos) and as a baseline to compare against.

    Parameters
    ----------
    dark_particles : bool
        Particles darker than the background (bright-field TEM), or brighter.
    sigma : float
        Gaussian smoothing (pixels) before thresholding.
    min_area : int
        Components smaller than this many pixels are dropped as noise.
    """

    def __init__(self, *, dark_particles: bool = True, sigma: float = 1.0, min_area: int = 30):
        if sigma < 0 or min_area < 0:
            raise ValueError("sigma and min_area must be >= 0")
        self.dark_particles = bool(dark_particles)
        self.sigma = float(sigma)
        self.min_area = int(min_area)

    def __repr__(self) -> str:
        return (f"ThresholdSegmenter(dark_particles={self.dark_particles}, sigma={self.sigma}, "
                f"min_area={self.min_area})")

    def predict(self, image) -> InstanceMask:
        from scipy import ndimage as ndi
        from skimage.filters import threshold_otsu

        img = np.asarray(image, dtype=np.float32)
        if img.ndim != 2:
            raise ValueError(f"image must be 2-D, got shape {img.shape}")
        if self.sigma > 0:
            img = ndi.gaussian_filter(img, self.sigma)
        if np.ptp(img) == 0:
            return InstanceMask(np.zeros(img.shape, np.uint16))
        t = threshold_otsu(img)
        foreground = img < t if self.dark_particles else img > t
        labels, n = ndi.label(foreground)
        if n and self.min_area > 1:
            areas = np.bincount(labels.ravel())
            small = np.flatnonzero(areas < self.min_area)
            labels[np.isin(labels, small[small > 0])] = 0
        return InstanceMask(labels).relabel()


# `utilegen.analyze(...)` calls the function even after `import utilegen.analyze` has made
# this module the package attribute of that name.
import sys as _sys
import types as _types


class _CallableModule(_types.ModuleType):
    def __call__(self, *args, **kwargs):
        return analyze(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
