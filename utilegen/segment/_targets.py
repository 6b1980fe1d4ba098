"""Training targets and image normalization (numpy + `stardist.geometry` / `stardist.utils`)."""

from __future__ import annotations

import numpy as np


def normalize(image, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Map the `low` and `high` percentiles of `image` to 0 and 1 (float32, not clipped).

    Like csbdeep's ``normalize(x, 1, 99.8)``, used by every StarDist model. Large images
    are percentile-sampled on a regular sub-grid of about 4 million pixels.

    Degenerate images stay finite and bounded: percentiles are taken over the finite
    pixels only, and NaN/inf pixels become 0 (background level). When the two percentiles
    are (nearly) equal, e.g. a flat background with one small particle covering under
    1 % of the area, the image's minimum and maximum are used instead; a constant image
    becomes all zeros. Values are clipped to [-1000, 1000] so that no pixel can drive the
    network to absurd outputs.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (grayscale), got shape {image.shape}")
    sample = image
    if image.size > 4_000_000:
        step = int(np.ceil(np.sqrt(image.size / 4_000_000)))
        sample = image[::step, ::step]
    finite = None
    if np.issubdtype(image.dtype, np.floating):
        finite = np.isfinite(image)
        if not finite.all():
            sample = sample[np.isfinite(sample)]
            if sample.size == 0:
                sample = image[finite]
        else:
            finite = None
    if sample.size == 0:  # no finite pixel at all
        return np.zeros(image.shape, np.float32)
    lo, hi = (float(v) for v in np.percentile(sample, (low, high)))
    if not _wide_enough(lo, hi):  # fall back to the full range of the finite pixels
        values = image[finite] if finite is not None else image
        lo, hi = float(values.min()), float(values.max())
        if not _wide_enough(lo, hi):  # a constant image
            return np.zeros(image.shape, np.float32)
    # float64 input is scaled in float64: its values may not fit float32 before scaling
    work = np.float64 if image.dtype == np.float64 else np.float32
    out = image.astype(work, copy=True)
    if finite is not None:
        out[~finite] = lo
    out -= work(lo)
    out /= work(hi - lo)
    np.clip(out, -1000, 1000, out=out)
    return out.astype(np.float32, copy=False)


def _wide_enough(lo: float, hi: float) -> bool:
    """Whether [lo, hi] is a usable intensity range (not empty, not lost in rounding)."""
    span = hi - lo
    return bool(np.isfinite(span) and span > 1e-6 * max(abs(lo), abs(hi), 1e-30))


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
