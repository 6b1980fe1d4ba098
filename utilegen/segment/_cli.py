"""`utilegen segment train|predict|evaluate` (registered by `utilegen.cli` via `add_cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """examples:
  utilegen segment train --images data/images --masks data/masks --out my_model --minutes 30
  utilegen segment predict new_images/ --out labels/              (default model: emps)
  utilegen segment predict a.tif b.tif --model my_model --out labels/
  utilegen segment evaluate --model my_model --images test/images --masks test/masks --csv scores.csv
"""


def add_cli(subparsers) -> None:
    """Register ``segment train|predict|evaluate`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "segment", help="train, apply and evaluate StarDist instance segmentation",
        description="StarDist (star-convex polygons) instance segmentation in PyTorch.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="segment_command", metavar="ACTION")

    t = sub.add_parser("train", help="train a model on image/mask folders")
    t.add_argument("--images", type=Path, required=True, help="folder of training micrographs")
    t.add_argument("--masks", type=Path, required=True, help="folder of instance masks (same stems)")
    t.add_argument("--val-images", type=Path, help="validation micrographs (default: a split of the training folder)")
    t.add_argument("--val-masks", type=Path, help="validation masks")
    t.add_argument("--val-fraction", type=float, default=0.1,
                   help="fraction of the training pairs held out for validation when no --val-* is given (default 0.1)")
    t.add_argument("--out", type=Path, required=True, help="model folder to write")
    t.add_argument("--epochs", type=int, default=100, help="epochs (default 100)")
    t.add_argument("--steps-per-epoch", type=int, default=100, help="steps per epoch (default 100)")
    t.add_argument("--batch-size", type=int, default=4, help="patches per step (default 4)")
    t.add_argument("--minutes", type=float, help="stop training after this many minutes")
    t.add_argument("--n-rays", type=int, default=32, help="radial distances per pixel (default 32; 64 for thin rods)")
    t.add_argument("--patch-size", type=int, default=256, help="training patch side (default 256)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", type=Path, help="continue from a checkpoint (last.pt in <out>/checkpoints)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing model in --out")
    t.set_defaults(func=_train)

    r = sub.add_parser("predict", help="segment micrographs and write label TIFFs")
    r.add_argument("inputs", nargs="+", type=Path, help="image files or folders of images")
    r.add_argument("--model", default="emps", help="model folder or a shipped model name (default emps)")
    r.add_argument("--out", type=Path, required=True, help="folder for <stem>.tif label images")
    r.add_argument("--prob-thresh", type=float, help="override the model's probability threshold")
    r.add_argument("--nms-thresh", type=float, help="override the model's NMS threshold")
    r.add_argument("--scale", type=_scale, help=_SCALE_HELP)
    r.add_argument("--overwrite", action="store_true", help="replace existing label files")
    r.set_defaults(func=_predict)

    e = sub.add_parser("evaluate", help="precision/recall/F1/PQ of a model on annotated pairs")
    e.add_argument("--model", default="emps", help="model folder or a shipped model name (default emps)")
    e.add_argument("--images", type=Path, required=True)
    e.add_argument("--masks", type=Path, required=True)
    e.add_argument("--iou", type=float, nargs="+", default=[0.5, 0.7], help="IoU thresholds (default 0.5 0.7)")
    e.add_argument("--scale", type=_scale, help=_SCALE_HELP)
    e.add_argument("--csv", type=Path, help="write per-image and overall scores to this CSV")
    e.set_defaults(func=_evaluate)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


_SCALE_HELP = ("resize factor before the network, or 'auto' (try the model's scale x 1, 1/2, 2 "
               "and keep the surest result); default: the model's own setting")


def _scale(text: str):
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number or 'auto', got {text!r}") from None


def _pairs(images: Path, masks: Path):
    from ..datasets import PairedFolder

    return PairedFolder(Path.cwd(), images=str(images.resolve()), masks=str(masks.resolve()))


def _load(name: str):
    from ._model import PRETRAINED, StarDist

    if name in PRETRAINED and not Path(name).exists():
        return StarDist.pretrained(name)
    return StarDist.load(name)


def _train(args) -> int:
    import numpy as np

    from ._config import StarDistConfig
    from ._model import StarDist

    if (args.val_images is None) != (args.val_masks is None):
        raise ValueError("--val-images and --val-masks go together")
    if (args.out / "weights.pt").exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} already holds a model; pass --overwrite")
    pairs = _pairs(args.images, args.masks)
    if args.val_images is not None:
        train, val = pairs, _pairs(args.val_images, args.val_masks)
    else:
        if not 0 < args.val_fraction < 1:
            raise ValueError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
        if len(pairs) < 2:
            raise ValueError("need at least 2 pairs to split off validation; pass --val-images/--val-masks")
        perm = np.random.default_rng(args.seed).permutation(len(pairs))
        n_val = max(1, round(args.val_fraction * len(pairs)))
        ids = np.array(pairs.ids)
        train, val = pairs.subset(sorted(ids[perm[n_val:]])), pairs.subset(sorted(ids[perm[:n_val]]))
    config = StarDistConfig(n_rays=args.n_rays, patch_size=args.patch_size, batch_size=args.batch_size)
    model = StarDist(config, seed=args.seed)
    print(f"training on {len(train)} pairs, validating on {len(val)}")
    model.fit(train, val, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
              time_limit=None if args.minutes is None else args.minutes * 60, seed=args.seed,
              checkpoint_dir=args.out / "checkpoints", resume=args.resume)
    thresholds = model.optimize_thresholds(val)
    model.save(args.out, overwrite=args.overwrite)
    print(f"thresholds {thresholds}; model written to {args.out}")
    return 0


def _predict(args) -> int:
    from ..io import list_images, read_image, write_mask

    files = []
    for path in args.inputs:
        if path.is_dir():
            files += list_images(path)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"input not found: {path}")
    if not files:
        raise ValueError("no images found in the inputs")
    model = _load(args.model)
    if args.scale is not None:
        model._scales(args.scale)  # a bad value fails before any file is read or written
    args.out.mkdir(parents=True, exist_ok=True)
    for f in files:
        mask = model.predict(read_image(f), prob_thresh=args.prob_thresh, nms_thresh=args.nms_thresh,
                             scale=args.scale)
        write_mask(args.out / f"{f.stem}.tif", mask, overwrite=args.overwrite)
        print(f"{f.name}: {mask.count} particles")
    return 0


def _evaluate(args) -> int:
    from ._evaluate import evaluate

    model = _load(args.model)
    if args.scale is not None:
        model._scales(args.scale)  # a bad value fails before any image is read
        model.predict_scale = args.scale
    df = evaluate(model, _pairs(args.images, args.masks), iou=args.iou)
    overall = df[df.image == "all"].drop(columns="image")
    print(overall.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.csv is not None:
        from ..io import atomic_path

        with atomic_path(args.csv, overwrite=True) as tmp:
            df.to_csv(tmp, index=False)
    return 0
