"""`sample_pair`: a rendered micrograph-like image with its exact instance mask, for
demos and tests (no data needed)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..masks import InstanceMask


def sample_pair(shape: tuple[int, int] = (512, 512), *, particles: int = 40,
                radius: tuple[float, float] = (10.0, 28.0), touching: float = 0.3,
                rng=0) -> tuple[np.ndarray, InstanceMask]:
    """A small annotated micrograph-like image rendered by utilegen itself.

    Dark spherical particles of varying size (thickness shading, soft edges) on an uneven
    bright background with blur and noise, like a bright-field TEM image, and its exact
    instance mask. Needs no download; the README demo and the tests use it.

    Parameters
    ----------
    shape : (M, N)
        Image size in pixels.
    particles : int
        Number of particles to try to place (fewer if they do not fit).
    radius : (min, max)
        Particle radii in pixels, drawn uniformly.
    touching : float in [0, 1]
        Fraction of particles placed touching (slightly overlapping) a previous one.
    rng : int, Generator or None
        Seed or generator.

    Returns
    -------
    image : (M, N) uint8
    mask : InstanceMask
        Particle *k* (in drawing order) has label *k*; later particles occlude earlier ones.
    """
    rng = np.random.default_rng(rng)
    h, w = (int(s) for s in shape)
    if h < 16 or w < 16:
        raise ValueError(f"shape must be at least 16 x 16, got {shape}")
    r_lo, r_hi = radius
    if not 0 < r_lo <= r_hi:
        raise ValueError(f"radius must be (min, max) with 0 < min <= max, got {radius}")
    if not 0 <= touching <= 1:
        raise ValueError(f"touching must be in [0, 1], got {touching}")

    circles: list[tuple[float, float, float]] = []
    for _ in range(particles):
        r = rng.uniform(r_lo, r_hi)
        for _attempt in range(200):
            if circles and rng.random() < touching:
                # Next to an existing particle, overlapping its rim by up to 15 % of r.
                cy, cx, cr = circles[rng.integers(len(circles))]
                angle = rng.uniform(0, 2 * np.pi)
                dist = (cr + r) * rng.uniform(0.85, 1.0)
                y, x = cy + dist * np.sin(angle), cx + dist * np.cos(angle)
                min_gap = 0.85
            else:
                y, x = rng.uniform(r, h - r), rng.uniform(r, w - r)
                min_gap = 1.05
            if not (r <= y <= h - r and r <= x <= w - r):
                continue
            if all(np.hypot(y - cy, x - cx) >= min_gap * (r + cr) for cy, cx, cr in circles):
                circles.append((y, x, r))
                break

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # Uneven illumination: a tilted plane plus smooth low-frequency noise.
    background = 190 + 25 * (yy / h - 0.5) - 15 * (xx / w - 0.5)
    background += 12 * ndi.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32),
                                           min(h, w) / 10) \
        * (min(h, w) / 10)
    image = background.copy()
    labels = np.zeros((h, w), np.uint16 if len(circles) < 65536 else np.int32)
    for k, (cy, cx, r) in enumerate(circles, start=1):
        y0, y1 = int(max(cy - r - 2, 0)), int(min(cy + r + 3, h))
        x0, x1 = int(max(cx - r - 2, 0)), int(min(cx + r + 3, w))
        d = np.hypot(yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx)
        thickness = np.sqrt(np.clip(1 - (d / r) ** 2, 0, 1))
        coverage = np.clip(r + 0.5 - d, 0, 1)  # anti-aliased edge
        value = 95 - 35 * thickness + rng.normal(0, 6)
        patch = image[y0:y1, x0:x1]
        image[y0:y1, x0:x1] = patch * (1 - coverage) + value * coverage
        labels[y0:y1, x0:x1][d <= r] = k
    image = ndi.gaussian_filter(image, 0.8)
    image += rng.normal(0, 5, size=(h, w)).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), InstanceMask(labels)
