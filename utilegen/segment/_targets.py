"""Training targets and resizing (numpy + `stardist.geometry` / `stardist.utils`); the
image normalization is `utilegen._image.percentile_normalize`."""

from __future__ import annotations

import numpy as np


def prob_target(labels: np.ndarray, grid: int = 1) -> np.ndarray:
    """Object probability: per-instance normalized Euclidean distance to the background.

    ``stardist.utils.edt_prob`` on the label image subsampled by `grid` (as StarDist2D
    trains), shape ``(ceil(H/grid), ceil(W/grid))``, float32 in [0, 1].
    """
    from stardist.utils import edt_prob

    sub = np.ascontiguousarray(np.asarray(labels)[::grid, ::grid])
    if not sub.any():
        return np.zeros(sub.shape, np.float32)
    return edt_prob(sub).astype(np.float32, copy=False)


def dist_target(labels: np.ndarray, n_rays: int = 32, grid: int = 1) -> np.ndarray:
    """Radial distances to each pixel's instance boundary, ``(H/grid, W/grid, n_rays)``.

    ``stardist.geometry.star_dist`` evaluated on every `grid`-th pixel (0 on background).
    """
    from stardist.geometry import star_dist

    lab = np.ascontiguousarray(np.asarray(labels), dtype=np.uint16 if np.asarray(labels).max()
                               <= 65535 else np.int32)
    return star_dist(lab, n_rays, mode="cpp", grid=(grid, grid)).astype(np.float32, copy=False)


def targets(labels, n_rays: int = 32, grid: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(prob (H/g, W/g), dist (H/g, W/g, n_rays))`` training targets of a label image."""
    labels = np.asarray(labels)
    return prob_target(labels, grid), dist_target(labels, n_rays, grid)


def _size(shape, scale: float, size: int | None) -> tuple[int, int]:
    """(rows, cols) of a `shape` image resized by `scale`, or `size` x `size` if given."""
    if size is not None:
        return size, size
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def resize_image(image: np.ndarray, scale: float, *, size: int | None = None) -> np.ndarray:
    """Resize a float image by `scale` (area averaging down, linear up); 1.0 returns it as is.

    `size` fixes the output to ``size x size`` (a square `image`, `scale` = size / side).
    """
    if scale == 1:
        return image
    import cv2

    hs, ws = _size(image.shape, scale, size)
    size = (ws, hs)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image, dtype=np.float32), size, interpolation=interp)


def resize_labels(labels: np.ndarray, scale: float, *, size: int | None = None) -> np.ndarray:
    """Resize a label image by `scale` with nearest-neighbour sampling (labels kept)."""
    if scale == 1:
        return labels
    h, w = labels.shape
    hs, ws = _size(labels.shape, scale, size)
    rows = np.clip(np.floor((np.arange(hs) + 0.5) * h / hs).astype(int), 0, h - 1)
    cols = np.clip(np.floor((np.arange(ws) + 0.5) * w / ws).astype(int), 0, w - 1)
    return np.ascontiguousarray(labels[np.ix_(rows, cols)])
