"""utilegen: synthetic training data, StarDist segmentation and morphometry for
nanoparticle electron micrographs (a rebuild of the UTILE-Gen workflow).

`import utilegen` is light (numpy, scipy); torch, timm and the web stack load only when
the parts that need them are used.
"""

__version__ = "0.1.0"

from .masks import Instance, InstanceMask

__all__ = [
    "Instance",
    "InstanceMask",
    "__version__",
    "analyze",
    "classify",
    "datasets",
    "io",
    "morphometry",
    "segment",
    "synth",
]

_SUBMODULES = {"io", "datasets", "synth", "segment", "classify", "morphometry", "analyze", "app",
               "cli"}


def __getattr__(name):
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'utilegen' has no attribute {name!r}")
