"""`ThresholdSegmenter`: a classical baseline (Otsu threshold + connected components)."""

from __future__ import annotations

import numpy as np

from .._image import as_gray
from ..masks import InstanceMask


class ThresholdSegmenter:
    """A classical baseline segmenter: Otsu threshold, then connected components.

    Not a trained model and no substitute for StarDist (touching particles merge); it
    needs no weights and runs in milliseconds, so it serves as a stand-in where only the
    pipeline is being exercised (tests, demos) and as a baseline to compare against.

    Parameters
    ----------
    dark_particles : bool
        Particles darker than the background (bright-field TEM), or brighter.
    sigma : float
        Gaussian smoothing (pixels) before thresholding.
    min_area : int
        Components smaller than this many pixels are dropped as noise.
    """

    def __init__(self, *, dark_particles: bool = True, sigma: float = 1.0, min_area: int = 30):
        if sigma < 0 or min_area < 0:
            raise ValueError("sigma and min_area must be >= 0")
        self.dark_particles = bool(dark_particles)
        self.sigma = float(sigma)
        self.min_area = int(min_area)

    def __repr__(self) -> str:
        return (f"ThresholdSegmenter(dark_particles={self.dark_particles}, sigma={self.sigma}, "
                f"min_area={self.min_area})")

    def predict(self, image) -> InstanceMask:
        from scipy import ndimage as ndi
        from skimage.filters import threshold_otsu

        img = as_gray(image).astype(np.float32)
        if self.sigma > 0:
            img = ndi.gaussian_filter(img, self.sigma)
        if np.ptp(img) == 0:
            return InstanceMask(np.zeros(img.shape, np.uint16))
        t = threshold_otsu(img)
        foreground = img < t if self.dark_particles else img > t
        labels, n = ndi.label(foreground)
        if n and self.min_area > 1:
            areas = np.bincount(labels.ravel())
            small = np.flatnonzero(areas < self.min_area)
            labels[np.isin(labels, small[small > 0])] = 0
        return InstanceMask(labels).relabel()
