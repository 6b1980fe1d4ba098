"""Training data: pairs read through `get_pair`, patch sampling and augmentation (numpy)."""

from __future__ import annotations

import numpy as np

from .._image import as_gray, percentile_normalize
from ..datasets import get_pair
from ..masks import InstanceMask
from ._config import StarDistConfig
from ._targets import resize_image, resize_labels, targets


def as_image_and_labels(image, mask, *, name: str = "pair") -> tuple[np.ndarray, np.ndarray]:
    """Validate one ``(image, mask)`` item; return (2-D image, integer label array)."""
    image = as_gray(image, name=f"{name}: image")
    labels = mask.labels if isinstance(mask, InstanceMask) else InstanceMask(mask).labels
    if labels.shape != image.shape:
        raise ValueError(f"{name}: image shape {image.shape} and mask shape {labels.shape} differ")
    return image, labels


def load_pairs(dataset, config: StarDistConfig, *, what: str = "train",
               progress: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """Read every pair of `dataset` once: (normalized float32 image, label array)."""
    from tqdm.auto import tqdm

    n = len(dataset)
    if n == 0:
        raise ValueError(f"{what} dataset is empty")
    out = []
    for i in tqdm(range(n), desc=f"reading {what} pairs", disable=not progress, leave=False):
        image, labels = as_image_and_labels(*get_pair(dataset, i), name=f"{what} item {i}")
        x = percentile_normalize(image, config.normalize_low, config.normalize_high)
        out.append((resize_image(x, config.scale), resize_labels(labels, config.scale)))
    return out


def _pad_to(image: np.ndarray, labels: np.ndarray, size: int):
    ph, pw = max(0, size - image.shape[0]), max(0, size - image.shape[1])
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw)), mode="constant")
        labels = np.pad(labels, ((0, ph), (0, pw)), mode="constant")
    return image, labels


#: Patches cut from each synthetic pair composed on the fly before it is replaced. A dense
#: 1024-px pair costs ~70 ms to compose, a 256-px patch's targets ~15 ms: at one pair per
#: patch, composing took a third of a 2-core training step (RESULTS.md, "series").
SYNTHETIC_REUSE = 4


