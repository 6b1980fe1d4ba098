"""Reading and writing micrographs and instance masks.

* Images: TIFF (8/16-bit, float) through tifffile; PNG, JPEG, BMP through OpenCV. RGB
  images are converted to grayscale; dtypes are kept (8-bit stays 8-bit, 16-bit stays
  16-bit, float stays float).
* Masks: integer label TIFF/PNG, or RGB masks with one colour per instance.
* Grayscale coercion (`as_gray`, `to_grayscale`) and `to_unit_float` live in
  `utilegen._image` with the other intensity policies; they are re-exported here.
* Calibration: the pixel size is read from ImageJ/TIFF resolution metadata.
* Writes are atomic (a temporary file in the same folder, then a rename) and never replace
  an existing file unless ``overwrite=True`` is given.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ._image import as_gray, to_grayscale, to_unit_float
from .masks import InstanceMask

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "as_gray",
    "atomic_path",
    "check_pixel_size",
    "read_calibration",
    "read_image",
    "read_mask",
    "read_pixel_size",
    "to_grayscale",
    "to_unit_float",
    "unique_names",
    "write_image",
    "write_mask",
]

TIFF_SUFFIXES = (".tif", ".tiff")
#: Native microscope files (Gatan, Velox/NCEM EMD, TIA, MRC), read with RosettaSciIO.
NATIVE_SUFFIXES = (".dm3", ".dm4", ".emd", ".ser", ".mrc")
IMAGE_SUFFIXES = TIFF_SUFFIXES + (".png", ".jpg", ".jpeg", ".bmp") + NATIVE_SUFFIXES

# ImageJ and TIFF spell units in several ways; map them to one spelling. Keys are lower
# case because the lookup lower-cases (ImageJ writes µm as the escape "\u00B5m").
_UNIT_ALIASES = {
    "micron": "µm", "microns": "µm", "um": "µm", "µm": "µm", "\\u00b5m": "µm", "μm": "µm",
    "nm": "nm", "nanometer": "nm", "nanometers": "nm", "mm": "mm", "cm": "cm",
    "pixel": None, "pixels": None, "": None,
}


#: Accepted pixel sizes (in any unit): beyond them areas under- or overflow float64.
PIXEL_SIZE_RANGE = (1e-12, 1e12)


def check_pixel_size(value, name: str = "pixel_size") -> float:
    """`value` as a float pixel size, or a ValueError that names `name` and the valid range."""
    try:
        size = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    lo, hi = PIXEL_SIZE_RANGE
    if not (np.isfinite(size) and lo <= size <= hi):
        raise ValueError(f"{name} must be a positive number in [{lo:g}, {hi:g}] (a length per "
                         f"pixel in the given unit), got {value!r}")
    return size


def unique_names(names) -> list[str]:
    """`names` made unique in order by suffixes: ``["x", "x", "y"]`` -> ``["x", "x-2", "y"]``.

    Outputs named after their inputs' stems (``a/x.png`` and ``b/x.png``) never share a
    file this way.
    """
    seen: dict[str, int] = {}
    out: list[str] = []
    taken: set[str] = set()
    for name in names:
        candidate = name
        while candidate in taken:
            seen[name] = seen.get(name, 1) + 1
            candidate = f"{name}-{seen[name]}"
        taken.add(candidate)
        out.append(candidate)
    return out


def list_images(folder) -> list[Path]:
    """The image files in `folder`, sorted; hidden files (e.g. atomic-write temporaries) and
    sub-folders are skipped."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in IMAGE_SUFFIXES)


def _check_readable(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if not path.is_file():
        raise ValueError(f"not a file: {path}")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(
            f"unsupported file type {path.suffix!r} for {path}; "
            f"supported: {', '.join(IMAGE_SUFFIXES)}"
        )
    return path


#: Largest image (pixels) read by `read_image` / `read_mask`, checked from the file header
#: before decoding: a small compressed file can decode to gigabytes. Raise it for larger
#: images (``utilegen.io.MAX_PIXELS = ...``); 2**28 px is 16384 x 16384.
MAX_PIXELS = 2**28


def _header_shape(path: Path, head: bytes) -> tuple[int, int] | None:
    """(height, width) from a PNG, BMP or JPEG header, or None when not found."""
    import struct

    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        w, h = struct.unpack(">II", head[16:24])
        return h, w
    if head[:2] == b"BM" and len(head) >= 26:
        w, h = struct.unpack("<ii", head[18:26])
        return abs(h), abs(w)
    if head[:2] == b"\xff\xd8":  # JPEG: the first start-of-frame marker holds the size
        i = 2
        while i + 9 < len(head):
            if head[i] != 0xFF:
                i += 1
                continue
            marker = head[i + 1]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD,
                          0xCE, 0xCF):
                h, w = struct.unpack(">HH", head[i + 5:i + 9])
                return h, w
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            i += 2 + struct.unpack(">H", head[i + 2:i + 4])[0]
    return None


