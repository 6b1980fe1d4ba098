"""One image through the pipeline: segment, measure, classify. Errors are returned as
the outcome, never raised, so that one bad file fails alone (locally, on Dask or in a
worker process)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..masks import InstanceMask
from ._calibration import _calibration, _outside
from ._inputs import _as_image
from ._models import _image_class, _particle_shapes, is_particle_classifier


def _analyze_one(image_id, source, model, shape_classifier, *, pixel_size, unit,
                 exclude_border) -> dict:
    """Segment, measure and classify one image; errors are returned, never raised."""
    import pandas as pd

    from ..morphometry import measure

    try:
        image = _as_image(source)
        cal = _calibration(source, image, pixel_size, unit)
        size, image_unit = cal.pixel_size, cal.unit
        notes, segmentation = [], None
        if callable(getattr(model, "trust_warnings", None)):  # a StarDist: say when in doubt
            mask, details = model.predict(image, return_details=True)
            notes = model.trust_warnings(mask, details)
            segmentation = _scale_used(details)
        else:
            mask = model.predict(image)
        if cal.relative_error is not None and cal.relative_error > 0.02:
            notes = [*notes, (f"the scale bar is {cal.scale_bar.length_px:.0f} px long: one "
                              f"pixel is {100 * cal.relative_error:.1f} % of the calibration; "
                              "check it, or give the pixel size")]
        if not isinstance(mask, InstanceMask):
            mask = InstanceMask(np.asarray(mask))
        if mask.shape != image.shape:
            raise ValueError(f"the segmenter returned a mask of shape {mask.shape} for an "
                             f"image of shape {image.shape}")
        mask = _outside(mask, cal.excluded())  # the scale bar's label is not particles
        table = measure(mask, image, pixel_size=size, unit=image_unit,
                        exclude_border=exclude_border)
        image_class = (_image_class(shape_classifier, image)
                       if shape_classifier is not None
                       and not is_particle_classifier(shape_classifier) else None)
        shapes, rules, particle_class = (_particle_shapes(table, mask, image, shape_classifier)
                                         if len(table) else ([], [], None))
        image_class = image_class or particle_class
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - one bad file must not abort the batch
        name = str(source) if isinstance(source, Path) else image_id
        return {"id": image_id, "name": name,
                "error": f"{type(exc).__name__}: {exc}" if not isinstance(
                    exc, (ValueError, FileNotFoundError)) else str(exc)}
    attrs = dict(table.attrs)
    if is_particle_classifier(shape_classifier):  # it named the shapes: keep the rules beside
        table.insert(0, "shape_rules", pd.Series(rules if rules is not None
                                                 else [None] * len(table),
                                                 index=table.index, dtype=object))
    table.insert(0, "shape_class", pd.Series(shapes if shapes is not None else [None] * len(table),
                                             index=table.index, dtype=object))
    table.insert(0, "image_class", pd.Series([image_class] * len(table), index=table.index,
                                             dtype=object))
    table.insert(0, "image_id", pd.Series([image_id] * len(table), index=table.index, dtype=object))
    table.attrs = attrs
    return {"id": image_id, "table": table, "mask": mask, "image": image, "class": image_class,
            "calibration": (size, image_unit), "calibration_info": _describe(cal),
            "segmentation_info": segmentation, "warnings": notes}


def _scale_used(details) -> dict:
    """Which resize factor the segmenter used for one image, and why (`predict`'s
    ``scale_choice``): what the report says about the segmentation."""
    choice = details.get("scale_choice") or {}
    out = {"scale": float(details["scale"]), "mode": choice.get("mode"),
           "passes": choice.get("passes"), "reason": choice.get("reason"),
           "tta": bool(details.get("tta", False))}
    if choice.get("width_px") is not None:
        out["particle_width_px"] = float(choice["width_px"])
    return out


def _describe(cal) -> dict:
    """What the report says about one image's calibration."""
    out = {"source": cal.source, "pixel_size": cal.pixel_size, "unit": cal.unit,
           "relative_error": cal.relative_error}
    if cal.scale_bar is not None:
        bar = cal.scale_bar
        out["scale_bar"] = {"box": list(bar.box), "label": bar.label,
                            "length_px": bar.length_px, "nm_per_px": bar.nm_per_px,
                            "confidence": round(bar.confidence, 3)}
    if cal.data_bar is not None:
        out["data_bar"] = list(cal.data_bar)
    return out
