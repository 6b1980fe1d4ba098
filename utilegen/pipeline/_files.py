"""Writing report files: safe names, atomic PNG and text writes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np


def _safe_name(text: str) -> str:
    """A file-name-safe version of an image id (letters, digits, ``._-``)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._")
    return name[:100] or "image"


def _write_png(path: Path, rgb: np.ndarray, *, overwrite: bool) -> None:
    import cv2

    from ..io import atomic_path

    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode {path.name} as PNG")
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data.tobytes())


def _write_text(path: Path, text: str, *, overwrite: bool) -> None:
    from ..io import atomic_path

    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
