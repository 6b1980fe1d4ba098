"""`ParticlePool`: the annotated particles cut out of image/mask pairs (crop, alpha,
source), with the filters the generator uses (border, small, too large)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..datasets import get_pair
from ..io import atomic_path, to_unit_float
from ..masks import InstanceMask


def iter_pairs(pairs):
    """(index, image, InstanceMask) for every pair of a dataset or a sequence of pairs."""
    n = len(pairs)
    if n == 0:
        raise ValueError("no image/mask pairs given")
    for i in range(n):
        image, mask = get_pair(pairs, i)
        if not isinstance(mask, InstanceMask):
            mask = InstanceMask(mask)
        image = np.asarray(image)
        if image.ndim != 2:
            raise ValueError(f"pair {i}: image must be 2-D grayscale, got shape {image.shape}")
        if image.shape != mask.shape:
            raise ValueError(f"pair {i}: image shape {image.shape} != mask shape {mask.shape}")
        yield i, image, mask


@dataclass(frozen=True)
class Particle:
    """One particle cut out of a micrograph.

    Attributes
    ----------
    image : (h, w) float32 in [0, 1]
        The bounding-box crop of the source image.
    alpha : (h, w) bool
        The particle's own pixels inside the crop.
    source : int
        Index of the source pair.
    area : int
        Pixel area in the source.
    touches_border : bool
        The particle was cut by its source image's border.
    """

    image: np.ndarray
    alpha: np.ndarray
    source: int
    area: int
    touches_border: bool


class ParticlePool:
    """An immutable collection of particles (crop + alpha mask) for the compositor.

    Build it with `from_pairs`; filter with `without_border` and `without_small`, which
    return new pools.
    """

    def __init__(self, particles, sources: int | None = None):
        self._particles: tuple[Particle, ...] = tuple(particles)
        self.sources = sources if sources is not None else (
            1 + max((p.source for p in self._particles), default=-1))

    @classmethod
    def from_pairs(cls, pairs) -> ParticlePool:
        """Extract every instance of every ``(image, mask)`` pair as a particle.

        `pairs` is any utilegen dataset (`PairedFolder`, EMPS) or a sequence of
        ``(image, InstanceMask | label array)`` tuples. Images are converted to float32 in
        [0, 1] (integers scaled by their dtype's maximum).
        """
        particles = []
        n_sources = 0
        for index, image, mask in iter_pairs(pairs):
            n_sources += 1
            unit = to_unit_float(image)
            border = set(mask.border_ids().tolist())
            for inst in mask:
                sl = inst.slices
                particles.append(Particle(
                    image=np.ascontiguousarray(unit[sl]), alpha=inst.mask.copy(),
                    source=index, area=inst.area, touches_border=inst.label in border))
        return cls(particles, sources=n_sources)

    def __len__(self) -> int:
        return len(self._particles)

    def __getitem__(self, index: int) -> Particle:
        return self._particles[index]

    def __iter__(self):
        return iter(self._particles)

    def __repr__(self) -> str:
        return f"ParticlePool({len(self)} particles from {self.sources} images)"

    @property
    def areas(self) -> np.ndarray:
        return np.array([p.area for p in self._particles], dtype=np.int64)

    def without_border(self) -> ParticlePool:
        """Drop particles cut by their source image's border."""
        return ParticlePool([p for p in self._particles if not p.touches_border], self.sources)

    def without_small(self, fraction: float = 0.6, *, per_source: bool = True) -> ParticlePool:
        """Drop particles smaller than `fraction` x the mean particle area.

        The mean is taken per source image by default (images in a pool can have very
        different magnifications); ``per_source=False`` uses the mean of the whole pool.
        0.6 is the UTILE-Gen paper's value.
        """
        if not (np.isfinite(fraction) and fraction >= 0):
            raise ValueError(f"fraction must be a non-negative number, got {fraction!r}")
        if not self._particles:
            return self
        areas = self.areas.astype(float)
        if per_source:
            sources = np.array([p.source for p in self._particles])
            sums = np.bincount(sources, weights=areas)
            counts = np.bincount(sources)
            mean = (sums / np.maximum(counts, 1))[sources]
        else:
            mean = np.full(len(areas), areas.mean())
        keep = areas >= fraction * mean
        return ParticlePool([p for p, k in zip(self._particles, keep) if k], self.sources)

    def extents(self) -> np.ndarray:
        """Largest box side of each particle over all rotations (its crop's diagonal), px."""
        return np.array([np.hypot(*p.alpha.shape) for p in self._particles], dtype=float)

    def without_larger_than(self, size: float) -> ParticlePool:
        """Drop particles whose crop diagonal exceeds `size` pixels (they could not fit a
        canvas of that size at every rotation)."""
        return ParticlePool([p for p, e in zip(self._particles, self.extents()) if e <= size],
                            self.sources)

    def save(self, path, *, overwrite: bool = False) -> Path:
        """Save to a compressed ``.npz`` file (no pickle)."""
        path = Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"{path}: a particle pool is saved as .npz")
        shapes = np.array([p.image.shape for p in self._particles], dtype=np.int64).reshape(-1, 2)
        images = np.concatenate([p.image.ravel() for p in self._particles]) if self._particles \
            else np.zeros(0, np.float32)
        alphas = np.concatenate([p.alpha.ravel() for p in self._particles]) if self._particles \
            else np.zeros(0, bool)
        with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(
                f, format_version=np.array(1), shapes=shapes, images=images, alphas=alphas,
                sources=np.array([p.source for p in self._particles], dtype=np.int64),
                areas=self.areas,
                touches_border=np.array([p.touches_border for p in self._particles], bool),
                n_sources=np.array(self.sources))
        return path

    @classmethod
    def load(cls, path) -> ParticlePool:
        """Load a pool written by `save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no such particle pool file: {path}")
        try:
            data = np.load(path, allow_pickle=False)
            shapes, images, alphas = data["shapes"], data["images"], data["alphas"]
            sources, areas, border = data["sources"], data["areas"], data["touches_border"]
            n_sources = int(data["n_sources"])
        except Exception as exc:  # noqa: BLE001 - numpy raises many types on a bad file
            raise ValueError(
                f"{path} is not a particle pool saved by ParticlePool.save ({exc})") from None
        particles, offset = [], 0
        for (h, w), src, area, b in zip(shapes, sources, areas, border):
            n = int(h * w)
            particles.append(Particle(images[offset:offset + n].reshape(h, w),
                                      alphas[offset:offset + n].reshape(h, w),
                                      int(src), int(area), bool(b)))
            offset += n
        return cls(particles, sources=n_sources)
