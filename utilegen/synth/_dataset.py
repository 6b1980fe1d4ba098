"""`SyntheticDataset`: unlimited synthetic image/instance-mask pairs as a torch
Dataset; item *i* depends only on ``(seed, i)``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ..datasets._torch import image_to_tensor, mask_to_tensor
from ..masks import InstanceMask
from ._augment import Augmenter
from ._backgrounds import BackgroundPool
from ._compositor import Compositor
from ._particles import ParticlePool

_DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "float32": np.float32}
PAPER_AUGMENTER = Augmenter()  # salt-and-pepper <= 0.1, blur sigma <= 0.3 (frozen)


class _NoParticles(ValueError):
    """`SyntheticDataset.from_pairs`' filters left no particle (callers may say it their way)."""


@dataclass(frozen=True)
class Sample:
    """One synthetic item: the image, its exact instance mask, and how it was made."""

    image: np.ndarray
    mask: InstanceMask
    params: dict


class SyntheticDataset(Dataset):
    """Unlimited synthetic image/instance-mask pairs as a `torch.utils.data.Dataset`.

    Item *i* is made from ``np.random.default_rng([seed, i])`` only, so it is the same
    whatever the DataLoader worker, the order of access or the machine.

    Parameters
    ----------
    particles : ParticlePool
    backgrounds : BackgroundPool
    compositor : Compositor
        Placement parameters (count, overlap, scale, rotation, size).
    augmenter : Augmenter or None
        Image degradations (paper defaults: salt-and-pepper <= 0.1, blur <= 0.3).
    length : int
        Number of items.
    seed : int
    dtype : {"uint8", "uint16", "float32"}
        dtype of the numpy images from `sample`/`pair` and of exported TIFFs.

    ``ds[i]`` gives ``(image float32 tensor (1, H, W) in [0, 1], labels int64 tensor (H, W))``;
    ``ds.sample(i)`` the numpy image, the `InstanceMask` and the recorded parameters.
    """

    def __init__(self, particles: ParticlePool, backgrounds: BackgroundPool, *,
                 compositor: Compositor | None = None,
                 augmenter: Augmenter | None = PAPER_AUGMENTER,
                 length: int = 100, seed: int = 0, dtype: str = "uint8"):
        if not isinstance(particles, ParticlePool):
            raise TypeError(f"particles must be a ParticlePool, got {type(particles).__name__}")
        if not isinstance(backgrounds, BackgroundPool):
            raise TypeError(
                f"backgrounds must be a BackgroundPool, got {type(backgrounds).__name__}")
        if len(particles) == 0:
            raise ValueError("the particle pool is empty "
                             "(did without_border/without_small drop everything?)")
        if len(backgrounds) == 0:
            raise ValueError("the background pool is empty")
        if int(length) != length or length < 0:
            raise ValueError(f"length must be a non-negative integer, got {length!r}")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {list(_DTYPES)}, got {dtype!r}")
        if int(seed) != seed or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        compositor = compositor if compositor is not None else Compositor()
        # A particle too large for the canvas would stop an export half-way: refuse up front.
        limit = min(compositor.image_size) / compositor.scale[1]
        too_large = int((particles.extents() + 3 > limit).sum())
        if too_large:
            raise ValueError(
                f"{too_large} of {len(particles)} particles can be larger than the "
                f"{compositor.image_size[0]}x{compositor.image_size[1]} canvas at scale up to "
                f"{compositor.scale[1]:g} "
                f"(largest crop diagonal {particles.extents().max():.0f} px); "
                f"lower `scale`, raise `image_size`, or drop them with "
                f"particles.without_larger_than({int(limit) - 3})")
        self.particles = particles
        self.backgrounds = backgrounds
        self.compositor = compositor
        self.augmenter = augmenter
        self.length = int(length)
        self.seed = int(seed)
        self.dtype = dtype

    @classmethod
    def from_pairs(cls, pairs, *, keep_border: bool = False, min_size: float = 0.6,
                   keep_all_if_empty: bool = False, max_extent: float | None = None,
                   background="inpaint", compositor: Compositor | None = None,
                   augmenter: Augmenter | None = PAPER_AUGMENTER, length: int = 100,
                   seed: int = 0, dtype: str = "uint8") -> SyntheticDataset:
        """A dataset made from annotated pairs: particle pool, background pool and dataset
        in one call, as the CLI, classify, adapt and the benchmarks build it.

        Parameters
        ----------
        pairs : dataset or sequence of (image, mask)
            The annotated micrographs; particles and backgrounds both come from them.
        keep_border : bool
            Keep particles cut by their image's border (dropped by default).
        min_size : float
            Drop particles smaller than this fraction of the mean particle area of their
            image (`ParticlePool.without_small`; 0.6 is the paper's value, 0 keeps all).
        keep_all_if_empty : bool
            When the border and size filters leave no particle, use every particle.
        max_extent : float, optional
            Then drop particles whose crop diagonal exceeds this many pixels
            (`ParticlePool.without_larger_than`).
        background : "inpaint", "mean" or a sequence of both
            `BackgroundPool.from_pairs` method(s).
        compositor, augmenter, length, seed, dtype
            As for `SyntheticDataset`.
        """
        pool = ParticlePool.from_pairs(pairs)
        particles = pool if keep_border else pool.without_border()
        particles = particles.without_small(min_size)
        if keep_all_if_empty and len(particles) == 0:
            particles = pool
        if max_extent is not None:
            particles = particles.without_larger_than(max_extent)
        if len(particles) == 0:
            raise _NoParticles(
                f"no particle of the {len(pool)} annotated is left after the filters "
                f"(keep_border={keep_border}, min_size={min_size}, max_extent={max_extent}); "
                "keep border particles, lower min_size, or allow larger particles (a larger "
                "canvas or a smaller scale)")
        backgrounds = BackgroundPool.from_pairs(pairs, method=background)
        return cls(particles, backgrounds, compositor=compositor, augmenter=augmenter,
                   length=length, seed=seed, dtype=dtype)

    def __len__(self) -> int:
        return self.length

    def _check_index(self, index: int) -> int:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of {self.length} items")
        return index % self.length if self.length else index

    def sample(self, index: int) -> Sample:
        """Item `index` as numpy image, `InstanceMask` and recorded parameters."""
        index = self._check_index(index)
        rng = np.random.default_rng([self.seed, index])
        image, labels, record = self.compositor.compose(self.particles, self.backgrounds, rng)
        if self.augmenter is not None:
            params = self.augmenter.draw(rng)
            image = self.augmenter.apply(image, params)
            record["augment"] = params
        record["index"] = index
        return Sample(_from_unit(image, self.dtype), InstanceMask(labels), record)

    def pair(self, index: int) -> tuple[np.ndarray, InstanceMask]:
        s = self.sample(index)
        return s.image, s.mask

    def __getitem__(self, index: int):
        s = self.sample(index)
        return image_to_tensor(s.image), mask_to_tensor(s.mask.labels)

    def config(self) -> dict:
        return {
            "length": self.length, "seed": self.seed, "dtype": self.dtype,
            "compositor": self.compositor.to_dict(),
            "augmenter": self.augmenter.to_dict() if self.augmenter is not None else None,
            "particles": len(self.particles), "backgrounds": len(self.backgrounds),
            "particle_sources": self.particles.sources,
        }

    def export(self, directory, *, workers: int = 1, coco: bool = False, layout: str = "tiff",
               client=None, progress: bool = True) -> Path:
        """Write every item to `directory` as TIFFs or Zarr, locally or on a Dask cluster.

        See `utilegen.synth.export` for the layout, resuming and the Dask `client`.
        """
        from ._export import export

        return export(self, directory, workers=workers, coco=coco, layout=layout, client=client,
                      progress=progress)


def _from_unit(image: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "float32":
        return image.astype(np.float32, copy=False)
    top = np.iinfo(_DTYPES[dtype]).max
    return np.rint(np.clip(image, 0, 1) * top).astype(_DTYPES[dtype])
