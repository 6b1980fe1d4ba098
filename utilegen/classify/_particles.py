"""Per-particle shape: sphere / cube / rod / other for every instance of a segmented image.

The paper classifies whole images; a mixed sample (spheres with a few rods) then gets one
label. Here each particle is labelled, from its morphometry (`ShapeRules`, no training)
or from its image crop (a `ShapeClassifier` trained on `particle_crops`), and
`shape_fractions` gives the sample's composition.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..masks import InstanceMask
from ._data import LabelledImages

__all__ = ["PARTICLE_SHAPES", "ShapeRules", "classify_crops", "particle_crops", "particle_shapes",
           "shape_fractions"]

PARTICLE_SHAPES = ("sphere", "cube", "rod", "other")


@dataclass(frozen=True)
class ShapeRules:
    """Thresholds that name a particle's shape from its morphometry (projected 2-D outline).

    In order: smaller than `min_area` px → "other" (too few pixels to tell); solidity below
    `solidity_min` → "other" (aggregates, irregular or fragmented outlines); aspect ratio
    (ellipse axes, ``aspect_ratio``) at least `rod_aspect` → "rod"; circularity
    (4πA/P²) at least `sphere_circularity` and Feret ratio (max/min caliper) below
    `cube_feret_ratio` → "sphere"; Feret ratio at least `cube_feret_ratio` with aspect ratio
    below `cube_aspect_max` → "cube" (a square's diagonal/side is √2 ≈ 1.41 while its
    moment aspect ratio is 1; a disk has 1 and 1); anything else → "other".

    Defaults are set on analytic shapes (disk, square, 4:1 rectangle) with margins for
    rounded corners and pixelation; check them on your data with
    ``particle_shapes(..., rules=ShapeRules(...))``.
    """

    min_area: float = 30.0
    solidity_min: float = 0.85
    rod_aspect: float = 1.8
    sphere_circularity: float = 0.85
    cube_feret_ratio: float = 1.2
    cube_aspect_max: float = 1.4

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v >= 0):
                raise ValueError(f"{f.name} must be a finite number >= 0, got {v!r}")
        if not 0 < self.solidity_min <= 1 or not 0 < self.sphere_circularity <= 1:
            raise ValueError("solidity_min and sphere_circularity must be in (0, 1]")
        if self.rod_aspect <= 1 or self.cube_feret_ratio <= 1:
            raise ValueError("rod_aspect and cube_feret_ratio must be > 1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ShapeRules:
        return cls(**d)

    def classify(self, table) -> np.ndarray:
        """Shape names for the rows of a `utilegen.morphometry.measure` table (pixel units)."""
        area = np.asarray(table["area"], float)
        solidity = np.asarray(table["solidity"], float)
        aspect = np.asarray(table["aspect_ratio"], float)
        circ = np.asarray(table["circularity"], float)
        feret = np.asarray(table["feret_diameter_max"], float) / np.maximum(
            np.asarray(table["feret_diameter_min"], float), 1e-9)
        out = np.full(len(area), "other", dtype=object)
        ok = (area >= self.min_area) & (solidity >= self.solidity_min)
        rod = ok & (aspect >= self.rod_aspect)
        sphere = ok & ~rod & (circ >= self.sphere_circularity) & (feret < self.cube_feret_ratio)
        cube = (ok & ~rod & ~sphere & (feret >= self.cube_feret_ratio)
                & (aspect < self.cube_aspect_max))
        out[rod], out[sphere], out[cube] = "rod", "sphere", "cube"
        return out


def _as_mask(mask) -> InstanceMask:
    if isinstance(mask, InstanceMask):
        return mask
    return InstanceMask(np.asarray(mask))


def _crop(image: np.ndarray, bbox, pad: float) -> np.ndarray:
    """Square crop around `bbox` (r0, c0, r1, c1) enlarged by `pad` of its side, clipped."""
    r0, c0, r1, c1 = bbox
    side = max(r1 - r0, c1 - c0) * (1 + 2 * pad)
    rc, cc = (r0 + r1) / 2, (c0 + c1) / 2
    half = max(side / 2, 2)
    rs, re = int(max(0, np.floor(rc - half))), int(min(image.shape[0], np.ceil(rc + half)))
    cs, ce = int(max(0, np.floor(cc - half))), int(min(image.shape[1], np.ceil(cc + half)))
    return image[rs:re, cs:ce]


def particle_shapes(mask, image=None, *, classifier=None, rules: ShapeRules | None = None,
                    exclude_border: bool = False, pad: float = 0.15):
    """The shape of every particle of a segmented image.

    Parameters
    ----------
    mask : InstanceMask or (M, N) integer ndarray
    image : (M, N) ndarray, optional
        The micrograph; needed with `classifier`.
    classifier : ShapeClassifier, optional
        Classify each particle's crop (square, `pad` of its size added each side) with this
        model (trained on `particle_crops`). Without it, the morphometry `rules` decide.
    rules : ShapeRules, optional
        Thresholds for the morphometry method (default `ShapeRules()`).
    exclude_border : bool
        Leave out particles cut by the image border.

    Returns
    -------
    pandas.DataFrame
        One row per particle: ``label``, ``area`` (px), ``shape`` and the morphometry
        columns used (``aspect_ratio``, ``circularity``, ``solidity``, ``feret_ratio``);
        with a classifier, ``p_<class>`` probabilities too.
    """
    import pandas as pd

    from ..morphometry import measure

    mask = _as_mask(mask)
    if image is not None and np.asarray(image).shape[:2] != mask.shape:
        raise ValueError(
            f"image shape {np.asarray(image).shape} does not match mask shape {mask.shape}")
    table = measure(mask, pixel_size=1.0, unit="px", exclude_border=exclude_border)
    out = pd.DataFrame({
        "label": table["label"].to_numpy(), "area": table["area"].to_numpy(),
        "aspect_ratio": table["aspect_ratio"].to_numpy(),
        "circularity": table["circularity"].to_numpy(), "solidity": table["solidity"].to_numpy(),
        "feret_ratio": (table["feret_diameter_max"]
                        / table["feret_diameter_min"].clip(lower=1e-9)).to_numpy()})
    if classifier is None:
        out["shape"] = (rules or ShapeRules()).classify(table)
        return out
    if image is None:
        raise ValueError("image is required to classify particle crops (classifier= given)")
    pred = classify_crops(classifier, image, mask, out["label"], pad=pad)
    out["shape"] = list(pred.labels) if pred is not None else []
    if pred is not None:
        for j, c in enumerate(pred.classes):
            out[f"p_{c}"] = pred.probabilities[:, j]
    return out


def classify_crops(classifier, image, mask, labels, *, pad: float = 0.15):
    """`classifier`'s `Prediction` for the crops of the instances `labels` of `mask`.

    The crops are those of `particle_crops` (square, `pad` of the particle's size added
    each side), so a classifier trained on `particle_crops` sees what it was trained on.
    An image that is not uint8 is first mapped to uint8 as a whole (0.5-99.5 percentiles
    of its finite pixels; NaN and inf to the low end): every crop then keeps the image's
    contrast, as crops of uint8 micrographs do, instead of being stretched on its own.
    Returns None when `labels` is empty.
    """
    mask = _as_mask(mask)
    image = np.asarray(image)
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image shape {image.shape} does not match mask shape {mask.shape}")
    image = _crop_source(image)
    boxes = {inst.label: inst.bbox for inst in mask}
    crops = [_crop(image, boxes[int(lab)], pad) for lab in labels]
    return classifier.predict(crops) if crops else None


def _crop_source(image) -> np.ndarray:
    """The image particle crops are cut from: 2-D uint8, kept as it is, or mapped as a
    whole from its finite 0.5-99.5 percentiles (`to_display_uint8`, NaN and inf to the
    low end), so that crops keep the image's contrast instead of each being stretched."""
    from .._image import as_gray, to_display_uint8

    image = as_gray(image, min_size=1)
    return image if image.dtype == np.uint8 else to_display_uint8(image)


