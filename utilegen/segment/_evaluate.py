"""`evaluate`: instance matching metrics (`stardist.matching`) as a DataFrame."""

from __future__ import annotations

import numpy as np

from ..datasets import get_pair
from ..masks import InstanceMask

_COLUMNS = ["image", "iou", "precision", "recall", "f1", "accuracy", "panoptic_quality",
            "mean_matched_score", "tp", "fp", "fn", "n_true", "n_pred"]


def _labels(x, what: str) -> np.ndarray:
    if isinstance(x, InstanceMask):
        return x.labels
    return InstanceMask(x).labels


def evaluate(predictions_or_model, pairs, iou=(0.5, 0.7), *, names=None, progress: bool = False):
    """Precision, recall, F1, accuracy and panoptic quality per image and overall.

    Parameters
    ----------
    predictions_or_model : StarDist or sequence of InstanceMask / label arrays
        A model (its `predict` is run on every image of `pairs`) or one prediction per pair.
    pairs : dataset of ``(image, mask)``
        Ground truth (any dataset `utilegen.datasets.get_pair` reads).
    iou : float or sequence of float
        IoU thresholds for a match (StarDist's matching: optimal one-to-one assignment).
    names : sequence of str, optional
        Image names for the ``image`` column (default: the dataset's ``ids`` or indices).

    Returns
    -------
    pandas.DataFrame
        One row per (image, iou) and one row per iou with ``image == "all"`` whose counts are
        summed over images (`stardist.matching.matching_dataset`, ``by_image=False``).
    """
    import pandas as pd
    from stardist.matching import matching, matching_dataset

    ious = [float(iou)] if np.isscalar(iou) else [float(t) for t in iou]
    if not ious or any(not 0 < t <= 1 for t in ious):
        raise ValueError(f"iou thresholds must be in (0, 1], got {iou!r}")
    n = len(pairs)
    if n == 0:
        raise ValueError("pairs is empty")
    is_model = hasattr(predictions_or_model, "predict")
    if not is_model and len(predictions_or_model) != n:
        raise ValueError(f"predictions_or_model has {len(predictions_or_model)} predictions "
                         f"for {n} pairs")
    if names is None:
        names = list(getattr(pairs, "ids", range(n)))
    if len(names) != n:
        raise ValueError(f"names has {len(names)} entries for {n} pairs")
    from tqdm.auto import tqdm

    truths, preds = [], []
    for i in tqdm(range(n), desc="evaluating", disable=not progress):
        image, mask = get_pair(pairs, i)
        truth = _labels(mask, "mask")
        pred = predictions_or_model.predict(image) if is_model else predictions_or_model[i]
        pred = _labels(pred, "prediction")
        if pred.shape != truth.shape:
            raise ValueError(
                f"prediction {i} has shape {pred.shape} but its mask has {truth.shape}")
        truths.append(truth)
        preds.append(pred)
    rows = []
    for name, t, p in zip(names, truths, preds):
        for thr in ious:
            rows.append({"image": str(name), **_row(matching(t, p, thresh=thr))})
    for s in matching_dataset(truths, preds, thresh=ious, show_progress=False):
        rows.append({"image": "all", **_row(s)})
    return pd.DataFrame(rows, columns=_COLUMNS)


def _row(s) -> dict:
    d = s._asdict()
    out = {"iou": float(d["thresh"])}
    for k in _COLUMNS[2:]:
        out[k] = d.get(k, np.nan)
    return out
