"""What `analyze` accepts as input: folders, globs, paths and arrays, flattened into a
list of sources, each read as one 2-D image."""

from __future__ import annotations

import glob as _glob
import re
from pathlib import Path

import numpy as np

from ..masks import InstanceMask

_GLOB_CHARS = re.compile(r"[*?\[]")


def _expand_path(path: Path) -> list[Path]:
    from ..io import list_images

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
    from ..io import as_gray, read_image

    if isinstance(source, Path):
        return read_image(source)
    if isinstance(source, InstanceMask):
        raise ValueError(  # noqa: TRY004 - analyze records ValueError as this image's error
            "got an InstanceMask where an image was expected")
    return as_gray(source)
