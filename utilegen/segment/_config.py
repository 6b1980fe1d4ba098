"""`StarDistConfig`: the frozen configuration of a utilegen StarDist model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .._config import check as _check
from .._config import known_fields

__all__ = ["StarDistConfig"]


@dataclass(frozen=True)
class StarDistConfig:
    """Network, target and training settings; defaults are StarDist2D's published ones.

    Parameters
    ----------
    n_rays : int
        Number of radial distances per pixel (32; thin rods need 64).
    grid : int
        Output subsampling factor (2): the network predicts on every `grid`-th pixel.
    unet_depth, base_filters, kernel_size, convs_per_level : int
        U-Net depth (3), filters at the top level (32, doubled per level), convolution
        size (3) and convolutions per level (2).
    feature_channels : int
        Width of the 3x3 feature layer after the U-Net (128; 0 = none).
    patch_size : int
        Side of the square training patches in pixels (256).
    batch_size : int
        Patches per training step (4).
    learning_rate : float
        Adam learning rate (3e-4).
    dist_loss_weight : float
        Weight of the distance loss relative to the probability BCE (0.2).
    background_reg : float
        L1 penalty on distances predicted on background (1e-4, StarDist's `train_background_reg`).
    foreground_fraction : float
        Fraction of training patches forced to contain foreground (0.9).
    lr_factor, lr_patience : float, int
        Reduce-on-plateau: multiply the learning rate by `lr_factor` after `lr_patience`
        epochs without a lower validation loss (0.5, 40 as in StarDist2D).
    ema_decay : float
        Keep an exponential moving average of the weights with this decay per step
        (0.99; 0 = none, the network's own weights as in StarDist2D). Validation, the
        choice of the best epoch and the weights returned use the average, which is less
        tied to the last few batches. Not in StarDist2D: on 20 selection images, 10-minute
        adaptations with it scored per-image F1@0.5 0.885 / 0.797 (two seeds) against
        0.725 / 0.773 without (benchmarks/RESULTS.md, "Weight averaging"). The decay ramps
        up as ``min(ema_decay, (1 + t) / (10 + t))`` over steps ``t``, so the average
        follows the first steps closely.
    normalize_low, normalize_high : float
        Percentiles mapped to 0 and 1 before the network (1, 99.8).
    augment : bool
        Random flips, 90° rotations and intensity jitter during training.
    intensity_jitter : float
        Range of the random intensity scale (1 ± x) and shift (± x/2) (0.2).
    zoom : float
        Random zoom of training patches, log-uniform in [1/zoom, zoom] (1 = none): a
        patch of ``patch_size / z`` pixels is resized to ``patch_size``, so the network
        sees each particle at more sizes. Not in StarDist2D's default augmenter; it makes
        the size-ladder of `StarDist.predict` (``scale="auto"``) smoother.
    batch_norm : bool
        Batch normalization after every U-Net convolution (StarDist2D's
        ``unet_batch_norm``, off by default there and here).
    scale : float
        Images are resized by this factor before the network (training and prediction;
        label images with nearest neighbour) and the polygons scaled back, like the
        ``scale`` argument of StarDist2D's ``predict_instances``. Use it when particles are
        large: StarDist works best for objects of roughly 10-80 px (1.0 = no resizing).
    mixed_precision : bool
        Run convolutions in bfloat16 (autocast, channels-last) where the CPU supports it;
        weights, heads and losses stay float32. Not in StarDist2D (TensorFlow, float32):
        it makes training and prediction 2-3x faster on CPUs with AVX-512 BF16 / AMX.
    """

    n_rays: int = 32
    grid: int = 2
    unet_depth: int = 3
    base_filters: int = 32
    kernel_size: int = 3
    convs_per_level: int = 2
    feature_channels: int = 128
    patch_size: int = 256
    batch_size: int = 4
    learning_rate: float = 3e-4
    dist_loss_weight: float = 0.2
    background_reg: float = 1e-4
    foreground_fraction: float = 0.9
    lr_factor: float = 0.5
    lr_patience: int = 40
    ema_decay: float = 0.99
    normalize_low: float = 1.0
    normalize_high: float = 99.8
    augment: bool = True
    intensity_jitter: float = 0.2
    zoom: float = 1.0
    batch_norm: bool = False
    scale: float = 1.0
    mixed_precision: bool = True

    def __post_init__(self):
        _check(isinstance(self.n_rays, int) and 3 <= self.n_rays <= 256, "n_rays",
               f"must be an integer in [3, 256], got {self.n_rays!r}")
        _check(self.grid in (1, 2, 4, 8), "grid", f"must be 1, 2, 4 or 8, got {self.grid!r}")
        _check(isinstance(self.unet_depth, int) and 1 <= self.unet_depth <= 5, "unet_depth",
               f"must be an integer in [1, 5], got {self.unet_depth!r}")
        _check(isinstance(self.base_filters, int) and 1 <= self.base_filters <= 256,
               "base_filters", f"must be an integer in [1, 256], got {self.base_filters!r}")
        _check(self.kernel_size in (1, 3, 5, 7), "kernel_size",
               f"must be 1, 3, 5 or 7, got {self.kernel_size!r}")
        _check(isinstance(self.convs_per_level, int) and 1 <= self.convs_per_level <= 4,
               "convs_per_level", f"must be an integer in [1, 4], got {self.convs_per_level!r}")
        _check(isinstance(self.feature_channels, int) and 0 <= self.feature_channels <= 1024,
               "feature_channels",
               f"must be an integer in [0, 1024], got {self.feature_channels!r}")
        _check(isinstance(self.patch_size, int) and self.patch_size >= self.divisor
               and self.patch_size % self.divisor == 0, "patch_size",
               f"must be a positive multiple of grid * 2**unet_depth = {self.divisor}, "
               f"got {self.patch_size!r}")
        _check(isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size",
               f"must be a positive integer, got {self.batch_size!r}")
        _check(0 < self.learning_rate < 1, "learning_rate",
               f"must be in (0, 1), got {self.learning_rate!r}")
        _check(self.dist_loss_weight >= 0, "dist_loss_weight",
               f"must be >= 0, got {self.dist_loss_weight!r}")
        _check(self.background_reg >= 0, "background_reg",
               f"must be >= 0, got {self.background_reg!r}")
        _check(0 <= self.foreground_fraction <= 1, "foreground_fraction",
               f"must be in [0, 1], got {self.foreground_fraction!r}")
        _check(0 < self.lr_factor < 1, "lr_factor", f"must be in (0, 1), got {self.lr_factor!r}")
        _check(isinstance(self.lr_patience, int) and self.lr_patience >= 1, "lr_patience",
               f"must be a positive integer, got {self.lr_patience!r}")
        _check(0 <= self.ema_decay < 1, "ema_decay", f"must be in [0, 1), got {self.ema_decay!r}")
        _check(0 <= self.normalize_low < self.normalize_high <= 100, "normalize_low/normalize_high",
               f"must satisfy 0 <= low < high <= 100, "
               f"got {self.normalize_low!r}, {self.normalize_high!r}")
        _check(0.05 <= self.scale <= 4, "scale", f"must be in [0.05, 4], got {self.scale!r}")
        _check(1 <= self.zoom <= 4, "zoom", f"must be in [1, 4], got {self.zoom!r}")
        _check(0 <= self.intensity_jitter < 1, "intensity_jitter",
               f"must be in [0, 1), got {self.intensity_jitter!r}")

    @property
    def divisor(self) -> int:
        """Input sides must be multiples of this (grid times the U-Net's total pooling)."""
        return self.grid * 2**self.unet_depth

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> StarDistConfig:
        return cls(**known_fields(cls, d))

    def replace(self, **changes) -> StarDistConfig:
        return dataclasses.replace(self, **changes)
