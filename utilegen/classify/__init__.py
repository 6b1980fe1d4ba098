"""Shape classification of micrographs (step 2 of UTILE-Gen) and of single particles.

Whole images: `ShapeClassifier` fine-tunes any timm backbone to say which kind of
nanoparticle system an image shows (sphere / cube / rod), with "standard" augmentation or
timm's RandAugment + MixUp, on real, synthetic (`synthetic_for_class`) or mixed data.

Single particles: `particle_shapes` labels every instance of a segmented image as
sphere / cube / rod / other from its morphometry (`ShapeRules`) or from its crop (a
`ShapeClassifier` trained on `particle_crops`), and `shape_fractions` summarises them,
so a mixed sample gets a shape fraction instead of one label (`dominant_shape` turns
that into an image label when one is wanted).

Image policy
------------
- Grayscale micrographs are replicated to the 3 channels of ImageNet backbones (RGB
  input is first converted to grayscale); uint8 is divided by 255, other dtypes are
  stretched from their 0.5th to 99.5th percentile.
- Prediction and evaluation resize the whole image (any size) to
  ``image_size x image_size``; training takes random-resized crops of that size
  (area 35-100 %), flips and 90° rotations ("standard"), plus RandAugment and MixUp.

>>> from utilegen.datasets import emps
>>> from utilegen.classify import ShapeClassifier, from_emps, load
>>> data = from_emps(emps("../shared/data/emps"),
...                  classes=("sphere", "cube", "rod"))                        # doctest: +SKIP
>>> clf = ShapeClassifier("convnext_atto", image_size=128)                     # doctest: +SKIP
>>> clf.fit(train, val, epochs=20, augment="randaugment+mixup")               # doctest: +SKIP
>>> clf.save("my_classifier"); clf = load("my_classifier")                    # doctest: +SKIP

Importing this package does not import torch or timm; they load when a model is made.
"""

from ._config import AUGMENTATIONS, LEVELS, ClassifierConfig, TrainConfig
from ._data import LabelledImages, from_emps, from_folder, read_labels, synthetic_for_class
from ._metrics import Evaluation, confusion_matrix
from ._particles import (
    PARTICLE_SHAPES,
    ShapeRules,
    classify_crops,
    dominant_shape,
    particle_crops,
    particle_shapes,
    shape_fractions,
)
from ._registry import list_pretrained, load

__all__ = [
    "AUGMENTATIONS",
    "LEVELS",
    "PARTICLE_SHAPES",
    "ClassifierConfig",
    "Evaluation",
    "LabelledImages",
    "Prediction",
    "ShapeClassifier",
    "ShapeRules",
    "TrainConfig",
    "classify_crops",
    "confusion_matrix",
    "create_backbone",
    "dominant_shape",
    "from_emps",
    "from_folder",
    "list_pretrained",
    "load",
    "particle_crops",
    "particle_shapes",
    "read_labels",
    "shape_fractions",
    "synthetic_for_class",
]

_TORCH_NAMES = {"ShapeClassifier", "Prediction", "create_backbone"}


def __getattr__(name):
    if name in _TORCH_NAMES:
        from . import _model

        return getattr(_model, name)
    raise AttributeError(f"module 'utilegen.classify' has no attribute {name!r}")