def shape_fractions(shapes, *, weight: str = "count", classes=PARTICLE_SHAPES) -> dict[str, float]:
    """Fraction of particles of each shape (from `particle_shapes`' table).

    weight : {"count", "area", "probability"}
        Fraction of the number of particles, of their total projected area, or the mean
        of a classifier's ``p_<shape>`` probabilities over the particles (soft counts: a
        particle that is 60 % cube and 40 % sphere adds to both; needs those columns).
    """
    if weight not in ("count", "area", "probability"):
        raise ValueError(f"weight must be 'count', 'area' or 'probability', got {weight!r}")
    if weight == "probability":
        found = [c[2:] for c in shapes.columns if str(c).startswith("p_")]
        if not found:
            raise ValueError("weight='probability' needs a classifier's p_<shape> columns "
                             "(particle_shapes(..., classifier=...))")
        names = list(classes) + [c for c in found if c not in classes]
        return {c: float(np.mean(shapes[f"p_{c}"])) if c in found and len(shapes) else 0.0
                for c in names}
    names = list(shapes["shape"])
    w = np.ones(len(names)) if weight == "count" else np.asarray(shapes["area"], float)
    total = w.sum()
    classes = list(classes) + sorted(set(names) - set(classes))
    return {c: float(w[[n == c for n in names]].sum() / total) if total else 0.0 for c in classes}