class PatchSampler:
    """Random training patches with StarDist targets.

    With `synthetic` (a dataset of pairs, e.g. a `SyntheticDataset` of any length) and
    `synthetic_share`, that share of the patches comes from synthetic pairs composed on the
    fly instead of from `pairs`. Each composed pair serves `synthetic_reuse` patches (each
    its own crop, zoom, turn and intensity) before a new one replaces it; `synthetic_reuse`
    pairs are held at a time and each patch takes one of them at random, so the patches of
    one batch mostly come from different pairs.

    With probability ``config.foreground_fraction`` a patch is placed so that it contains a
    random foreground pixel (StarDist samples patches containing foreground the same way),
    otherwise anywhere. Images smaller than the patch are zero-padded.
    """

    def __init__(self, pairs, config: StarDistConfig, *, synthetic=None,
                 synthetic_share: float = 0.0, synthetic_reuse: int = SYNTHETIC_REUSE):
        if not 0 <= synthetic_share <= 1:
            raise ValueError(f"synthetic_share must be in [0, 1], got {synthetic_share}")
        if isinstance(synthetic_reuse, bool) or not isinstance(synthetic_reuse, (int, np.integer)) \
                or synthetic_reuse < 1:
            raise ValueError(f"synthetic_reuse must be an integer >= 1, got {synthetic_reuse!r}")
        if synthetic_share > 0 and (synthetic is None or len(synthetic) == 0):
            raise ValueError("synthetic_share > 0 needs a non-empty synthetic dataset")
        self.config = config
        self.pairs = [_pad_to(im, lab, config.patch_size) for im, lab in pairs]
        self._foreground = [None] * len(self.pairs)
        # synthetic pairs made on the fly: a fresh one for each patch drawn from them, in
        # whichever process makes the batch (the DataLoader-style workers of `fit`)
        self.synthetic = synthetic if synthetic_share > 0 else None
        self.synthetic_share = float(synthetic_share)
        self.synthetic_reuse = int(synthetic_reuse)
        # [prepared pair, patches left] per held pair, in whichever process makes batches
        self._held = [[None, 0] for _ in range(self.synthetic_reuse)]

    def _fg(self, k: int) -> np.ndarray:
        if self._foreground[k] is None:
            self._foreground[k] = np.flatnonzero(self.pairs[k][1])
        return self._foreground[k]

    def _held_synthetic_pair(self, rng: np.random.Generator):
        """One of the held synthetic pairs, replaced by a new one once it has served
        `synthetic_reuse` patches."""
        slot = self._held[int(rng.integers(self.synthetic_reuse))]
        if slot[1] == 0:
            slot[0], slot[1] = self._synthetic_pair(rng), self.synthetic_reuse
        slot[1] -= 1
        return slot[0]

    def _synthetic_pair(self, rng: np.random.Generator):
        """A new synthetic pair, prepared as `load_pairs` prepares real ones."""
        c = self.config
        i = int(rng.integers(len(self.synthetic)))
        image, labels = as_image_and_labels(*get_pair(self.synthetic, i),
                                            name=f"synthetic item {i}")
        x = percentile_normalize(image, c.normalize_low, c.normalize_high)
        return _pad_to(resize_image(x, c.scale), resize_labels(labels, c.scale), c.patch_size)

    def patch(self, k: int, rng: np.random.Generator, zoom: bool = False, *, pair=None):
        """A patch of pair `k` (or of `pair`, an ``(image, labels)`` already prepared)."""
        image, labels = self.pairs[k] if pair is None else pair
        s = out = self.config.patch_size
        if zoom and self.config.zoom != 1:  # a window of s / z pixels, resized to s below
            z = float(np.exp(rng.uniform(-1, 1) * np.log(self.config.zoom)))
            s = max(8, round(out / z))
            if s > min(image.shape):
                image, labels = _pad_to(image, labels, s)
        h, w = image.shape
        fg = self._fg(k) if pair is None else np.flatnonzero(pair[1])
        width = (self.pairs[k] if pair is None else pair)[0].shape[1]
        if len(fg) and rng.random() < self.config.foreground_fraction:
            r, c = divmod(int(fg[rng.integers(len(fg))]), width)
            r0 = rng.integers(max(0, r - s + 1), min(r, h - s) + 1)
            c0 = rng.integers(max(0, c - s + 1), min(c, w - s) + 1)
        else:
            r0, c0 = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
        image, labels = image[r0:r0 + s, c0:c0 + s], labels[r0:r0 + s, c0:c0 + s]
        if s != out:
            image = resize_image(image, out / s, size=out)
            labels = resize_labels(labels, out / s, size=out)
        return image, labels

    def batch(self, rng: np.random.Generator, batch_size: int | None = None, *, augment=None):
        """``(x (B, 1, S, S), prob (B, 1, S/g, S/g), dist (B, n_rays, S/g, S/g))`` float32."""
        c = self.config
        b = batch_size or c.batch_size
        augment = c.augment if augment is None else augment
        xs, ps, ds = [], [], []
        for _ in range(b):
            if self.synthetic is not None and rng.random() < self.synthetic_share:
                image, labels = self.patch(0, rng, zoom=augment,
                                           pair=self._held_synthetic_pair(rng))
            else:
                image, labels = self.patch(int(rng.integers(len(self.pairs))), rng, zoom=augment)
            if augment:
                image, labels = augment_pair(image, labels, rng, c.intensity_jitter)
            prob, dist = targets(labels, c.n_rays, c.grid)
            xs.append(np.ascontiguousarray(image))
            ps.append(prob)
            ds.append(np.moveaxis(dist, -1, 0))
        return (np.stack(xs)[:, None].astype(np.float32), np.stack(ps)[:, None],
                np.ascontiguousarray(np.stack(ds)))


def augment_pair(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                 jitter: float = 0.2):
    """Random flip / 90° rotation (image and labels alike) and intensity scale/shift."""
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    scale = 1 + rng.uniform(-jitter, jitter)
    shift = rng.uniform(-jitter / 2, jitter / 2)
    image, labels = np.rot90(image, k), np.rot90(labels, k)
    if flip:
        image, labels = image[:, ::-1], labels[:, ::-1]
    return image * np.float32(scale) + np.float32(shift), np.ascontiguousarray(labels)


# Patch-making worker processes of `StarDist.fit(workers=...)`. They live here, not in
# `_train`, so that a spawned worker imports numpy and stardist only, not torch.
_WORKER_SAMPLER = None


def worker_init(sampler) -> None:
    global _WORKER_SAMPLER
    _WORKER_SAMPLER = sampler


def worker_batch(args):
    seed, epoch, step, batch_size = args
    return _WORKER_SAMPLER.batch(np.random.default_rng([seed, epoch, step]), batch_size)
