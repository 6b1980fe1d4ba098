"""The `utilegen generate` and `utilegen sample` commands (synthetic data, the sample pair)."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """examples:
  utilegen generate --sample --out synthetic --n 20
  utilegen generate --images data/images --masks data/masks --out synthetic --n 500 \\
      --particles 10-30 --no-overlap --scale 0.3-2.0 --salt-pepper 0.1 --blur 0.3 --workers 2
  utilegen sample --out demo/sample
"""


def add_cli(sub) -> None:
    """Register `generate` and `sample` on the `utilegen` command's subparsers."""
    _add_generate(sub)
    _add_sample(sub)


def _range(text: str, kind=float):
    """Parse "lo-hi" (or a single value) into a (lo, hi) tuple."""
    import re

    number = r"\s*-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?\s*"
    match = re.fullmatch(f"({number})(?:-({number}))?", text)
    try:
        if match is None:
            raise ValueError
        lo = kind(match.group(1))
        hi = kind(match.group(2)) if match.group(2) is not None else lo
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number or a range like 10-30 (or -30-30), got {text!r}") from None
    return (lo, hi)


def _add_generate(sub):
    p = sub.add_parser(
        "generate", help="make a synthetic image/instance-mask dataset from annotated pairs",
        description="Extract particles and backgrounds from annotated image/mask pairs and "
                    "compose new image/instance-mask pairs (UTILE-Gen's Table 1 parameters).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("input (either --images/--masks or --sample)")
    src.add_argument("--images", type=Path, help="folder of micrographs (TIFF/PNG/JPEG)")
    src.add_argument("--masks", type=Path, help="folder of instance masks with the same file stems "
                     "(label images or RGB masks with one colour per particle)")
    src.add_argument("--sample", action="store_true",
                     help="use utilegen's built-in rendered sample pair (no data needed)")
    p.add_argument("--out", type=Path, required=True,
                   help="output folder (new or a resumable export)")
    p.add_argument("--n", type=int, default=100, help="number of images to make (default 100)")
    p.add_argument("--particles", type=lambda t: _range(t, int), default=(10, 30),
                   help="particles per image, lo-hi (default 10-30)")
    p.add_argument("--no-overlap", action="store_true",
                   help="place particles without overlap or contact (default: overlap allowed)")
    p.add_argument("--max-overlap", type=float, default=0.5,
                   help="with overlap, the largest fraction of a particle that others may cover "
                        "(default 0.5)")
    p.add_argument("--packed", action="store_true",
                   help="place each particle against those already placed, as in a dense "
                        "powder (default: anywhere it fits)")
    p.add_argument("--scale", type=_range, default=(0.3, 2.0),
                   help="particle scale range (default 0.3-2.0)")
    p.add_argument("--rotation", type=_range, default=(0.0, 360.0),
                   help="rotation range in degrees (default 0-360)")
    p.add_argument("--salt-pepper", type=float, default=0.1,
                   help="maximum fraction of salt-and-pepper pixels (default 0.1, the paper's)")
    p.add_argument("--blur", type=float, default=0.3,
                   help="maximum Gaussian blur sigma in px (default 0.3)")
    p.add_argument("--background", default="inpaint,mean",
                   help="background sources: inpaint, mean or inpaint,mean (default both)")
    p.add_argument("--keep-border", action="store_true",
                   help="keep particles cut by the image border in the pool (default: drop them)")
    p.add_argument("--min-size", type=float, default=0.6,
                   help="drop particles smaller than this fraction of the mean area (default 0.6)")
    p.add_argument("--same-source", action="store_true",
                   help="take an image's particles from its background's source image")
    p.add_argument("--size", type=int, default=1024, help="output image size in px (default 1024)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--coco", action="store_true", help="also write COCO annotations.json")
    p.add_argument("--layout", choices=("tiff", "zarr"), default="tiff",
                   help="output as TIFF files (default) or one chunked Zarr store (data.zarr)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on a Dask cluster, e.g. tcp://10.0.0.5:8786 "
                        "(needs utilegen[distributed]; "
                        "--out must be reachable by the workers)")
    p.set_defaults(func=_generate)


def _generate(args) -> int:
    from ..datasets import PairedFolder, sample_pair
    from . import Augmenter, Compositor, SyntheticDataset

    if args.n < 1:
        raise ValueError(f"--n must be at least 1, got {args.n}")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file; give a folder (new, or an export to resume)")

    if args.sample:
        pairs = [sample_pair()]
    elif args.images and args.masks:
        if args.images.parent != args.masks.parent:
            raise ValueError("--images and --masks must be folders in the same parent folder")
        pairs = PairedFolder(args.images.parent, images=args.images.name, masks=args.masks.name)
    else:
        raise ValueError("give --images and --masks, or --sample")
    compositor = Compositor(particles_per_image=args.particles, overlap=not args.no_overlap,
                            max_overlap=args.max_overlap, scale=args.scale, rotation=args.rotation,
                            image_size=args.size, same_source=args.same_source,
                            packed=args.packed)
    augmenter = Augmenter(salt_pepper_max=args.salt_pepper, blur_max=args.blur)
    ds = SyntheticDataset.from_pairs(
        pairs, keep_border=args.keep_border, min_size=args.min_size,
        background=[m.strip() for m in args.background.split(",")], compositor=compositor,
        augmenter=augmenter, length=args.n, seed=args.seed)
    print(f"{ds.particles}; {ds.backgrounds}")
    if args.scheduler:
        from ..cli import dask_client

        with dask_client(args.scheduler) as client:
            out = ds.export(args.out, client=client, coco=args.coco, layout=args.layout)
    else:
        out = ds.export(args.out, workers=args.workers, coco=args.coco, layout=args.layout)
    print(f"wrote {args.n} image/mask pairs to {out}")
    return 0


def _add_sample(sub):
    p = sub.add_parser(
        "sample", help="write utilegen's built-in annotated sample micrograph (image + mask TIFF)",
        description="Render the built-in micrograph-like sample (dark spheres on an uneven "
                    "background) and write images/sample.tif (calibrated) and masks/sample.tif.")
    p.add_argument("--out", type=Path, required=True,
                   help="output folder (images/ and masks/ inside)")
    p.add_argument("--size", type=int, default=512, help="image size in px (default 512)")
    p.add_argument("--pixel-size", type=float, default=2.0,
                   help="calibration written into the TIFF (default 2.0)")
    p.add_argument("--unit", default="nm", help="unit of --pixel-size (default nm)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_sample)


def _sample(args) -> int:
    from ..datasets import sample_pair
    from ..io import write_image, write_mask

    image, mask = sample_pair((args.size, args.size), rng=args.seed)
    image_path = write_image(args.out / "images" / "sample.tif", image, pixel_size=args.pixel_size,
                             unit=args.unit)
    mask_path = write_mask(args.out / "masks" / "sample.tif", mask)
    print(f"wrote {image_path} and {mask_path} ({mask.count} particles)")
    return 0
