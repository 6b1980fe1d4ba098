"""The `utilegen` command line.

    utilegen generate --sample --out synthetic/ --n 20
    utilegen generate --images data/images --masks data/masks --out synthetic/ --n 500
    utilegen segment train|predict|evaluate ...
    utilegen analyze micrographs/ --pixel-size 0.5 --unit nm --out report/
    utilegen serve --port 8000
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import re
import sys
import time

#: When the command started (about the process start): `segment train --minutes` counts
#: from here, so that start-up and reading the pairs are inside the budget.
STARTED = time.monotonic()

EXAMPLES = """examples:
  utilegen generate --sample --out synthetic --n 20
  utilegen generate --images data/images --masks data/masks --out synthetic --n 500 \\
      --particles 10-30 --no-overlap --scale 0.3-2.0 --salt-pepper 0.1 --blur 0.3 --workers 2
  utilegen analyze micrographs/ --pixel-size 0.5 --unit nm --out report/
  utilegen serve                      # web app on http://127.0.0.1:8000
"""


# Subcommands owned by subpackages: module path -> function registering them.
_PLUGINS = ["utilegen.synth._cli", "utilegen.segment._cli", "utilegen.classify._cli",
            "utilegen._analyze_cli"]


@contextlib.contextmanager
def dask_client(address: str):
    """A Dask client of the cluster at `address` (a subcommand's ``--scheduler``), or a
    clear error when Dask is not installed."""
    try:
        from distributed import Client
    except ImportError:
        raise ValueError("--scheduler needs Dask: pip install 'utilegen[distributed]'") from None
    with Client(address) as client:
        yield client


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="utilegen", description="Synthetic data, segmentation and morphometry for "
        "nanoparticle electron micrographs.", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__

    parser.add_argument("--version", action="version", version=f"utilegen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _PLUGINS:  # a missing module is real breakage: let it raise
        importlib.import_module(module).add_cli(sub)
    return parser


_NUMBER = r"\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
_NEGATIVE_RANGE = re.compile(rf"-{_NUMBER}--?{_NUMBER}")


def _join_negative_ranges(argv: list[str]) -> list[str]:
    """``--rotation -30-30`` -> ``--rotation=-30-30``: argparse takes a value that starts with
    '-' and is not a plain number for an option."""
    out: list[str] = []
    for arg in argv:
        if (out and out[-1].startswith("--") and "=" not in out[-1]
                and _NEGATIVE_RANGE.fullmatch(arg)):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(_join_negative_ranges(argv))
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"utilegen {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
