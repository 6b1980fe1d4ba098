"""Calibration: how long one pixel is, and where that figure came from.

`read_calibration` looks, in this order, at the file's metadata (ImageJ/TIFF resolution,
Zeiss SEM, FEI/Thermo and OME-TIFF tags through tifffile; Gatan DM3/DM4, EMD, TIA SER and
MRC through RosettaSciIO) and at a burned-in scale bar (`find_scale_bar`: the bar found by
its geometry, its label read by Tesseract). `analyze(pixel_size="auto")` resolves each
image with the precedence **user value > file metadata > scale bar > pixels** and reports
which source it used.

>>> from utilegen.io import read_calibration
>>> read_calibration("sem.tif")                                   # doctest: +SKIP
Calibration(pixel_size=2.5, unit='nm', source='metadata:Zeiss SEM')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._metadata import NATIVE_READERS, nm_per_unit, read_native, tiff_calibration
from ._scalebar import MIN_CONFIDENCE, ScaleBar, find_data_bar, find_scale_bar, tesseract_available

__all__ = [
    "MIN_CONFIDENCE",
    "NATIVE_READERS",
    "Calibration",
    "ScaleBar",
    "find_data_bar",
    "find_scale_bar",
    "nm_per_unit",
    "read_calibration",
    "read_native",
    "tesseract_available",
]


@dataclass(frozen=True)
class Calibration:
    """The pixel size of one image and its provenance.

    Attributes
    ----------
    pixel_size : float or None
        Length of one pixel in `unit`; None when nothing calibrates the image.
    unit : str or None
        ``"nm"``, ``"µm"``, ... (None with no pixel size).
    source : str
        ``"metadata:<format>"`` (e.g. ``"metadata:Zeiss SEM"``), ``"scale bar"``,
        ``"user"`` or ``"none"``.
    scale_bar : ScaleBar or None
        The bar found (its ``box``, ``label``, ``confidence``), also when it was not used
        (a low-confidence reading, or a file whose metadata took precedence): its box is
        still kept out of segmentation.
    data_bar : tuple or None
        Box (row0, col0, row1, col1) of an instrument data bar along the bottom edge.
    """

    pixel_size: float | None
    unit: str | None
    source: str
    scale_bar: ScaleBar | None = None
    data_bar: tuple[int, int, int, int] | None = None

    @property
    def box(self):
        """The scale bar's box (row0, col0, row1, col1), or None."""
        return None if self.scale_bar is None else self.scale_bar.box

    @property
    def label(self):
        """The scale bar's label as read, or None."""
        return None if self.scale_bar is None else self.scale_bar.label

    @property
    def confidence(self):
        """The scale bar reading's confidence in [0, 1], or None without a bar."""
        return None if self.scale_bar is None else self.scale_bar.confidence

    @property
    def relative_error(self):
        """The resolution of a scale-bar calibration, as a fraction: one pixel of the bar's
        length (a 40 px bar is read to about ±2.5 %; the ends are found to about a pixel
        together). None for metadata and user values, which are as exact as given."""
        if self.source != "scale bar" or not self.scale_bar or not self.scale_bar.length_px:
            return None
        return 1.0 / self.scale_bar.length_px

    def excluded(self) -> list[tuple[int, int, int, int]]:
        """Boxes that are not specimen: a scale bar whose label was read with confidence
        (a bar-shaped thing without a readable label may be a particle), and a data bar."""
        bar = self.scale_bar
        read = (bar is not None and bar.nm_per_px is not None
                and bar.confidence >= MIN_CONFIDENCE)
        return [b for b in (self.box if read else None, self.data_bar) if b is not None]

    def __repr__(self) -> str:
        extra = ""
        if self.scale_bar is not None:
            extra = f", label={self.label!r}, confidence={self.confidence:.2f}"
        return (f"Calibration(pixel_size={self.pixel_size!r}, unit={self.unit!r}, "
                f"source={self.source!r}{extra})")


def _metadata(path: Path) -> tuple[float, str, str] | None:
    """(pixel size, unit, format) from the file's own metadata, or None."""
    from ..io import TIFF_SUFFIXES, read_pixel_size

    suffix = path.suffix.lower()
    if suffix in NATIVE_READERS:
        _, nm, fmt = read_native(path)
        return (nm, "nm", fmt) if nm else None
    if suffix in TIFF_SUFFIXES:
        found = tiff_calibration(path)
        if found:
            return found[0], "nm", found[1]
        found = read_pixel_size(path)
        if found:
            return float(found[0]), found[1], "TIFF"
    return None


def read_calibration(path_or_image, *, image=None, scale_bar: bool = True,
                     min_confidence: float = MIN_CONFIDENCE) -> Calibration:
    """The pixel size of a micrograph: from its file's metadata, else from its scale bar.

    Parameters
    ----------
    path_or_image : path or 2-D array
        A file (metadata first, then its pixels) or an image array (scale bar only).
    image : 2-D array, optional
        The file's pixels when the caller has read them already (not read again).
    scale_bar : bool
        Look for a burned-in scale bar (needs the ``tesseract`` program to read labels).
    min_confidence : float
        A scale-bar reading below this confidence is reported (``scale_bar``) but not used.

    Returns
    -------
    Calibration
        ``source`` says where the pixel size came from (``"none"`` when nowhere).
    """
    from ..io import read_image

    found = None
    if isinstance(path_or_image, (str, Path)):
        path = Path(path_or_image)
        found = _metadata(path)
        if image is None and scale_bar:
            image = read_image(path)
    else:
        image = np.asarray(path_or_image)
    if image is not None:
        from .._image import as_gray

        name = str(path_or_image) if isinstance(path_or_image, (str, Path)) else "image"
        image = as_gray(image, name=name)
    bar = find_scale_bar(image) if scale_bar and image is not None else None
    data_bar = find_data_bar(image) if image is not None and scale_bar else None
    if found is not None:
        return Calibration(found[0], found[1], f"metadata:{found[2]}", bar, data_bar)
    if bar is not None and bar.nm_per_px is not None and bar.confidence >= min_confidence:
        return Calibration(bar.nm_per_px, "nm", "scale bar", bar, data_bar)
    return Calibration(None, None, "none", bar, data_bar)
