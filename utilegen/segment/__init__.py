"""Instance segmentation with StarDist (star-convex polygons) in PyTorch.

The network, its training and tiled prediction are utilegen's own (PyTorch); targets, NMS
and matching come from the `stardist` package (``stardist.geometry``, ``stardist.nms``,
``stardist.matching``; never ``stardist.models``, which needs TensorFlow). torch is
imported when a model is created, not when this package is imported.

>>> from utilegen.segment import StarDist
>>> model = StarDist.pretrained("emps")                  # doctest: +SKIP
>>> mask = model.predict(image)                          # doctest: +SKIP
"""

from .._image import percentile_normalize as normalize
from ._adapt import adapt
from ._config import StarDistConfig
from ._evaluate import evaluate
from ._model import StarDist, list_pretrained, load
from ._targets import dist_target, prob_target, targets
from ._threshold import ThresholdSegmenter

__all__ = [
           "StarDist",
           "StarDistConfig",
           "ThresholdSegmenter",
           "adapt",
           "dist_target",
           "evaluate",
           "list_pretrained",
           "load",
           "normalize",
           "prob_target",
           "targets",
]
