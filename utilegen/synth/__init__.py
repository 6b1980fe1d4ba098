"""Synthetic image/instance-mask generation (the UTILE-Gen generator, rebuilt).

Pipeline: `ParticlePool` and `BackgroundPool` (from a few annotated pairs) feed a
`Compositor` (placement: count, overlap, scale, rotation, flips) and an `Augmenter`
(salt-and-pepper, blur, intensity, noise), which make the items of a `SyntheticDataset`.

`SyntheticDataset` is a torch Dataset, so importing it imports torch; the other classes
do not need torch.
"""

from ._augment import Augmenter
from ._backgrounds import BackgroundPool, fill_holes, inpaint_background
from ._compositor import Compositor, transform_particle
from ._export import LAYOUTS, export, read_zarr_item
from ._particles import Particle, ParticlePool

__all__ = [
    "LAYOUTS",
    "Augmenter",
    "BackgroundPool",
    "Compositor",
    "Particle",
    "ParticlePool",
    "Sample",
    "SyntheticDataset",
    "export",
    "fill_holes",
    "inpaint_background",
    "read_zarr_item",
    "transform_particle",
]


def __getattr__(name):
    if name in ("SyntheticDataset", "Sample"):
        from . import _dataset

        return getattr(_dataset, name)
    raise AttributeError(f"module 'utilegen.synth' has no attribute {name!r}")
