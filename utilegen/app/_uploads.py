"""Checking uploaded files: type by content (never by name), size, pixel count, decoding."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import numpy as np

__all__ = ["UploadRejected", "check_image_file", "display_name", "sniff_suffix"]

# Magic numbers of the formats utilegen reads; the file name's extension is not trusted.
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
    (b"II+\x00", ".tif"),  # BigTIFF
    (b"MM\x00+", ".tif"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"BM", ".bmp"),
)


class UploadRejected(ValueError):
    """An uploaded file that is not accepted; the message is shown to the user."""


def sniff_suffix(head: bytes) -> str | None:
    """The file suffix for the image format that `head` (the first bytes) starts with."""
    for signature, suffix in _SIGNATURES:
        if head.startswith(signature):
            return suffix
    return None


def _pixel_count(path: Path, suffix: str) -> int:
    """Width x height from the file header, without decoding the pixels."""
    if suffix == ".tif":
        import tifffile

        with tifffile.TiffFile(path) as tif:
            shape = tif.pages[0].shape
        return int(np.prod(shape[:2])) if len(shape) >= 2 else 0
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # our own limit applies, with our own message
    with Image.open(path) as im:
        width, height = im.size
    return int(width) * int(height)


def check_image_file(path: Path, suffix: str, *, max_pixels: int) -> np.ndarray:
    """Decode an uploaded image file after checking its pixel count from the header.

    Raises `UploadRejected` with a message for the user when the file is too large in
    pixels, corrupt, or not a 2-D image.
    """
    from ..io import read_image

    try:
        pixels = _pixel_count(path, suffix)
    except Exception:  # noqa: BLE001 - any header error means a broken file
        raise UploadRejected("the file is damaged or not a valid image") from None
    if pixels > max_pixels:
        raise UploadRejected(f"the image has {pixels / 1e6:.1f} megapixels; the limit is "
                             f"{max_pixels / 1e6:.0f} megapixels")
    try:
        image = read_image(path)
    except Exception:  # noqa: BLE001
        raise UploadRejected("the image could not be decoded (damaged, or a stack or "
                             "volume rather than a single 2-D micrograph)") from None
    if min(image.shape) < 16:
        raise UploadRejected(f"the image is too small ({image.shape[1]} x {image.shape[0]} px)")
    return image


def display_name(filename: str | None, index: int) -> str:
    """A short, printable name for an uploaded file (for display and the CSV only)."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in unicodedata.normalize("NFC", name)
                   if unicodedata.category(ch)[0] not in ("C", "Z") or ch == " ")
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    stem = re.sub(r"[^\w.\- ]+", "_", stem).strip(" ._")
    # Cells starting with = + - @ are formulas in spreadsheets (CSV injection).
    stem = stem.lstrip("=+-@").strip()
    return stem[:80] or f"image_{index + 1}"
