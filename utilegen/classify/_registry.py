"""Shape classifiers by shipped name or saved folder: `load` and `list_pretrained`, with
the same "name or folder" rule as `utilegen.segment.load`."""

from __future__ import annotations

from pathlib import Path

_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
#: Classifiers shipped with utilegen: name -> folder under ``utilegen/models/``.
#: ``"emps"``: per-particle sphere / cube / rod / other on crops of EMPS micrographs
#: (``level="particle"``; trained by ``benchmarks/particle_classifier.py``).
PRETRAINED: dict[str, str] = {"emps": "shape_emps"}


def list_pretrained() -> list[str]:
    """Names of the shape classifiers shipped with utilegen (for `load`)."""
    return sorted(PRETRAINED)


def load(name_or_path):
    """A `ShapeClassifier` by shipped name or saved folder (written by ``ShapeClassifier.save``).

    An existing folder wins over a shipped name of the same spelling; an unknown name
    says both which folder was looked for and which names exist.
    """
    from ._model import ShapeClassifier

    path = Path(name_or_path)
    if path.is_dir():
        return ShapeClassifier.load(path)
    name = str(name_or_path)
    if name in PRETRAINED:
        return ShapeClassifier.pretrained(name)
    shipped = ", ".join(list_pretrained()) or "none"
    if "/" in name or "\\" in name:  # written as a path: a folder was meant
        raise FileNotFoundError(f"classifier model folder not found: {path} (nor a shipped "
                                f"classifier; shipped: {shipped})")
    raise FileNotFoundError(f"no classifier folder {name!r} and no shipped classifier of that "
                            f"name (shipped: {shipped})")