def dominant_shape(shapes, classes=("sphere", "cube", "rod"), *, weight: str = "area") -> str:
    """The image-level class: the one of `classes` with the largest particle fraction
    (`shape_fractions` with `weight`: "area" by default; "probability" for a classifier's
    mean probabilities, which `analyze` uses with the shipped classifier).

    Particles named "other" (or any shape not in `classes`) are ignored by "count" and
    "area", so a few aggregates do not decide ("probability" averages every particle's
    probabilities of `classes`); ties go to the earlier class. With no particle named one
    of `classes`, returns "other".
    """
    if not any(name in classes for name in shapes["shape"]):
        return "other"
    fractions = shape_fractions(shapes, weight=weight)
    best = max(classes, key=lambda c: fractions.get(c, 0.0))
    return best if fractions.get(best, 0.0) > 0 else "other"


def particle_crops(pairs, labels, *, pad: float = 0.15, min_area: int = 30,
                   exclude_border: bool = True, max_per_image: int | None = None,
                   rng=None) -> LabelledImages:
    """Crops of single particles, for training a per-particle `ShapeClassifier`.

    Parameters
    ----------
    pairs : sequence of (image, InstanceMask)
        Segmented images (real or synthetic).
    labels : str or sequence of str
        The shape of the particles of each pair (one label per pair, e.g. its image class).
    pad : float
        Context added around each particle's bounding box, as a fraction of its side.
    min_area : int
        Particles smaller than this (px) are skipped.
    exclude_border : bool
        Skip particles cut by the image border.
    max_per_image : int, optional
        Keep at most this many particles per image, chosen with `rng`.
    """
    from ..datasets import get_pair

    rng = np.random.default_rng(rng)
    n = len(pairs)
    labels = [labels] * n if isinstance(labels, str) else list(labels)
    if len(labels) != n:
        raise ValueError(f"labels has {len(labels)} entries but there are {n} pairs")
    crops, crop_labels, names = [], [], []
    for i in range(n):
        image, mask = get_pair(pairs, i)
        mask = _as_mask(mask)
        border = set(mask.border_ids().tolist()) if exclude_border else set()
        insts = [inst for inst in mask if inst.area >= min_area and inst.label not in border]
        if max_per_image is not None and len(insts) > max_per_image:
            keep = rng.choice(len(insts), size=max_per_image, replace=False)
            insts = [insts[k] for k in sorted(keep)]
        source = _crop_source(image) if insts else None  # as `classify_crops` cuts them
        for inst in insts:
            crops.append(_crop(source, inst.bbox, pad))
            crop_labels.append(labels[i])
            names.append(f"{i}:{inst.label}")
    if not crops:
        raise ValueError("no particles found (all smaller than min_area or on the border?)")
    return LabelledImages(crops, crop_labels, names=names)
