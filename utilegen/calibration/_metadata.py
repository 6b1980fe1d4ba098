"""Pixel size from what microscope files record: TIFF tags (ImageJ, resolution, Zeiss SEM,
FEI/Thermo, OME) through tifffile, and native formats (Gatan DM3/DM4, Velox/NCEM EMD,
FEI/TIA SER, MRC) through RosettaSciIO. No format is parsed here by hand."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

#: Native microscope formats, read with RosettaSciIO (module of `rsciio`).
NATIVE_READERS = {
    ".dm3": "digitalmicrograph", ".dm4": "digitalmicrograph",
    ".emd": "emd", ".ser": "tia", ".mrc": "mrc",
}

# lengths in nanometres per unit; keys lower case (the lookup lower-cases)
_NM_PER = {
    "pm": 1e-3, "å": 0.1, "a": 0.1, "angstrom": 0.1, "ångström": 0.1, "nm": 1.0,
    "nanometer": 1.0, "nanometers": 1.0, "nanometre": 1.0, "µm": 1e3, "μm": 1e3, "um": 1e3,
    "micron": 1e3, "microns": 1e3, "micrometer": 1e3, "\\u00b5m": 1e3, "mm": 1e6, "cm": 1e7,
    "m": 1e9,
}


def nm_per_unit(unit) -> float | None:
    """Nanometres in one `unit` (``"nm"``, ``"µm"``, ``"Å"``, ``"m"`` ...), None if unknown."""
    if unit is None:
        return None
    return _NM_PER.get(str(unit).strip().lower())


def _in_nm(value, unit) -> float | None:
    """`value` `unit` in nanometres, or None if either is missing, unknown or not positive."""
    factor = nm_per_unit(unit)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    if factor is None or not np.isfinite(v) or v <= 0:
        return None
    return v * factor


def tiff_calibration(path: Path) -> tuple[float, str] | None:
    """``(nm per pixel, format)`` from a TIFF's instrument tags, or None.

    Zeiss SEM (``CZ_SEM``: ``ap_image_pixel_size``), FEI/Thermo (``FEI_HELIOS`` /
    ``FEI_SFEG``: ``[Scan] PixelWidth`` in metres) and OME-TIFF (``PhysicalSizeX`` and its
    unit). ImageJ and resolution tags are `utilegen.io.read_pixel_size`'s job.
    """
    import tifffile

    with tifffile.TiffFile(path) as tif:
        sem = tif.sem_metadata if tif.is_sem else None
        fei = tif.fei_metadata if tif.is_fei else None
        ome = tif.ome_metadata if tif.is_ome else None
    if sem:
        entry = sem.get("ap_image_pixel_size") or sem.get("ap_pixel_size")
        if entry and len(entry) >= 3:
            nm = _in_nm(entry[1], entry[2])
            if nm:
                return nm, "Zeiss SEM"
    if fei:
        for section in ("Scan", "EScan", "EBeam"):
            width = (fei.get(section) or {}).get("PixelWidth")
            nm = _in_nm(width, "m")
            if nm:
                return nm, "FEI"
    if ome:
        nm = _ome_pixel_size(ome)
        if nm:
            return nm, "OME-TIFF"
    return None


def _ome_pixel_size(xml: str) -> float | None:
    """PhysicalSizeX of the first Pixels element of OME-XML, in nm (OME's default unit: µm)."""
    pixels = re.search(r"<(?:\w+:)?Pixels\b[^>]*>", xml)
    if not pixels:
        return None
    size = re.search(r'\bPhysicalSizeX="([^"]+)"', pixels.group(0))
    unit = re.search(r'\bPhysicalSizeXUnit="([^"]+)"', pixels.group(0))
    if not size:
        return None
    return _in_nm(size.group(1), unit.group(1) if unit else "µm")


def read_native(path: Path) -> tuple[np.ndarray, float | None, str]:
    """The first 2-D image of a native microscope file, its nm per pixel (or None) and its
    format name, read with RosettaSciIO.

    Raises ValueError naming the file when it is not readable or holds no 2-D image, and
    ImportError with the install command when RosettaSciIO is missing.
    """
    import importlib

    module = NATIVE_READERS[path.suffix.lower()]
    try:
        reader = importlib.import_module(f"rsciio.{module}")
    except ImportError as exc:  # pragma: no cover - rosettasciio is a dependency
        raise ImportError(f"reading {path.suffix} files needs RosettaSciIO: "
                          "pip install rosettasciio") from exc
    try:
        signals = reader.file_reader(str(path), lazy=False)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file to the user
        raise ValueError(f"cannot read {path}: not a valid {path.suffix} file "
                         f"({type(exc).__name__}: {exc})") from None
    for signal in signals:
        data = np.asarray(signal.get("data"))
        if data.ndim != 2 or min(data.shape) < 2:
            continue
        axes = signal.get("axes") or []
        x = next((a for a in axes if a.get("index_in_array") == 1), axes[-1] if axes else {})
        nm = None
        if x.get("navigate") is not True:
            nm = _in_nm(x.get("scale"), x.get("units"))
        fmt = {"digitalmicrograph": "DigitalMicrograph", "emd": "EMD", "tia": "TIA SER",
               "mrc": "MRC"}[module]
        return data, nm, fmt
    raise ValueError(f"{path} holds no 2-D image (stacks and spectra are not supported)")
