"""The pixel size and unit each image is measured in, and what in it is not specimen.

Precedence: the user's value > the file's metadata > a scale bar read in the image >
pixels. `utilegen.calibration` does the reading; this is only the policy.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..calibration import Calibration, find_data_bar, find_scale_bar, nm_per_unit
from ..calibration import read_calibration as _read


def _calibration(source, image, pixel_size, unit) -> Calibration:
    """`pixel_size`: a number (the user's), "auto" (metadata > scale bar > px) or None
    (metadata > px, no scale-bar reading)."""
    if pixel_size not in (None, "auto"):
        # the bar and data bar are still kept out of the particle table
        bar, data_bar = find_scale_bar(image), find_data_bar(image)
        return Calibration(float(pixel_size), unit, "user", bar, data_bar)
    found = _read(source if isinstance(source, Path) else image, image=image,
                  scale_bar=pixel_size == "auto")
    if found.pixel_size is None:
        return Calibration(1.0, "px", "none", found.scale_bar, found.data_bar)
    factor = nm_per_unit(found.unit)
    if factor is not None and found.unit != "nm":  # one unit for the whole batch: nm
        return replace(found, pixel_size=found.pixel_size * factor, unit="nm")
    return found


def _outside(mask, boxes):
    """`mask` without the instances that lie mostly inside any of `boxes` (scale bar and
    its label, instrument data bar): text and bars are not particles."""
    if not boxes:
        return mask
    from ..masks import InstanceMask

    labels = np.asarray(mask.labels)
    inside = np.zeros(labels.shape, bool)
    for r0, c0, r1, c1 in boxes:
        inside[r0:r1, c0:c1] = True
    total = np.bincount(labels.ravel())
    within = np.bincount(labels[inside].ravel(), minlength=len(total))
    drop = np.flatnonzero((total > 0) & (within > 0.5 * np.maximum(total, 1)))
    drop = drop[drop > 0]
    if len(drop) == 0:
        return mask
    labels = np.where(np.isin(labels, drop), 0, labels)
    return InstanceMask(labels)
