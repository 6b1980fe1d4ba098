"""Labelled images: the training and evaluation data of a shape classifier.

A labelled dataset is a sequence of ``(image, class name)`` items. `LabelledImages`
holds images as arrays, as paths (read when used) or as any indexable source of images
(e.g. a `SyntheticDataset`, generated when used); ``a + b`` concatenates.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..io import read_image

__all__ = ["LabelledImages", "from_emps", "from_folder", "read_labels", "synthetic_for_class"]


class LabelledImages:
    """A sequence of ``(image, label)`` items.

    Parameters
    ----------
    images : sequence
        2-D (or RGB) arrays, file paths, or an indexable object whose items are images or
        ``(image, mask)`` pairs (anything with ``pair(i)``, like `SyntheticDataset` or
        `PairedFolder`, is read through ``pair(i)[0]``).
    labels : sequence of str, or str
        One class name per image (a single string labels every image).
    names : sequence of str, optional
        An identifier per image (file stems by default for paths), for reports.

    Items are ``(image ndarray, label str)``; nothing is read until an item is used
    (``materialize()`` reads everything once into memory, for repeated epochs).
    """

    def __init__(self, images, labels, *, names: Sequence[str] | None = None):
        n = len(images)
        if isinstance(labels, str):
            labels = [labels] * n
        labels = [str(lab) for lab in labels]
        if len(labels) != n:
            raise ValueError(f"labels has {len(labels)} entries but there are {n} images")
        if names is None:
            names = [Path(im).stem if isinstance(im, (str, Path)) else f"item{i}"
                     for i, im in _enumerate_cheap(images)]
        names = [str(s) for s in names]
        if len(names) != n:
            raise ValueError(f"names has {len(names)} entries but there are {n} images")
        self._images = images
        self.labels: list[str] = labels
        self.names: list[str] = names

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> np.ndarray:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} labelled images")
        source = self._images
        item = source.pair(index)[0] if hasattr(source, "pair") else source[index]
        if isinstance(item, tuple):
            item = item[0]
        if isinstance(item, (str, Path)):
            path = Path(item)
            if not path.is_file():
                raise FileNotFoundError(f"image file not found: {path}")
            return read_image(path)
        if hasattr(item, "detach"):  # a tensor (C, H, W) or (H, W)
            item = item.detach().cpu().numpy()
            item = item[0] if item.ndim == 3 and item.shape[0] == 1 else item
        return np.asarray(item)

    def __getitem__(self, index: int) -> tuple[np.ndarray, str]:
        return self.image(index), self.labels[index]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __add__(self, other: LabelledImages) -> LabelledImages:
        if not isinstance(other, LabelledImages):
            return NotImplemented
        return LabelledImages(_Concat(self, other), self.labels + other.labels,
                              names=self.names + other.names)

    def subset(self, indices) -> LabelledImages:
        indices = [int(i) for i in indices]
        return LabelledImages(_Subset(self, indices), [self.labels[i] for i in indices],
                              names=[self.names[i] for i in indices])

    def split(self, fraction: float, *, rng=None) -> tuple[LabelledImages, LabelledImages]:
        """Stratified split: ``(rest, held_out)`` with `fraction` of each class held out.

        Each class keeps at least one image on each side when it has two or more.
        """
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
        rng = np.random.default_rng(rng)
        rest, held = [], []
        for label in sorted(set(self.labels)):
            idx = [i for i, lab in enumerate(self.labels) if lab == label]
            idx = [idx[k] for k in rng.permutation(len(idx))]
            n = min(max(1, round(fraction * len(idx))), len(idx) - 1) if len(idx) > 1 else 0
            held += idx[:n]
            rest += idx[n:]
        return self.subset(sorted(rest)), self.subset(sorted(held))

    def materialize(self) -> LabelledImages:
        """The same items with every image read (or generated) once and kept in memory."""
        return LabelledImages([self.image(i) for i in range(len(self))], self.labels,
                              names=self.names)

    def counts(self) -> dict[str, int]:
        """Number of images per label."""
        out: dict[str, int] = {}
        for lab in self.labels:
            out[lab] = out.get(lab, 0) + 1
        return out

    def __repr__(self) -> str:
        return f"LabelledImages({len(self)} images, {self.counts()})"


def _enumerate_cheap(images):
    """(index, item) without reading generated items: only lists/tuples are looked into."""
    if isinstance(images, (list, tuple)):
        return enumerate(images)
    return ((i, None) for i in range(len(images)))


class _Concat:
    def __init__(self, a: LabelledImages, b: LabelledImages):
        self.a, self.b = a, b

    def __len__(self):
        return len(self.a) + len(self.b)

    def __getitem__(self, i):
        i = i + len(self) if i < 0 else i
        return self.a.image(i) if i < len(self.a) else self.b.image(i - len(self.a))


class _Subset:
    def __init__(self, base: LabelledImages, indices: list[int]):
        self.base, self.indices = base, indices

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.base.image(self.indices[i])


def read_labels(path, *, classes: Sequence[str] | None = None) -> dict[str, str]:
    """Read a label file: CSV with the columns ``filename,shape`` (EMPS's ``shapes.csv``).

    A ``label`` or ``class`` column is accepted instead of ``shape``. Returns
    ``{file stem: label}``. With `classes`, every label must be one of them (rows of other
    classes are an error, so a typo cannot silently drop images; filter before if needed).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields = [c.strip() for c in (reader.fieldnames or [])]
        label_col = next((c for c in ("shape", "label", "class") if c in fields), None)
        if "filename" not in fields or label_col is None:
            raise ValueError(f"label file {path} must have a header with the columns "
                             f"'filename,shape' (or 'filename,label'); found {fields}")
        reader.fieldnames = fields
        labels: dict[str, str] = {}
        for line, row in enumerate(reader, start=2):
            name, label = (row.get("filename") or "").strip(), (row.get(label_col) or "").strip()
            if not name or not label:
                raise ValueError(f"label file {path}, line {line}: empty filename or {label_col}")
            stem = Path(name).stem
            if stem in labels and labels[stem] != label:
                raise ValueError(f"label file {path}, line {line}: {name} is labelled both "
                                 f"{labels[stem]!r} and {label!r}")
            if classes is not None and label not in classes:
                raise ValueError(f"label file {path}, line {line}: label {label!r} of {name} is "
                                 f"not one of the classes {list(classes)}")
            labels[stem] = label
    if not labels:
        raise ValueError(f"label file {path} has no rows")
    return labels


def from_emps(dataset, classes: Sequence[str] = ("sphere", "cube", "rod"), *,
              labels=None) -> LabelledImages:
    """The images of an EMPS dataset whose shape is in `classes`, labelled by shape.

    Parameters
    ----------
    dataset : EMPS (`utilegen.datasets.emps`)
    classes : sequence of str
        Shapes to keep (images of other shapes are left out).
    labels : path or dict, optional
        A label file (``filename,shape``) or ``{stem: shape}``; default the dataset's
        ``shapes.csv``.
    """
    if labels is None:
        labels = getattr(dataset, "shapes", None)
        if labels is None:
            raise ValueError(f"no shapes.csv in {getattr(dataset, 'root', dataset)}: pass "
                             "labels= a 'filename,shape' CSV")
    elif not isinstance(labels, dict):
        labels = read_labels(labels)
    keep = [i for i, stem in enumerate(dataset.ids) if labels.get(stem) in classes]
    if not keep:
        raise ValueError(f"no images of the classes {list(classes)} in {dataset}")
    return LabelledImages([dataset.image_paths[i] for i in keep],
                          [labels[dataset.ids[i]] for i in keep],
                          names=[dataset.ids[i] for i in keep])


def from_folder(folder, labels, *, classes: Sequence[str] | None = None) -> LabelledImages:
    """Images in `folder` labelled by a ``filename,shape`` CSV (only the listed files).

    Every file in the label file must exist in `folder` (a missing one is an error that
    names it); images in the folder without a label are ignored.
    """
    from ..io import list_images

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    table = read_labels(labels, classes=classes)
    files = {p.stem: p for p in list_images(folder)}
    missing = [s for s in table if s not in files]
    if missing:
        raise ValueError(f"label file {labels} lists images not found in {folder}: "
                         + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
    stems = list(table)
    return LabelledImages([files[s] for s in stems], [table[s] for s in stems], names=stems)


def synthetic_for_class(pairs, label: str, n: int, *, seed: int = 0, image_size: int = 512,
                        particles_per_image=(10, 30), background=("inpaint", "mean"),
                        min_size: float = 0.6, scale=(0.3, 2.0),
                        augmenter="default") -> LabelledImages:
    """`n` synthetic images of one class, made by the generator fed with that class's pairs.

    Parameters
    ----------
    pairs : sequence of (image, InstanceMask)
        Real annotated images of class `label` only (e.g. ``emps.subset(ids)``).
    label : str
        The class of every synthetic image.
    n : int
        Number of images (e.g. 5 per real image).
    seed, image_size, particles_per_image, background, min_size, scale
        Generator settings (`SyntheticDataset`, `Compositor`, `BackgroundPool`,
        ``ParticlePool.without_small``); particles cut by the border are left out and each
        image takes its particles from its background's source image (``same_source``).
        Particles that could not fit the canvas at the largest scale and any rotation
        (diagonal x ``scale[1]`` > 90 % of `image_size`) are left out too.
    augmenter : Augmenter, None or "default"
        Image degradations (paper defaults).

    Images are generated when read (item *i* depends only on `seed` and *i*).
    """
    from ..synth import Augmenter, Compositor, SyntheticDataset
    from ..synth._dataset import _NoParticles

    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    compositor = Compositor(particles_per_image=tuple(particles_per_image), image_size=image_size,
                            scale=tuple(scale), same_source=True)
    try:
        ds = SyntheticDataset.from_pairs(
            pairs, min_size=min_size, max_extent=0.9 * image_size / float(scale[1]),
            background=list(background), compositor=compositor,
            augmenter=Augmenter() if augmenter == "default" else augmenter, length=int(n),
            seed=seed)
    except _NoParticles:
        raise ValueError(f"no particle of the {label!r} pairs fits a {image_size} px image at "
                         f"scale up to {scale[1]}; raise image_size or lower scale") from None
    return LabelledImages(ds, label, names=[f"synthetic-{label}-{i}" for i in range(int(n))])
