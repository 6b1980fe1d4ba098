"""utilegen: synthetic training data, StarDist segmentation and morphometry for
nanoparticle electron micrographs (a rebuild of the UTILE-Gen workflow).

`import utilegen` is light (numpy, scipy); torch, timm and the web stack load only when
the parts that need them are used.
"""

__version__ = "0.1.0"

from .masks import Instance, InstanceMask

__all__ = [  # a literal list, so that tools see every name; the lazy ones are in _LAZY
    "Augmenter",
    "BackgroundPool",
    "Compositor",
    "Instance",
    "InstanceMask",
    "ParticlePool",
    "ShapeClassifier",
    "SizeDistribution",
    "StarDist",
    "StarDistConfig",
    "SyntheticDataset",
    "__version__",
    "analyze",
    "classify",
    "datasets",
    "io",
    "measure",
    "morphometry",
    "pipeline",
    "segment",
    "synth",
]

_SUBMODULES = {"io", "datasets", "synth", "segment", "classify", "morphometry", "pipeline",
               "app", "cli"}
# The main objects at the top level, imported from their subpackage on first use, so that
# `import utilegen` stays light: utilegen.StarDist, utilegen.ParticlePool, ...
_LAZY = {
    "ParticlePool": "synth", "BackgroundPool": "synth", "Compositor": "synth",
    "Augmenter": "synth", "SyntheticDataset": "synth",
    "StarDist": "segment", "StarDistConfig": "segment",
    "ShapeClassifier": "classify",
    "measure": "morphometry", "SizeDistribution": "morphometry",
    "analyze": "pipeline",
}


def __getattr__(name):
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'utilegen' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _SUBMODULES | set(_LAZY))
