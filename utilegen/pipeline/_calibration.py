"""The pixel size and unit each image is measured in."""

from __future__ import annotations

from pathlib import Path


def _calibration(source, pixel_size, unit) -> tuple[float, str]:
    if pixel_size is not None:
        return float(pixel_size), unit
    if isinstance(source, Path):
        from ..io import read_pixel_size

        found = read_pixel_size(source)
        if found is not None:
            return float(found[0]), found[1]
    return 1.0, "px"
