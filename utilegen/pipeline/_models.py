"""Loading the models `analyze` uses, and reading what a classifier returns."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def load_segmenter(segmenter=None):
    """The segmenter `analyze` uses: a model object, a saved model folder, or the default.

    Parameters
    ----------
    segmenter : None, str, Path or object with ``predict(image) -> InstanceMask``
        None loads the default model shipped inside utilegen (``StarDist.pretrained("emps")``);
        a str or path goes to `utilegen.segment.load`: an existing folder written by
        ``StarDist.save``, else a shipped model's name (``"emps"``).
    """
    if segmenter is None:
        from ..segment import StarDist

        try:
            return StarDist.pretrained("emps")
        except (FileNotFoundError, OSError, ValueError) as exc:
            raise FileNotFoundError(
                "no segmenter was given and utilegen's default segmentation model could not be "
                f"loaded ({exc}). Pass a trained model: analyze(..., segmenter=StarDist.load("
                "'my_model')) or, on the command line, --model my_model/") from None
    if isinstance(segmenter, (str, Path)):
        from ..segment import load

        return load(segmenter)  # one rule for "name or folder", as in `utilegen segment`
    if not callable(getattr(segmenter, "predict", None)):
        raise ValueError(  # noqa: TRY004 - the CLI and the app report ValueError as misuse
            "segmenter must be a StarDist model, a saved model folder, or an object "
            f"with a predict(image) method; got {type(segmenter).__name__}")
    return segmenter


#: ``classifier=RULES`` (``--classifier rules``): per-particle shapes from the morphometry
#: rules only, no network.
RULES = "rules"


def load_classifier(classifier=None):
    """The shape classifier `analyze` uses, or None for the morphometry rules alone.

    None takes the per-particle classifier shipped inside utilegen
    (``ShapeClassifier.pretrained("emps")``), or the rules when it cannot be loaded;
    ``"rules"`` (or False) asks for the rules alone; any other str or path goes to
    `utilegen.classify.load` (a saved ``ShapeClassifier`` folder, else a shipped name); an
    object with ``predict`` is used as it is. A particle-level classifier
    (``config.level == "particle"``) names every particle's shape and the image class is
    their `dominant_shape`; an image-level one names the image's class.
    """
    if classifier is False or (isinstance(classifier, (str, Path)) and str(classifier) == RULES
                               and not Path(classifier).is_dir()):
        return None
    if classifier is None:
        try:
            from ..classify import list_pretrained, load
        except ImportError:
            return None
        if "emps" not in list_pretrained():
            return None  # no shipped classifier: classes stay empty
        try:
            return load("emps")
        except Exception as exc:  # noqa: BLE001 - a shipped classifier that cannot load: rules
            import warnings

            warnings.warn(f"utilegen's shape classifier could not be loaded ({exc}); particle "
                          "shapes come from the morphometry rules", RuntimeWarning, stacklevel=2)
            return None
    if isinstance(classifier, (str, Path)):
        from ..classify import load

        return load(classifier)  # one rule for "name or folder", as for the segmenter
    if not callable(getattr(classifier, "predict", None)):
        raise ValueError(  # noqa: TRY004 - the CLI and the app report ValueError as misuse
            "classifier must be a ShapeClassifier, a saved classifier, or an object "
            f"with a predict(image) method; got {type(classifier).__name__}")
    return classifier


def _image_class(classifier, image) -> str | None:
    """The class name a classifier gives one image (a `Prediction`, a str, or a list)."""
    result = classifier.predict(image)
    labels = getattr(result, "labels", None)  # utilegen.classify.Prediction
    if labels is not None:
        result = labels
    if isinstance(result, dict):
        result = result.get("class", result.get("label"))
    if isinstance(result, (list, tuple, np.ndarray)):
        result = result[0] if len(result) else None
    return None if result is None else str(result)


def is_particle_classifier(classifier) -> bool:
    """Whether `classifier` labels single-particle crops (``level="particle"``), not images."""
    return getattr(classifier, "level", "image") == "particle"  # ShapeClassifier.level


def _particle_shapes(table, mask, image=None, classifier=None):
    """Per-particle shapes of the rows of `table`, as ``(shapes, rules, image_class)``.

    `rules` are utilegen.classify's morphometry rules (None when that part of utilegen is
    not available). With a particle-level `classifier`, `shapes` come from it (each
    particle's crop) and `image_class` is their `dominant_shape` by mean probability;
    otherwise `shapes` are the rules' and `image_class` is None (an image-level classifier
    decides it).
    """
    try:
        from ..classify import ShapeRules, classify_crops, dominant_shape
    except ImportError:
        return None, None, None
    # The rules expect pixel areas (their minimum size is a pixel count): taken from the
    # mask itself, not from the calibrated table; the other descriptors have no unit.
    px = table[["area", "solidity", "aspect_ratio", "circularity", "feret_diameter_max",
                "feret_diameter_min"]].copy()
    counts = np.bincount(np.asarray(mask.labels).ravel())
    px["area"] = counts[table["label"].to_numpy(dtype=np.int64)].astype(float)
    rules = list(ShapeRules().classify(px))
    if classifier is None or not is_particle_classifier(classifier):
        return rules, rules, None
    pred = classify_crops(classifier, image, mask, table["label"].to_numpy())
    shapes = list(pred.labels)
    px["shape"] = shapes
    probabilities = getattr(pred, "probabilities", None)
    if probabilities is None:
        return shapes, rules, dominant_shape(px)
    for j, name in enumerate(pred.classes):
        px[f"p_{name}"] = probabilities[:, j]
    # mean probability: chosen over the area-weighted count on the recipe's fold (see
    # benchmarks/RESULTS.md, "Shape classification: the shipped per-particle classifier")
    return shapes, rules, dominant_shape(px, weight="probability")