class _TooManyPixels(ValueError):
    """An image over `MAX_PIXELS` (a ValueError, so callers see the usual error type)."""


def _check_pixels(path: Path, shape) -> None:
    n = int(np.prod([int(v) for v in shape[:2]], dtype=np.int64))
    if n > MAX_PIXELS:
        raise _TooManyPixels(f"{path}: the image is {shape[0]} x {shape[1]} = {n:,} pixels, "
                             "more than "
                         f"utilegen.io.MAX_PIXELS = {MAX_PIXELS:,}; raise that limit to read it")


def _read_raw(path: Path) -> np.ndarray:
    """The file's pixel array as stored (channels last, RGB order; palettes applied)."""
    if path.suffix.lower() in NATIVE_SUFFIXES:
        from .calibration import read_native

        arr = read_native(path)[0]
        _check_pixels(path, arr.shape)
        return arr
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]
                _check_pixels(path, page.shape if page.ndim == 2 or page.shape[-1] in (3, 4)
                              else page.shape[-2:])
                arr = tif.asarray(key=0)
                if page.photometric == tifffile.PHOTOMETRIC.PALETTE and page.colormap is not None:
                    arr = _apply_palette(arr, page.colormap)
        except _TooManyPixels:
            raise
        except Exception as exc:  # noqa: BLE001 -- tifffile raises many types for broken files
            raise ValueError(
                f"cannot read {path}: damaged or not a valid TIFF file ({exc})") from None
        if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
            arr = np.moveaxis(arr, 0, -1)  # planar RGB -> channels last
        return arr
    import cv2

    with open(path, "rb") as f:
        shape = _header_shape(path, f.read(65536))
    if shape is not None:
        _check_pixels(path, shape)

    data = np.fromfile(path, dtype=np.uint8)  # np.fromfile + imdecode handles any path
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if arr is None:
        raise ValueError(f"cannot read {path}: not a valid {path.suffix.lstrip('.').upper()} image")
    if arr.ndim == 3:
        code = cv2.COLOR_BGRA2RGBA if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB
        arr = cv2.cvtColor(arr, code)
    return arr


def _apply_palette(indices: np.ndarray, colormap: np.ndarray) -> np.ndarray:
    """RGB pixels of an indexed-colour image (TIFF colormap (3, 2**bits), 16-bit values),
    as Pillow's ``convert("RGB")``: the image's grey or colour values, not its indices."""
    cmap = np.asarray(colormap)
    if cmap.max() > 255:
        cmap = (cmap >> 8).astype(np.uint8)  # 16-bit TIFF palette entries -> 8 bit, as Pillow
    else:
        cmap = cmap.astype(np.uint8)
    return np.moveaxis(cmap[:, np.clip(indices, 0, cmap.shape[1] - 1)], 0, -1)


def read_image(path) -> np.ndarray:
    """Read a micrograph as a 2-D array.

    Parameters
    ----------
    path : str or Path
        TIFF, PNG, JPEG or BMP file, or a native microscope file (DM3/DM4, EMD, SER, MRC:
        its first 2-D image).

    Returns
    -------
    (M, N) ndarray
        uint8, uint16 or float, as stored; RGB converted to grayscale (`to_grayscale`).
    """
    path = _check_readable(path)
    arr = _read_raw(path)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3:
        arr = to_grayscale(arr)
    if arr.ndim != 2:
        raise ValueError(f"cannot read {path}: expected a 2-D image, got shape {arr.shape} "
                         "(stacks and volumes are not supported)")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    return arr


def read_mask(path) -> InstanceMask:
    """Read an instance mask: an integer label image, or an RGB mask with a colour per instance.

    An RGB file whose channels are all equal is read as a label image. A black-and-white
    mask (a single foreground value, e.g. 0/255, in several separate pieces) is split into
    its connected components: read as labels it would be one particle.
    """
    path = _check_readable(path)
    arr = _read_raw(path)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        rgb = arr[..., :3]
        gray = np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
        if not gray:
            return InstanceMask.from_rgb(arr)
        arr = rgb[..., 0]
    if arr.dtype == bool:
        return InstanceMask.from_binary(arr)
    try:
        mask = InstanceMask(arr)
    except ValueError as exc:
        raise ValueError(f"{path} is not a valid instance mask: {exc}") from None
    if mask.count == 1:
        pieces = InstanceMask.from_binary(mask.labels)
        if pieces.count > 1:
            return pieces
    return mask


