"""Classification metrics: accuracy, per-class precision/recall, confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Evaluation", "confusion_matrix"]


def confusion_matrix(true: Sequence[str], predicted: Sequence[str],
                     classes: Sequence[str]) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class, in the order of `classes`."""
    index = {c: i for i, c in enumerate(classes)}
    if len(true) != len(predicted):
        raise ValueError(f"true has {len(true)} labels but predicted has {len(predicted)}")
    unknown = sorted({t for t in list(true) + list(predicted) if t not in index})
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {list(classes)}")
    cm = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p in zip(true, predicted):
        cm[index[t], index[p]] += 1
    return cm


@dataclass(frozen=True)
class Evaluation:
    """Results of `ShapeClassifier.evaluate`.

    Attributes
    ----------
    classes : tuple of str
    confusion : (C, C) int ndarray
        Row = true class, column = predicted class.
    names, true, predicted : tuple of str
        Per-image identifiers, true and predicted labels.
    probabilities : (N, C) ndarray
    """

    classes: tuple
    confusion: np.ndarray
    names: tuple = ()
    true: tuple = ()
    predicted: tuple = ()
    probabilities: np.ndarray | None = None

    @classmethod
    def from_labels(cls, true, predicted, classes, *, names=(), probabilities=None) -> Evaluation:
        return cls(tuple(classes), confusion_matrix(true, predicted, classes), tuple(names),
                   tuple(true), tuple(predicted), probabilities)

    @property
    def n(self) -> int:
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / self.n) if self.n else float("nan")

    @property
    def precision(self) -> dict[str, float]:
        """Per class: correct / predicted as that class (NaN if never predicted)."""
        col = self.confusion.sum(axis=0)
        return {c: float(self.confusion[i, i] / col[i]) if col[i] else float("nan")
                for i, c in enumerate(self.classes)}

    @property
    def recall(self) -> dict[str, float]:
        """Per class: correct / images of that class (NaN if there are none)."""
        row = self.confusion.sum(axis=1)
        return {c: float(self.confusion[i, i] / row[i]) if row[i] else float("nan")
                for i, c in enumerate(self.classes)}

    @property
    def balanced_accuracy(self) -> float:
        """Mean recall over the classes present (robust to class imbalance)."""
        values = [v for v in self.recall.values() if not np.isnan(v)]
        return float(np.mean(values)) if values else float("nan")

    def normalized(self) -> np.ndarray:
        """Confusion matrix with each row divided by its total (rows of 0 stay 0)."""
        rows = self.confusion.sum(axis=1, keepdims=True)
        return np.divide(self.confusion, rows, out=np.zeros(self.confusion.shape), where=rows > 0)

    def to_dict(self) -> dict:
        return {"classes": list(self.classes), "n": self.n, "accuracy": self.accuracy,
                "balanced_accuracy": self.balanced_accuracy, "precision": self.precision,
                "recall": self.recall, "confusion": self.confusion.tolist()}

    def __str__(self) -> str:
        width = max(9, *(len(c) for c in self.classes)) + 1
        lines = [(f"accuracy {self.accuracy:.3f} (balanced {self.balanced_accuracy:.3f}) "
                  f"on {self.n} images"),
                 f"{'class':<{width}}{'precision':>10}{'recall':>8}{'n':>5}"]
        rows = self.confusion.sum(axis=1)
        for i, c in enumerate(self.classes):
            lines.append(f"{c:<{width}}{self.precision[c]:>10.3f}{self.recall[c]:>8.3f}{rows[i]:>5d}")
        lines.append("confusion (rows true, columns predicted): " + " ".join(self.classes))
        lines += ["  " + " ".join(f"{v:4d}" for v in r) for r in self.confusion]
        return "\n".join(lines)

    def plot(self, ax=None, *, title: str | None = None, cmap: str = "Blues"):
        """Row-normalised confusion matrix as a heat map with values (the paper's Fig. 6b).

        Returns the matplotlib Figure.
        """
        if ax is None:
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(1.3 * len(self.classes) + 1.5,
                                            1.2 * len(self.classes) + 1))
        else:
            fig = ax.figure
        norm = self.normalized()
        im = ax.imshow(norm, cmap=cmap, vmin=0, vmax=1)
        ax.set_xticks(range(len(self.classes)), self.classes)
        ax.set_yticks(range(len(self.classes)), self.classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        for i in range(norm.shape[0]):
            for j in range(norm.shape[1]):
                ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center",
                        color="white" if norm[i, j] > 0.5 else "black")
        ax.set_title(title or f"accuracy {self.accuracy:.2f} (n={self.n})")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        fig.tight_layout()
        return fig
