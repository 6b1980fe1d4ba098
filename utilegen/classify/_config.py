"""Frozen configurations of a shape classifier and of its training."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .._config import check as _check
from .._config import known_fields

__all__ = ["AUGMENTATIONS", "ClassifierConfig", "TrainConfig"]

#: Training augmentation policies (Table 2 of the paper compares the two).
AUGMENTATIONS = ("standard", "randaugment+mixup")
#: What a classifier looks at: a whole micrograph or one particle's crop.
LEVELS = ("image", "particle")


@dataclass(frozen=True)
class ClassifierConfig:
    """What a `ShapeClassifier` is: backbone, classes and input geometry.

    Parameters
    ----------
    backbone : str
        Any `timm` model name (``timm.list_models()``), e.g. ``"xception41"``,
        ``"convnext_atto"``.
    classes : tuple of str
        Class names, in the order of the network's outputs.
    image_size : int
        Side of the square network input in pixels. Whole images are resized (squashed)
        to ``image_size x image_size`` for evaluation and prediction; training crops are
        random-resized crops of that size (see `utilegen.classify` docs).
    mean, std : tuple of 3 floats
        Per-channel normalisation after the grayscale image (scaled to [0, 1]) is
        replicated to 3 channels; the backbone's pretrained values by default.
    model_kwargs : dict
        Extra keyword arguments for ``timm.create_model`` (e.g. ``{"drop_rate": 0.2}``);
        JSON-serialisable, since they are saved in ``config.json``.
    level : {"image", "particle"}
        What the classifier looks at: whole micrographs (the paper's Table 2 design; its
        class is the image's) or single-particle crops (`particle_crops`; `analyze` then
        classifies every particle and takes the image class from `dominant_shape`).
    """

    backbone: str = "xception41"
    classes: tuple = ("sphere", "cube", "rod")
    image_size: int = 224
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)
    model_kwargs: dict = field(default_factory=dict)
    level: str = "image"

    def __post_init__(self):
        _check(isinstance(self.backbone, str) and self.backbone != "", "backbone",
               f"must be a timm model name, got {self.backbone!r}")
        classes = tuple(self.classes) if not isinstance(self.classes, str) else (self.classes,)
        object.__setattr__(self, "classes", classes)
        _check(len(classes) >= 2, "classes", f"must name at least 2 classes, got {classes!r}")
        _check(all(isinstance(c, str) and c for c in classes), "classes",
               f"must be non-empty strings, got {classes!r}")
        _check(len(set(classes)) == len(classes), "classes", f"has duplicates: {classes!r}")
        _check(isinstance(self.image_size, int) and 16 <= self.image_size <= 2048, "image_size",
               f"must be an integer in [16, 2048], got {self.image_size!r}")
        for name in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, name))
            _check(len(value) == 3, name, f"must have 3 values (one per channel), got {value!r}")
            object.__setattr__(self, name, value)
        _check(all(s > 0 for s in self.std), "std", f"must be positive, got {self.std!r}")
        _check(isinstance(self.model_kwargs, dict), "model_kwargs",
               f"must be a dict, got {type(self.model_kwargs).__name__}")
        _check(self.level in LEVELS, "level", f"must be one of {LEVELS}, got {self.level!r}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["classes"], d["mean"], d["std"] = list(self.classes), list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ClassifierConfig:
        return cls(**known_fields(cls, d))


@dataclass(frozen=True)
class TrainConfig:
    """How a `ShapeClassifier` is trained (`ShapeClassifier.fit`).

    Parameters
    ----------
    epochs : int
        Passes over the training set (ignored when `steps` is given).
    steps : int or None
        Total optimizer steps; fixes the training budget whatever the dataset size
        (the benchmark gives every cell the same number of steps).
    batch_size : int
    learning_rate, weight_decay : float
        AdamW with a linear warm-up over the first 5 % of steps and cosine decay to 0.
    augment : {"standard", "randaugment+mixup"}
        "standard": random-resized crop (scale `crop_scale`), horizontal/vertical flips and
        90° rotations (micrographs have no "up"). "randaugment+mixup": the same, then timm's
        RandAugment (`randaugment`) per image and timm's Mixup (`mixup_alpha`,
        `cutmix_alpha`) per batch with soft-target cross-entropy.
    crop_scale : (float, float)
        Area fraction range of the random-resized crop.
    randaugment : str
        timm RandAugment spec (``"rand-m9-mstd0.5"``: 2 ops, magnitude 9 ± 0.5).
    mixup_alpha, cutmix_alpha : float
        Beta-distribution parameters of timm's Mixup / CutMix (0 disables).
    label_smoothing : float
    eval_every : int or None
        Validate every this many steps (default: once per epoch, or 10 times when
        `steps` is given). The best validation accuracy (ties: lower loss) is kept.
    seed : int
        Seeds torch and (for timm's augmentations, which use them) Python's `random` and
        NumPy's global generator, whose states are restored after training.
    """

    epochs: int = 10
    steps: int | None = None
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    augment: str = "standard"
    crop_scale: tuple = (0.35, 1.0)
    randaugment: str = "rand-m9-mstd0.5"
    mixup_alpha: float = 0.8
    cutmix_alpha: float = 0.0
    label_smoothing: float = 0.1
    eval_every: int | None = None
    seed: int = 0

    def __post_init__(self):
        _check(isinstance(self.epochs, int) and self.epochs >= 1, "epochs",
               f"must be a positive integer, got {self.epochs!r}")
        _check(self.steps is None or (isinstance(self.steps, int) and self.steps >= 1), "steps",
               f"must be None or a positive integer, got {self.steps!r}")
        _check(isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size",
               f"must be a positive integer, got {self.batch_size!r}")
        _check(self.learning_rate > 0, "learning_rate", f"must be > 0, got {self.learning_rate!r}")
        _check(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay!r}")
        _check(self.augment in AUGMENTATIONS, "augment",
               f"must be one of {AUGMENTATIONS}, got {self.augment!r}")
        scale = tuple(float(s) for s in self.crop_scale)
        _check(len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1, "crop_scale",
               f"must be (lo, hi) with 0 < lo <= hi <= 1, got {self.crop_scale!r}")
        object.__setattr__(self, "crop_scale", scale)
        _check(self.mixup_alpha >= 0 and self.cutmix_alpha >= 0, "mixup_alpha/cutmix_alpha",
               "must be >= 0")
        _check(0 <= self.label_smoothing < 1, "label_smoothing",
               f"must be in [0, 1), got {self.label_smoothing!r}")
        _check(self.eval_every is None
               or (isinstance(self.eval_every, int) and self.eval_every >= 1),
               "eval_every", f"must be None or a positive integer, got {self.eval_every!r}")
        _check(isinstance(self.seed, int) and self.seed >= 0, "seed",
               f"must be a non-negative integer, got {self.seed!r}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["crop_scale"] = list(self.crop_scale)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return cls(**known_fields(cls, d))
