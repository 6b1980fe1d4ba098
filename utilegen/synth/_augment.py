"""`Augmenter`: the image degradations of the generator (salt-and-pepper, blur,
intensity, noise), drawn first and then applied, so a sample can be replayed."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from .._config import known_fields


@dataclass(frozen=True)
class Augmenter:
    """Image-level degradations, drawn per image, recorded, then applied.

    The defaults are the UTILE-Gen paper's experiments: salt-and-pepper noise up to 10 % of
    the pixels and Gaussian blur up to sigma 0.3; the other perturbations are off.

    Parameters
    ----------
    salt_pepper_max : float in [0, 1]
        Fraction of pixels replaced, drawn uniformly in [0, max]; each pixel turns black
        (0) with probability fraction / 2 and white (1) with fraction / 2.
    blur_max : float >= 0
        Gaussian blur sigma in pixels, drawn uniformly in [0, max].
    brightness : float >= 0
        Additive offset drawn in [-brightness, +brightness] (image range is [0, 1]).
    contrast : float in [0, 1)
        Contrast factor around the image mean drawn in [1 - contrast, 1 + contrast].
    gamma : float in [0, 1)
        Gamma exponent drawn log-uniformly in [1 - gamma, 1 / (1 - gamma)].
    gaussian_noise_max : float >= 0
        Standard deviation of additive Gaussian noise, drawn in [0, max].
    poisson_peak : (low, high) or None
        Shot noise: the image is scaled to a peak count drawn log-uniformly in this range,
        Poisson-sampled and scaled back (fewer counts = noisier).
    """

    salt_pepper_max: float = 0.1
    blur_max: float = 0.3
    brightness: float = 0.0
    contrast: float = 0.0
    gamma: float = 0.0
    gaussian_noise_max: float = 0.0
    poisson_peak: tuple[float, float] | None = None

    def __post_init__(self):
        checks = {
            "salt_pepper_max": 0 <= self.salt_pepper_max <= 1,
            "blur_max": self.blur_max >= 0,
            "brightness": 0 <= self.brightness <= 1,
            "contrast": 0 <= self.contrast < 1,
            "gamma": 0 <= self.gamma < 1,
            "gaussian_noise_max": self.gaussian_noise_max >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"Augmenter: {name}={getattr(self, name)!r} is out of range")
        if self.poisson_peak is not None:
            lo, hi = self.poisson_peak
            if not 0 < lo <= hi:
                raise ValueError("Augmenter: poisson_peak must be (low, high) "
                                 "with 0 < low <= high, "
                                 f"got {self.poisson_peak!r}")
            object.__setattr__(self, "poisson_peak", (float(lo), float(hi)))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["poisson_peak"] = list(self.poisson_peak) if self.poisson_peak else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Augmenter:
        d = known_fields(cls, d)
        if d.get("poisson_peak") is not None:
            d["poisson_peak"] = tuple(d["poisson_peak"])
        return cls(**d)

    def draw(self, rng=None) -> dict:
        """Draw the parameters for one image (recorded in the dataset manifest)."""
        rng = np.random.default_rng(rng)
        params = {
            "salt_pepper": float(rng.uniform(0, self.salt_pepper_max)),
            "blur_sigma": float(rng.uniform(0, self.blur_max)),
            "brightness": float(rng.uniform(-self.brightness, self.brightness)),
            "contrast": float(rng.uniform(1 - self.contrast, 1 + self.contrast)),
            "gamma": (float(np.exp(rng.uniform(-1, 1) * -np.log(1 - self.gamma)))
                      if self.gamma else 1.0),
            "gaussian_noise": float(rng.uniform(0, self.gaussian_noise_max)),
            "poisson_peak": (float(np.exp(rng.uniform(*np.log(self.poisson_peak))))
                             if self.poisson_peak else None),
            "noise_seed": int(rng.integers(2**63)),
        }
        return params

    def apply(self, image: np.ndarray, params: dict) -> np.ndarray:
        """Apply drawn `params` to a float32 image in [0, 1]; the result is in [0, 1]."""
        out = np.asarray(image, np.float32)
        rng = np.random.default_rng(params["noise_seed"])
        if params["blur_sigma"] > 0.05:
            out = cv2.GaussianBlur(out, (0, 0), params["blur_sigma"])
        if params["contrast"] != 1 or params["brightness"] != 0:
            mean = float(out.mean())
            out = (out - mean) * params["contrast"] + mean + params["brightness"]
        if params["gamma"] != 1:
            out = np.clip(out, 0, 1) ** params["gamma"]
        if params["poisson_peak"]:
            peak = params["poisson_peak"]
            out = rng.poisson(np.clip(out, 0, 1) * peak).astype(np.float32) / np.float32(peak)
        if params["gaussian_noise"] > 0:
            out = out + rng.normal(0, params["gaussian_noise"], out.shape).astype(np.float32)
        out = np.clip(out, 0, 1, out=np.array(out, np.float32, copy=out is image))
        fraction = params["salt_pepper"]
        if fraction > 0:
            # Each pixel independently: pepper (black) with probability fraction/2, salt
            # (white) with fraction/2, as scikit-image's random_noise does.
            u = rng.random(out.shape, dtype=np.float32)
            out[u < fraction / 2] = 0.0
            out[(u >= fraction / 2) & (u < fraction)] = 1.0
        return out

    def __call__(self, image: np.ndarray, rng=None) -> tuple[np.ndarray, dict]:
        params = self.draw(rng)
        return self.apply(image, params), params
