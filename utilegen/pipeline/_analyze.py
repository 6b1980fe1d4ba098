"""`analyze`: the batch orchestrator (inputs, models, per-image outcomes gathered into a
`Report` in input order)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..io import check_pixel_size, unique_names
from ._inputs import _collect, _default_id
from ._models import load_classifier, load_segmenter
from ._per_image import _analyze_one
from ._report import Report, _empty_particles
from ._workers import IsolatedWorker, _map_on_dask


def analyze(images, *, segmenter=None, classifier=None, pixel_size: float | str | None = "auto",
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
    classifier : ShapeClassifier, path, "rules", or object with ``predict``, optional
        Default: the per-particle classifier shipped with utilegen
        (``ShapeClassifier.pretrained("emps")``): every particle's crop gets a
        ``shape_class`` (sphere / cube / rod / other; the morphometry rules' answer is kept
        beside it in ``shape_rules``) and the image class is the shape of highest mean
        probability (`utilegen.classify.dominant_shape` with ``weight="probability"``).
        ``"rules"`` (or False): the morphometry rules alone (no network). An image-level
        ``ShapeClassifier`` (whole micrographs) names the image class and the rules name
        the particles.
    pixel_size : float, "auto" or None
        Size of one pixel in `unit`, for every image. ``"auto"`` (default) resolves each
        image with the precedence file metadata (ImageJ/OME/Zeiss/FEI TIFF tags, DM3/DM4,
        EMD, SER, MRC) > scale bar read in the image (`utilegen.io.read_calibration`) >
        pixels ("px"); None skips the scale bar. ``report.calibration_info`` and
        ``report.json`` say per image which source was used. A scale bar, its label and
        an instrument data bar are kept out of the particle table whatever the source.
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

    if isinstance(pixel_size, str) and pixel_size != "auto":
        raise ValueError(f"pixel_size must be a number, 'auto' or None, got {pixel_size!r}")
    if pixel_size not in (None, "auto"):
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

    masks, read, classes, calibration, tables, cal_info = {}, {}, {}, {}, [], {}
    seg_info = {}
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
        cal_info[image_id] = outcome.get("calibration_info")
        seg_info[image_id] = outcome.get("segmentation_info")
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
    settings = {"pixel_size": pixel_size,
                "unit": unit if pixel_size not in (None, "auto") else None,
                "exclude_border": bool(exclude_border),
                "segmenter": repr(model), "classifier": repr(shape_classifier)
                if shape_classifier is not None else None,
                "inputs": len(sources),
                "segmenter_heldout": _heldout_figures(model)}
    return Report(ids=ok_ids, masks=masks, images=read, particles=particles, classes=classes,
                  calibration=calibration, errors=errors, warnings=warnings, settings=settings,
                  calibration_info=cal_info, segmentation_info=seg_info)


def _heldout_figures(model) -> dict | None:
    """An adapted model's figures on its held-out annotated data (F1@0.5, F1@0.7 and the
    error of the median size, D50): the segmentation's own error bar, beside the sampling
    intervals of the summary. None for a model without them (the shipped one)."""
    info = getattr(model, "info", None) or {}
    figures = (info.get("adaptation") or {}).get("validation")
    if not figures:
        return None
    keys = ("f1_50", "f1_70", "d50_relative_error", "n_true", "n_pred")
    return {k: figures.get(k) for k in keys}
