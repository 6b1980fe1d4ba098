"""Image preparation: one home for grayscale coercion and the intensity policies.

Every step that takes a user's micrograph first makes it a 2-D numeric array with
`as_gray` (RGB/RGBA converted with `to_grayscale`, dtype kept). Each step then scales
intensities with one named policy, chosen for what that step feeds:

======================== ============================== ======================================
policy                   used by                        why
======================== ============================== ======================================
`to_unit_float`          synth (`ParticlePool`,         the generator composes particles and
                         `BackgroundPool`), datasets'   backgrounds from many images on one
                         torch tensors                  fixed [0, 1] scale: uint8 / 255,
                                                        wider integers / the image's maximum
                                                        (12-/14-bit data in uint16), floats
                                                        in [0, 1] kept
`percentile_normalize`   segment (StarDist training     the StarDist convention (csbdeep's
(1 / 99.8, not clipped)  patches and prediction)        ``normalize(x, 1, 99.8)``): exposure
                                                        and dtype do not matter; finite and
                                                        bounded for NaN/inf/flat images
`percentile_to_unit`     classify (evaluation and       ImageNet backbones take [0, 1] inputs
(uint8 / 255, else       training transforms)           before their mean/std; clipped, so a
0.5 / 99.5, clipped)                                    few hot pixels cannot squash contrast
`to_display_uint8`       pipeline overlays (report,     display only: contrast-stretched
(0.5 / 99.5)             web app)                       8-bit gray, never measured
`to_uint8_full_range`    calibration (scale-bar         burned-in bars and labels are pure
(uint8 kept, else        reading)                       white or black: percentiles would
min / max)                                              clip them into the specimen's gray
======================== ============================== ======================================

Note that the classify policy treats dtypes differently: a uint8 image is divided by
255 while the same image as float32 is percentile-stretched.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "as_gray",
    "percentile_normalize",
    "percentile_to_unit",
    "to_display_uint8",
    "to_grayscale",
    "to_uint8_full_range",
    "to_unit_float",
]


def as_gray(image, *, name: str = "image", min_size: int = 1) -> np.ndarray:
    """`image` as a 2-D numeric array: RGB/RGBA converted to gray, the dtype kept.

    Parameters
    ----------
    image : (M, N) or (M, N, 3|4) array_like
    name : str
        What the image is, for the error messages (``"pair 3: image"``).
    min_size : int
        The smallest height and width accepted.

    Raises
    ------
    ValueError
        When the image is not 2-D (or RGB), not numeric (bool is accepted), empty, or
        smaller than `min_size`.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = to_grayscale(arr)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D grayscale (or RGB) image, got shape {arr.shape}")
    if arr.dtype != bool and not (np.issubdtype(arr.dtype, np.number)
                                  and not np.issubdtype(arr.dtype, np.complexfloating)):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if min(arr.shape) < min_size:
        raise ValueError(f"{name} is too small: shape {arr.shape}")
    return arr


def to_grayscale(arr: np.ndarray) -> np.ndarray:
    """Convert an (M, N, 3|4) RGB(A) image to (M, N), keeping the dtype.

    Images whose colour channels are equal (grayscale saved as RGB, as in EMPS) are taken
    exactly; others use the ITU-R 601 luma weights 0.299, 0.587, 0.114.
    """
    if arr.ndim == 2:
        return arr
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"expected a 2-D image or an RGB(A) image, got shape {arr.shape}")
    rgb = arr[..., :3]
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return np.ascontiguousarray(rgb[..., 0])
    gray = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        return np.clip(np.rint(gray), info.min, info.max).astype(arr.dtype)
    return gray.astype(arr.dtype)


# ------------------------------------------------------------------ intensity policies
def to_unit_float(image) -> np.ndarray:
    """Image as float32 in [0, 1], the scale utilegen's generator and tensors work in.

    uint8 is divided by 255. Wider integers are divided by the image's own maximum: 12- or
    14-bit detector data stored as uint16 would otherwise come out nearly black. Floats
    already in [0, 1] are kept; other floats have their range mapped to [0, 1].
    """
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255)
    if image.dtype == bool:
        return image.astype(np.float32)
    if np.issubdtype(image.dtype, np.integer):
        lo, hi = int(image.min()), int(image.max())
        if lo < 0:  # signed data: map its range
            return ((image.astype(np.float32) - lo) / max(hi - lo, 1)).astype(np.float32)
        return image.astype(np.float32) / np.float32(max(hi, 1))
    if np.issubdtype(image.dtype, np.floating):
        lo, hi = float(np.nanmin(image)), float(np.nanmax(image))
        if lo >= 0 and hi <= 1:
            return image.astype(np.float32)
        return ((image - lo) / max(hi - lo, 1e-12)).astype(np.float32)
    raise ValueError(f"image must be numeric, got dtype {image.dtype}")


def percentile_normalize(image, low: float = 1.0, high: float = 99.8) -> np.ndarray:
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


def percentile_to_unit(image) -> np.ndarray:
    """(M, N) or (M, N, 3|4) image -> (M, N) float32 in [0, 1] for classification.

    uint8 is divided by 255; other dtypes are stretched from their 0.5th-99.5th
    percentile and clipped (a 12-bit image in a uint16 file would otherwise be nearly
    black). NaN or infinite pixels are refused.
    """
    image = as_gray(image, min_size=2)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255)
    if image.dtype == bool:
        return image.astype(np.float32)
    values = image.astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise ValueError("image has NaN or infinite values")
    lo, hi = np.percentile(values, (0.5, 99.5))
    if hi <= lo:
        return np.zeros_like(values)
    return np.clip((values - lo) / (hi - lo), 0, 1).astype(np.float32)


def to_display_uint8(image: np.ndarray) -> np.ndarray:
    """Contrast-stretch an image to uint8 for display (0.5 / 99.5 percentiles of the finite
    pixels; NaN and inf to 0)."""
    img = np.asarray(image, dtype=np.float64)
    finite = img[np.isfinite(img)]
    if finite.size == 0:
        return np.zeros(img.shape, np.uint8)
    lo, hi = np.percentile(finite, (0.5, 99.5))
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        return np.full(img.shape, 128, np.uint8)
    out = np.clip((np.nan_to_num(img, nan=lo, posinf=lo, neginf=lo) - lo) / (hi - lo), 0, 1)
    return np.round(out * 255).astype(np.uint8)


def to_uint8_full_range(image: np.ndarray) -> np.ndarray:
    """uint8 kept as is; other dtypes mapped from their finite min / max to 0-255 (NaN and
    inf to 0), so that the extremes of the image stay the extremes."""
    g = np.asarray(image)
    if g.dtype == np.uint8:
        return g
    g = g.astype(np.float64)
    finite = np.isfinite(g)
    if not finite.any():
        return np.zeros(g.shape, np.uint8)
    lo, hi = float(g[finite].min()), float(g[finite].max())
    g = np.where(finite, g, lo)
    return np.round((g - lo) / (hi - lo or 1.0) * 255).astype(np.uint8)