def read_pixel_size(path) -> tuple[float, str] | None:
    """Pixel size and unit from a TIFF's ImageJ or resolution metadata.

    Returns
    -------
    (pixel_size, unit) or None
        e.g. ``(0.5, "nm")``; None when the file has no calibration (non-TIFF files,
        uncalibrated TIFFs, or resolution given per inch, which is a print size).
    """
    path = _check_readable(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            tags = page.tags
            ij = tif.imagej_metadata or {}
            xres = tags.get("XResolution")
            res_unit = tags.get("ResolutionUnit")
            xres = xres.value if xres is not None else None
            res_unit = int(res_unit.value) if res_unit is not None else 1
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types on a corrupt file
        raise ValueError(f"cannot read {path}: not a valid TIFF file ({exc})") from None
    if xres is None:
        return None
    num, den = xres if isinstance(xres, tuple) else (float(xres), 1.0)
    if num == 0 or den == 0:
        return None
    size = den / num  # resolution is pixels per unit
    raw_unit = ij.get("unit")
    if raw_unit is not None:
        unit = _UNIT_ALIASES.get(str(raw_unit).strip().lower(), str(raw_unit))
        if unit is None:
            return None
        return float(size), unit
    if res_unit == 3:  # centimetre
        return float(size) * 1e4, "µm"
    return None  # inch (print resolution, e.g. 72 dpi) or none: not a calibration


@contextlib.contextmanager
def atomic_path(path, *, overwrite: bool = False) -> Iterator[Path]:
    """Give a temporary path next to `path`; on success rename it to `path` atomically.

    Raises FileExistsError if `path` exists and ``overwrite`` is False. On error the
    temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkstemp: its files are private (0600) and would stay so after the rename.
    # Exclusive creation gives the usual umask-based mode and never reuses a name.
    while True:
        # hidden, and not ending in the final suffix: a "*.tif" glob never finds it
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
        try:
            tmp.open("x").close()
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# Sample formats an ImageJ TIFF can hold (tifffile refuses the others with imagej=True).
_IMAGEJ_DTYPES = (np.uint8, np.uint16, np.int16, np.float32)


def _write_tiff(path, arr, *, overwrite: bool, compress: bool, pixel_size=None, unit: str = "nm"):
    import tifffile

    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        raise ValueError(f"{path}: write TIFF files (.tif or .tiff)")
    kwargs = {}
    if pixel_size is not None:
        pixel_size = check_pixel_size(pixel_size)
        if arr.dtype not in _IMAGEJ_DTYPES:
            # Without ImageJ metadata the unit (and so the calibration) would be lost.
            raise ValueError(
                f"{path}: a calibrated (pixel_size) TIFF is an ImageJ TIFF, which holds "
                f"uint8, uint16, int16 or float32 images, not {arr.dtype}; convert the image first")
        if _UNIT_ALIASES.get(unit.strip().lower()) == "µm":
            unit = "micron"  # ImageJ's ASCII name; TIFF descriptions must be ASCII
        if not unit.isascii():
            raise ValueError(f"unit must be ASCII (or µm), got {unit!r}")
        kwargs = {"resolution": (1.0 / pixel_size, 1.0 / pixel_size),
                  "metadata": {"unit": unit}, "imagej": True}
    with atomic_path(path, overwrite=overwrite) as tmp:
        # Label images compress ~50x with fast zlib; noisy micrographs barely do, so they are
        # stored raw (10x faster to write).
        compression = {"compression": "zlib", "compressionargs": {"level": 1}} if compress else {}
        tifffile.imwrite(tmp, arr, **compression,
                         **kwargs)
    return path


def write_image(path, image, *, pixel_size: float | None = None, unit: str = "nm",
                overwrite: bool = False) -> Path:
    """Write a 2-D image as TIFF (dtype kept), with ImageJ calibration if `pixel_size` is given."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {image.shape}")
    return _write_tiff(path, image, overwrite=overwrite, compress=False, pixel_size=pixel_size,
                       unit=unit)


def write_mask(path, mask, *, overwrite: bool = False) -> Path:
    """Write an instance mask as a label TIFF (uint16, or int32 above 65535 labels)."""
    if not isinstance(mask, InstanceMask):
        mask = InstanceMask(mask)
    return _write_tiff(path, mask.labels, overwrite=overwrite, compress=True)


def read_calibration(path_or_image, **kwargs):
    """The pixel size of a micrograph from its metadata or its scale bar
    (`utilegen.calibration.read_calibration`, which documents the arguments)."""
    from .calibration import read_calibration as read

    return read(path_or_image, **kwargs)
