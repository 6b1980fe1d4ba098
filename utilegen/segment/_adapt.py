"""Few-shot adaptation: a segmenter for a user's own particles from a few annotated pairs.

`adapt` (and `StarDist.fine_tune`) is the recipe of the paper made into one call: start
from the shipped model, add synthetic pairs made from the user's own pairs with their
particle size, density and touching matched, train at a scale chosen from the annotated
particle sizes for a fixed wall-clock budget, choose the weights and the thresholds on
held-out real data, and record the provenance and the held-out figures (F1 and the error
of the median particle size) in the model.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np

from ..datasets import get_pair
from ._data import SYNTHETIC_REUSE, as_image_and_labels

#: Particle diameter (px) the network sees after `choose_scale`'s resizing. StarDist works
#: best for objects of about 10-80 px with grid 2; the shipped model was trained on EMPS
#: particles of median ~110 px resized by 0.5 (55 px), zoom-augmented by 1.6.
TARGET_DIAMETER = 40.0
#: Held-out particles below which an adaptation's held-out figures are called rough (one
#: image's held-out quarter often holds 2-5).
FEW_HELDOUT = 20
#: Annotated images whose median particle sizes differ more than this factor are taken to
#: span several magnifications (`several_magnifications`).
MAGNIFICATION_SPREAD = 2.0
#: Whole (not border-cut) annotated particles below which `adapt` widens the synthetic
#: scale range at one magnification: so few particles teach one size only, while many
#: already show the material's own spread (`_synthetic_scale`; RESULTS.md, "series").
FEW_PARTICLES = 30
#: Pairs from which `holdout` ("auto") holds out whole images; below, the last quarter of
#: every image. With 5 pairs one whole image chose the thresholds, and a low one chosen
#: there lost half the precision elsewhere; a quarter of each of the 5 scored F1@0.5
#: 0.79 / 0.80 against 0.56 / 0.64 on the selection images (RESULTS.md, "Validation split").
WHOLE_IMAGES_FROM = 10
#: Annotated particles under this fraction of the mean particle area of their image are
#: taken to be pieces, not particles, and are not pasted into synthetic pairs: the visible
#: sliver of a particle under an inset, a label or another particle (2 of the 15 particles
#: of the one-image series source 15a3ba1c51, at 8 % of the mean area). Pasted whole
#: anywhere, they teach the network to report fragments. 0.15 of the mean area is 0.39 of
#: a monodisperse particle's diameter; on a log-normal size distribution of geometric
#: spread 1.5 it drops about 3 % of the real particles (the paper's filter, 0.6, 40 %).
MIN_PIECE = 0.15
#: Synthetic pairs per real pair (the paper's Table 3/5 setting). Since pairs are composed
#: on the fly, this sets the share of training patches that are synthetic (5 -> 5/6).
SYNTHETIC_PER_REAL = 5
#: `synthetic_per_real="auto"` for a dense material: more than `DENSE_TOUCHING` of the
#: annotated particles touch another and at least `FEW_PARTICLES` are whole. Synthetic
#: pairs do not look like a dense layer, and its real images already hold many particles in
#: their own arrangement (`synthetic_share`; RESULTS.md, "One lab's own series").
DENSE_SYNTHETIC_PER_REAL = 1
DENSE_TOUCHING = 0.5
#: Where the held-out particles cannot choose the probability threshold (several score the
#: best: a flat top, as with one image's 2-5 held-out particles), the one nearest this is
#: taken, not the middle of the flat top. Chosen on the selection images: the three one-image
#: models that transfer there scored their best matched F1@0.5 at 0.3 (grid 0.15-0.5);
#: the middle chose 0.55 for a 2-particle quarter (0.80 against 0.89 at 0.3), and the
#: base's own threshold (0.56) lost 0.07-0.11 (RESULTS.md, "Where held-out particles
#: cannot choose the threshold").
FLAT_TOP_THRESHOLD = 0.3
#: Length of the on-the-fly synthetic dataset: item i is composed from seed (seed, i), so
#: this many distinct synthetic pairs can be drawn.
ON_THE_FLY_LENGTH = 2**31 - 1


def equivalent_diameters(labels: np.ndarray, *, inner_only: bool = True) -> np.ndarray:
    """Equivalent circular diameters (px) of the instances of a label image.

    With `inner_only`, instances touching the image border (cut, so too small) are left
    out unless that leaves none.
    """
    labels = np.asarray(labels)
    counts = np.bincount(labels.ravel())
    ids = np.flatnonzero(counts)
    ids = ids[ids > 0]
    if inner_only and len(ids):
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        inner = np.setdiff1d(ids, border)
        if len(inner):
            ids = inner
    return np.sqrt(4 * counts[ids] / np.pi)


def annotation_stats(pairs) -> dict:
    """What the annotations say about the particles: sizes, density and touching.

    Returns a dict with ``n_images``, ``n_particles``, ``n_whole`` (the particles the
    sizes are taken from: those not cut by the border, or all of an image's when every
    one of them is cut), ``diameter_median`` / ``_p10`` / ``_p90`` (px), ``size_spread``
    (largest over smallest per-image median diameter: the range of magnifications),
    ``particles_per_megapixel`` and ``touching_fraction`` (particles that touch another).
    """
    from scipy import ndimage as ndi

    diams, n_particles, pixels, touching = [], 0, 0, 0
    for image, labels in pairs:
        diams.append(equivalent_diameters(labels))
        if not len(diams[-1]):
            diams.pop()
            continue
        ids = np.unique(labels)
        ids = ids[ids > 0]
        n_particles += len(ids)
        pixels += labels.size
        if len(ids):
            # a particle touches another where a 3x3 neighbourhood holds another label
            high = ndi.maximum_filter(labels, size=3)
            low = ndi.minimum_filter(np.where(labels > 0, labels, labels.max() + 1), size=3)
            contact = (labels > 0) & ((high != labels) | ((low != labels) & (low <= labels.max())))
            touching += len(np.unique(labels[contact]))
    d = np.concatenate(diams) if diams else np.zeros(0)
    if not len(d):
        raise ValueError("the annotations hold no particles: every mask is empty")
    medians = [float(np.median(x)) for x in diams]
    return {"n_images": len(pairs), "n_particles": int(n_particles), "n_whole": len(d),
            "size_spread": float(max(medians) / min(medians)),
            "diameter_median": float(np.median(d)), "diameter_p10": float(np.percentile(d, 10)),
            "diameter_p90": float(np.percentile(d, 90)),
            "particles_per_megapixel": float(n_particles / pixels * 1e6),
            "touching_fraction": float(touching / max(n_particles, 1))}


def several_magnifications(stats: dict) -> bool:
    """Whether annotated images span magnifications: their per-image median particle sizes
    (`annotation_stats`' ``size_spread``) differ more than `MAGNIFICATION_SPREAD`-fold.

    The one test behind `adapt`'s choices that depend on it: the synthetic scale range
    and the way the adapted model chooses its scale when it predicts.
    """
    return stats["size_spread"] > MAGNIFICATION_SPREAD


def choose_scale(median_diameter: float, target: float = TARGET_DIAMETER) -> float:
    """The resize factor that brings particles of `median_diameter` px to `target` px.

    Clipped to [0.1, 2] and rounded to two significant digits (`StarDist`'s rule for
    ``scale="auto"``, with the training range).
    """
    from ._model import choose_scale as scale_for

    if not (np.isfinite(median_diameter) and median_diameter > 0):
        raise ValueError(f"median_diameter must be a positive number, got {median_diameter!r}")
    return scale_for(median_diameter, target=target, lo=0.1, hi=2.0)


def _materialize(pairs, what: str) -> list[tuple[np.ndarray, np.ndarray]]:
    if pairs is None:
        return []
    n = len(pairs)
    if n == 0:
        raise ValueError(f"{what}: no image/mask pairs given")
    return [as_image_and_labels(*get_pair(pairs, i), name=f"{what} pair {i}") for i in range(n)]


def _relabel(labels: np.ndarray) -> np.ndarray:
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(np.array(labels))[0]


SPLITS = ("auto", "images", "spatial")


def holdout(pairs, *, seed=0, fraction: float = 0.2, split: str = "auto"):
    """Split real pairs into training and validation pairs; returns ``(train, val, how)``.

    ``split="images"``: ``max(1, round(fraction * n))`` whole images are held out.
    ``"spatial"``: every image is cut across its longer side and its last quarter held
    out, so that even one annotated image has unseen validation data, and the validation
    data come from every image. ``"auto"``: whole images from `WHOLE_IMAGES_FROM` (10)
    pairs on, where 2 or more whole images validate; spatial below.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    n = len(pairs)
    if split == "images" and n < 2:
        raise ValueError("split='images' needs 2 or more pairs (one to train, one to validate)")
    if split == "images" or (split == "auto" and n >= WHOLE_IMAGES_FROM):
        perm = np.random.default_rng(seed).permutation(n)
        n_val = max(1, round(fraction * n))
        val_idx, train_idx = sorted(perm[:n_val].tolist()), sorted(perm[n_val:].tolist())
        return ([pairs[i] for i in train_idx], [pairs[i] for i in val_idx],
                {"kind": "images", "train": train_idx, "val": val_idx})
    train, val = [], []
    for image, labels in pairs:
        axis = 0 if image.shape[0] >= image.shape[1] else 1
        cut = round(image.shape[axis] * 0.75)
        head = (slice(0, cut), slice(None)) if axis == 0 else (slice(None), slice(0, cut))
        tail = (slice(cut, None), slice(None)) if axis == 0 else (slice(None), slice(cut, None))
        train.append((image[head], _relabel(labels[head])))
        val.append((image[tail], _relabel(labels[tail])))
    return train, val, {"kind": "spatial", "held_out": "last quarter of each image's longer side"}


def synthetic_like(pairs, n: int, *, stats: dict | None = None, seed: int = 0,
                   scale: tuple[float, float] = (0.8, 1.25)):
    """A `SyntheticDataset` of `n` pairs made from `pairs`, matched to their annotations.

    Particles and inpainted backgrounds come from the same source image (contrast and
    magnification stay consistent); the canvas has the size of the real images (at most
    1024 px a side); the number of particles per image follows the density of its source
    image (x 0.7 to 1.3), so images at different magnifications each keep their own
    crowding; particle scale is drawn from `scale` (default 0.8-1.25, near the annotated
    sizes; `adapt` widens it at one magnification); when more than a fifth of the real
    particles touch each other, particles are packed against each other
    (`Compositor(packed=True)`) and overlap up to 30 % of their area, as in a dense layer;
    otherwise they are kept apart. Particles cut by the image border and pieces far
    smaller than their image's mean particle (`MIN_PIECE`) are not pasted. Returns
    ``(dataset, settings)``.
    """
    from ..synth import Augmenter, Compositor, SyntheticDataset
    from ..synth._dataset import _NoParticles

    stats = stats or annotation_stats(pairs)
    shapes = np.array([im.shape for im, _ in pairs])
    h, w = (int(min(1024, np.median(shapes[:, k]))) for k in (0, 1))
    scale = tuple(float(v) for v in scale)
    density = [float(np.count_nonzero(np.unique(y)) / y.size * 1e6) for _, y in pairs]
    factor = (0.7, 1.3)
    hi = max(1, int(np.ceil(factor[1] * max(density) * h * w / 1e6)))
    touching = stats["touching_fraction"] > 0.2
    compositor = Compositor(particles_per_image=(1, hi), overlap=touching, max_overlap=0.3,
                            scale=scale, image_size=(h, w), same_source=True, gap=1,
                            source_density=density, density_factor=factor, packed=touching)
    # milder than the paper's salt-and-pepper 0.1: the real images are not that noisy
    augmenter = Augmenter(salt_pepper_max=0.02, blur_max=0.5, brightness=0.05, contrast=0.1)
    # border particles and pieces (`MIN_PIECE`) are kept only when no other particle is left
    try:
        ds = SyntheticDataset.from_pairs(pairs, min_size=MIN_PIECE, keep_all_if_empty=True,
                                         max_extent=min(h, w) / scale[1] - 4,
                                         compositor=compositor, augmenter=augmenter, length=n,
                                         seed=seed)
    except _NoParticles:
        raise ValueError(
            "no annotated particle fits a synthetic canvas of the images' size") from None
    return ds, {"n": n, "seed": seed, "min_piece": MIN_PIECE,
                "compositor": compositor.to_dict(), "augmenter": augmenter.to_dict(),
                "particles": len(ds.particles)}


def _resolve_init(init):
    """The model to start from: "emps" (or another shipped name), "scratch", a folder, a model."""
    from ._model import PRETRAINED, StarDist

    if isinstance(init, StarDist):
        model = copy.deepcopy(init)
        model.predict_tta = False  # thresholds and held-out figures are without it
        return model, "model"
    if init is None or init == "scratch":
        return None, "scratch"
    if isinstance(init, (str, Path)):
        from . import load

        return load(init), str(init) if str(init) in PRETRAINED else str(Path(init).resolve())
    raise ValueError(f"init must be 'emps', 'scratch', a model folder or a StarDist, got {init!r}")


def size_error(truths, preds) -> dict:
    """Median particle size (equivalent diameter, px) of predictions against the truth."""
    t = np.concatenate([equivalent_diameters(y, inner_only=False) for y in truths] or [[]])
    p = np.concatenate([equivalent_diameters(y, inner_only=False) for y in preds] or [[]])
    if not len(t):
        return {"d50_true": None, "d50_pred": None, "d50_relative_error": None}
    d50_true = float(np.median(t))
    d50_pred = float(np.median(p)) if len(p) else None
    err = None if d50_pred is None else (d50_pred - d50_true) / d50_true
    return {"d50_true": round(d50_true, 3),
            "d50_pred": None if d50_pred is None else round(d50_pred, 3),
            "d50_relative_error": None if err is None else round(err, 4)}


def validation_figures(model, val) -> dict:
    """F1 at IoU 0.5 / 0.7, precision, recall and the D50 error of `model` on `val` pairs."""
    from ._evaluate import evaluate

    preds = [model.predict(image) for image, _ in val]
    df = evaluate(preds, val, iou=(0.5, 0.7))
    o = df[df.image == "all"].set_index("iou")
    return {"f1_50": round(float(o.loc[0.5, "f1"]), 4), "f1_70": round(float(o.loc[0.7, "f1"]), 4),
            "precision_50": round(float(o.loc[0.5, "precision"]), 4),
            "recall_50": round(float(o.loc[0.5, "recall"]), 4),
            "n_true": int(o.loc[0.5, "n_true"]), "n_pred": int(o.loc[0.5, "n_pred"]),
            **size_error([y for _, y in val], [p.labels for p in preds])}


def _synthetic_scale(pairs, stats: dict, *, several: bool) -> tuple[float, float]:
    """`adapt`'s ``synthetic_scale="auto"``: 0.5 to 2 at one magnification when the
    annotations hold fewer than `FEW_PARTICLES` whole particles (at most what lets the
    largest particles of `pairs` fit the synthetic canvas); 0.8-1.25 otherwise, and across
    `several` magnifications."""
    if several or stats["n_whole"] >= FEW_PARTICLES:
        return (0.8, 1.25)
    side = min(1024.0, float(np.median([min(im.shape[:2]) for im, _ in pairs])))
    return (0.5, float(np.clip((side - 4) / (1.5 * stats["diameter_p90"]), 1.25, 2.0)))


def synthetic_share(stats: dict) -> tuple[float, str]:
    """`adapt`'s ``synthetic_per_real="auto"`` for annotations with `stats`
    (`annotation_stats`): `SYNTHETIC_PER_REAL` (the paper's 5), or
    `DENSE_SYNTHETIC_PER_REAL` for a dense material with many whole particles. Returns
    ``(synthetic_per_real, reason)``."""
    dense = stats["touching_fraction"] > DENSE_TOUCHING and stats["n_whole"] >= FEW_PARTICLES
    if dense:
        return float(DENSE_SYNTHETIC_PER_REAL), (
            f"dense: {stats['touching_fraction']:.0%} of the particles touch, "
            f"{stats['n_whole']} whole")
    return float(SYNTHETIC_PER_REAL), "the paper's ratio"


def _reserve_seconds(model, val_pairs, scale, *, with_base: bool, cap: float) -> float:
    """Seconds to keep after training for the threshold search and the held-out figures.

    One network pass over the largest held-out image (after a warm-up pass) is timed here,
    on this machine under its present load, and scaled to what is still to come: every
    held-out pixel at every scale that `scale` tries (the sweep's twice-the-scale pass alone
    costs 4x), twice (the threshold search, then the figures), for the base model too when
    there is one, with half as much again for NMS; and 12 s for the step and validation
    that end training and for writing the model (5-image cells overran 10 minutes by 1-7 s
    with 5). At most `cap`.
    """
    image = max((im for im, _ in val_pairs), key=lambda im: im.size)
    model.predict_candidates(image, prob_thresh=0.5)  # warm-up: oneDNN picks its kernels
    t = time.monotonic()
    model.predict_candidates(image, prob_thresh=0.5)
    per_pixel = (time.monotonic() - t) / (image.size * model.config.scale**2)
    pixels = sum(im.size for im, _ in val_pairs) * sum(s**2 for s in model._scales(scale))
    return min(cap, 12 + 1.5 * per_pixel * pixels * 2 * (2 if with_base else 1))


def adapt(pairs, *, init="emps", val=None, minutes: float = 10.0,
          synthetic_per_real="auto", scale="auto", seed: int = 0,
          steps_per_epoch: int = 25, batch_size: int | None = None, learning_rate=None,
          device=None, workers: int = 0, progress: bool = True, config_changes=None,
          max_steps: int | None = None, started: float | None = None,
          synthetic_scale="auto", split: str = "auto"):
    """Adapt a segmenter to your particles from a few annotated pairs; returns a new model.

    Parameters
    ----------
    pairs : dataset of ``(image, mask)``
        Your annotated micrographs (`PairedFolder`, a list of tuples, ...); one is enough.
    init : "emps", "scratch", path or StarDist
        Start from the shipped model (default), from random weights, from a saved model
        folder, or from a model object (left unchanged).
    val : dataset of pairs, optional
        Validation pairs. Default: held out from `pairs` (`holdout`: whole images when
        there are 10 or more, else the last quarter of each image). They choose the best
        weights and the thresholds, and give the reported figures.
    split : "auto", "images" or "spatial"
        How `holdout` holds validation data out of `pairs` when `val` is not given.
    minutes : float
        Wall-clock budget for the whole call (training, threshold search and validation).
    synthetic_per_real : "auto" or float
        Synthetic pairs per real training pair, made by `synthetic_like` from the training
        pairs only (0 = real data only). They are composed on the fly while the network
        trains, a new pair for each synthetic patch, so this sets the share of synthetic
        patches (``r / (r + 1)``), not a number of stored images. "auto"
        (`synthetic_share`): 5, the paper's ratio, or 1 for a dense material (more than
        half of the annotated particles touch another, at least `FEW_PARTICLES` whole),
        where synthetic pairs look least like the real images and the real images already
        hold many particles.
    synthetic_scale : "auto" or (low, high)
        Scale range of the particles pasted into the synthetic pairs (`synthetic_like`).
        "auto": when the annotated images (all of them, held-out ones included) are at
        one magnification (per-image median sizes within 2x, `several_magnifications`)
        and the training pairs hold fewer than `FEW_PARTICLES` whole particles, 0.5 to 2
        (less when the largest particles would not fit the canvas), so that a few
        annotated particles still teach a range of sizes; otherwise 0.8-1.25: many
        particles, or several magnifications, already span the material's sizes, and a
        wide range there teaches sizes the material does not have. RESULTS.md has the
        measurements behind both.
    scale : "auto" or float
        Resize factor before the network. "auto" brings the median annotated particle to
        `TARGET_DIAMETER` px (`choose_scale`); the model then predicts in one pass at it,
        or, when the annotated images' median sizes differ more than 2-fold (several
        magnifications), with ``predict(scale="sweep")`` (three passes, at half, once and
        twice that scale; the surest wins). Not ``"auto"``: its coarse pass at half the
        scale merges the small particles that a model adapted to one size band has not
        learned to see there (on EMPS spheres, F1@0.5 0.67 or 0.25 against 0.84 for the
        sweep; benchmarks/RESULTS.md).
    seed : int
        Seeds the split, the synthetic pairs and training.
    steps_per_epoch, batch_size, learning_rate
        Training schedule (an epoch ends with a validation loss; the best one is kept).
    device, workers
        As in `StarDist.fit` (a CUDA GPU and patch worker processes).
    config_changes : dict, optional
        Other `StarDistConfig` fields for a "scratch" model (e.g. ``{"n_rays": 64}``).
    max_steps : int, optional
        Also stop after about this many training steps (whole epochs of
        `steps_per_epoch`), whichever of the two limits comes first.
    started : float, optional
        The `time.monotonic()` from which `minutes` counts (default: the call). The command
        line passes its own start, so that start-up and reading the pairs are in the budget.

    Returns
    -------
    StarDist
        A new model: thresholds chosen on the validation pairs (where several score the
        best, the probability threshold nearest `FLAT_TOP_THRESHOLD`), ``predict_scale``
        set, and
        ``info["adaptation"]`` holding the provenance and the validation figures
        (``f1_50``, ``f1_70``, ``d50_relative_error``, ...). When the base model, with
        thresholds chosen on the same validation pairs, scores a higher F1 there than the
        trained weights, the base is returned instead (``info["adaptation"]["kept"]`` is
        ``"base"``; ``base_validation`` holds its figures either way).
    """
    from tqdm.auto import tqdm

    from ._config import StarDistConfig
    from ._model import StarDist

    t_start = time.monotonic() if started is None else min(float(started), time.monotonic())
    if not (isinstance(minutes, (int, float)) and np.isfinite(minutes) and minutes > 0):
        raise ValueError(f"minutes must be a positive number, got {minutes!r}")
    if not (synthetic_per_real == "auto" or (isinstance(synthetic_per_real, (int, float))
                                              and 0 <= synthetic_per_real <= 100)):
        raise ValueError(
            f"synthetic_per_real must be 'auto' or in [0, 100], got {synthetic_per_real!r}")
    try:
        lo, hi = ((1.0, 1.0) if synthetic_scale == "auto"
                  else (float(v) for v in synthetic_scale))
    except (TypeError, ValueError):
        lo = hi = float("nan")
    if not (0 < lo <= hi <= 4):
        raise ValueError("synthetic_scale must be (low, high) with 0 < low <= high <= 4, got "
                         f"{synthetic_scale!r}")
    real = _materialize(pairs, "pairs")
    val_pairs = _materialize(val, "val")
    if val_pairs:
        train, how = real, {"kind": "given", "n": len(val_pairs)}
    else:
        train, val_pairs, how = holdout(real, seed=seed, split=split)
    stats = annotation_stats(train)
    several = several_magnifications(annotation_stats(real))
    # one pass at the chosen scale, unless the annotated images span magnifications: then
    # the scale is tried per image
    predict_scale = None
    if scale == "auto":
        chosen = choose_scale(stats["diameter_median"])
        predict_scale = "sweep" if several else None
    else:
        chosen = float(scale)
        if not 0.05 <= chosen <= 4:
            raise ValueError(f"scale must be 'auto' or in [0.05, 4], got {scale!r}")
    base, base_name = _resolve_init(init)
    if base is None:
        config = StarDistConfig(scale=chosen, zoom=1.25, lr_patience=5, **(config_changes or {}))
    else:
        if config_changes:
            raise ValueError(
                "config_changes apply to init='scratch' only (a base keeps its network)")
        config = base.config.replace(scale=chosen, zoom=1.25, lr_patience=5)
    if learning_rate is not None:
        config = config.replace(learning_rate=float(learning_rate))
    if batch_size is not None:
        config = config.replace(batch_size=int(batch_size))
    model = StarDist(config, seed=seed)
    if base is not None:
        model.network.load_state_dict(base.network.state_dict())
        model.thresholds = dict(base.thresholds)
    synthetic_settings, syn, share = None, None, 0.0
    train_set = list(train)
    share_from = "user"
    if synthetic_per_real == "auto":
        synthetic_per_real, share_from = synthetic_share(stats)
    n_syn = round(synthetic_per_real * len(train))
    if n_syn:
        # composed on the fly while the network trains, a new pair for every synthetic
        # patch, with the share of patches that n_syn stored pairs would have had
        if synthetic_scale == "auto":
            synthetic_scale = _synthetic_scale(train, stats, several=several)
        syn, synthetic_settings = synthetic_like(train, ON_THE_FLY_LENGTH, stats=stats,
                                                 seed=seed + 1, scale=synthetic_scale)
        share = n_syn / (n_syn + len(train_set))
        synthetic_settings = {**synthetic_settings, "n": None, "equivalent_pairs": n_syn,
                              "on_the_fly": True, "patches_per_pair": SYNTHETIC_REUSE,
                              "share_of_patches": round(share, 4),
                              "synthetic_per_real": synthetic_per_real,
                              "synthetic_per_real_from": share_from}
    if progress:
        c = synthetic_settings["compositor"] if synthetic_settings else None
        print(f"{len(train)} training and {len(val_pairs)} validation pairs; "
              f"{stats['n_whole']} whole particles of median {stats['diameter_median']:.0f} px "
              f"-> network scale {chosen:g}; synthetic: "
              + ("none" if c is None else
                 f"{synthetic_per_real:g} per real pair ({share_from}), particle scale "
                 f"{c['scale'][0]:g}-{c['scale'][1]:g}"
                 + (", packed" if c["packed"] else "")))
    budget = minutes * 60
    reserve = _reserve_seconds(model, val_pairs, predict_scale or chosen,
                               with_base=base is not None, cap=0.4 * budget)
    train_seconds = max(5.0, budget - reserve - (time.monotonic() - t_start))
    bar = tqdm(total=round(train_seconds), desc="adapting", unit="s", disable=not progress,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} s [{elapsed}<{remaining}{postfix}]")

    total_steps = [0]

    def on_epoch(record, _model, _best):
        total_steps[0] += record["steps"]
        bar.update(max(0, min(round(record["seconds"]), bar.total) - bar.n))
        bar.set_postfix(val_loss=f"{record.get('val_loss', float('nan')):.3f}",
                        steps=total_steps[0])

    epochs = 1_000_000 if max_steps is None else max(1, -(-int(max_steps) // steps_per_epoch))
    history = model.fit(train_set, val_pairs, epochs=epochs, steps_per_epoch=steps_per_epoch,
                        time_limit=train_seconds, seed=seed, progress=False,
                        n_val_patches=min(32, max(8, 4 * len(val_pairs))), callback=on_epoch,
                        device=device, workers=workers, synthetic=syn, synthetic_share=share)
    bar.close()
    model.history = history
    t_train = time.monotonic() - t_start
    try:
        model.optimize_thresholds(val_pairs, scale=predict_scale or chosen,
                                  prior=FLAT_TOP_THRESHOLD)
    except ValueError as exc:  # no foreground at all: report it, keep the base thresholds
        import warnings

        model.predict_scale = predict_scale or chosen
        warnings.warn(f"thresholds not tuned: {exc}; the model is not usable yet (train "
                      "longer or check the annotations)", stacklevel=2)
    figures = validation_figures(model, val_pairs)
    # Adaptation must not make things worse: the base, with thresholds chosen on the same
    # held-out data for the same scale, is kept when it scores higher there.
    base_figures, kept = None, "adapted"
    if base is not None:
        reference = copy.deepcopy(base)
        try:
            reference.optimize_thresholds(val_pairs, scale=predict_scale or chosen,
                                          prior=FLAT_TOP_THRESHOLD)
            base_figures = validation_figures(reference, val_pairs)
        except ValueError:  # the base finds nothing there
            base_figures = None
        if base_figures is not None and base_figures["f1_50"] > figures["f1_50"]:
            if progress:
                print(f"the base model scores higher on the held-out data (F1@0.5 "
                      f"{base_figures['f1_50']:.3f} against {figures['f1_50']:.3f} adapted): "
                      "keeping the base, with thresholds for your images")
            model, figures, kept = reference, base_figures, "base"
    if progress:
        err = figures["d50_relative_error"]
        print(f"validation: F1@0.5 {figures['f1_50']:.3f}, F1@0.7 {figures['f1_70']:.3f}, "
              f"{figures['n_pred']} found of {figures['n_true']} annotated, D50 error "
              + ("n/a" if err is None else f"{err:+.1%}"))
        if figures["n_true"] < FEW_HELDOUT:
            print(f"only {figures['n_true']} held-out particles: these figures, and the "
                  "thresholds chosen on them, are rough; annotate more images for a "
                  "trustworthy estimate")
        if how["kind"] == "spatial":
            # measured: 0.07-0.10 below the held-out F1 on the EMPS benchmark's other images
            print("held out: a quarter of each of your images, next to what trained; "
                  "expect lower figures on other samples")
    from .. import __version__

    model.info = {
        "kind": "stardist", "utilegen_version": __version__,
        "adaptation": {
            "base": base_name, "pairs": len(real), "split": how,
            "train_pairs": len(train), "val_pairs": len(val_pairs),
            "synthetic": synthetic_settings, "annotations": stats,
            "scale": {"chosen": chosen, "target_diameter_px": TARGET_DIAMETER,
                      "from": "annotated median diameter" if scale == "auto" else "user",
                      "predict": model.predict_scale},
            "minutes_budget": minutes, "steps": int(sum(r["steps"] for r in history)),
            "train_minutes": round(t_train / 60, 3),
            "reserve_minutes": round(reserve / 60, 3),
            "total_minutes": round((time.monotonic() - t_start) / 60, 3),
            "thresholds": dict(model.thresholds), "validation": figures,
            "kept": kept, "base_validation": base_figures,
        },
        # what `analyze` compares new images with (in original-image pixels)
        "trained_diameter_px": [stats["diameter_p10"], stats["diameter_p90"]],
    }
    return model
