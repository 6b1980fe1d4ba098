"""`utilegen segment train|predict|evaluate` (registered by `utilegen.cli` via `add_cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = (
    "examples:\n"
    "  utilegen segment train --images data/images --masks data/masks --out my_model     (10 min)\n"
    "  utilegen segment train --images data/images --masks data/masks --out my_model --init scratch"
    " --synthetic-per-real 0\n"
    "  utilegen segment predict new_images/ --out labels/              (default model: emps)\n"
    "  utilegen segment predict a.tif b.tif --model my_model --out labels/\n"
    "  utilegen segment evaluate --model my_model --images test/images --masks test/masks"
    " --csv scores.csv\n"
)


def add_cli(subparsers) -> None:
    """Register ``segment train|predict|evaluate`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "segment", help="train, apply and evaluate StarDist instance segmentation",
        description="StarDist (star-convex polygons) instance segmentation in PyTorch.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="segment_command", metavar="ACTION")

    t = sub.add_parser(
        "train", help="adapt a segmenter to your annotated images (or train one from scratch)",
        description="Adapt a segmenter to your particles: start from the shipped model, add "
                    "synthetic pairs made from your pairs, train at a scale chosen from the "
                    "annotated particle sizes for --minutes, and choose weights and thresholds "
                    "on held-out real data. The model folder records its provenance and its "
                    "validation F1 and D50 error.")
    t.add_argument("--images", type=Path, required=True, help="folder of annotated micrographs")
    t.add_argument("--masks", type=Path, required=True,
                   help="folder of instance masks (same stems)")
    t.add_argument("--out", type=Path, required=True, help="model folder to write")
    t.add_argument("--minutes", type=float, default=10.0,
                   help="wall-clock budget, threshold search included (default 10)")
    t.add_argument("--init", default="emps",
                   help="start from: a shipped model name (emps, default), 'scratch', "
                        "or a model folder")
    t.add_argument("--synthetic-per-real", type=_number_or_auto, default="auto",
                   help="synthetic pairs made per real training pair (0 = none). Default "
                        "'auto': 5, the paper's, or 1 for a dense material (more than half "
                        "of the particles touch, 30 or more whole)")
    t.add_argument("--synthetic-scale", nargs=2, type=float, default=None,
                   metavar=("LOW", "HIGH"),
                   help="scale range of the particles in the synthetic pairs (default: 0.5 2 "
                        "when the images are at one magnification and hold fewer than 30 "
                        "whole particles, else 0.8 1.25)")
    t.add_argument("--scale", default="auto", type=_number_or_auto,
                   help="resize factor before the network, or 'auto' (default): the median "
                        "annotated particle becomes ~40 px")
    t.add_argument("--val-images", type=Path,
                   help="validation micrographs (default: held out from --images, see --split)")
    t.add_argument("--val-masks", type=Path, help="validation masks")
    t.add_argument("--n-rays", type=int, help="radial distances per pixel, with --init scratch "
                                              "(default 32; 64 for thin rods)")
    t.add_argument("--batch-size", type=int, help="patches per step (default: the model's, 4)")
    t.add_argument("--device", help="where to train: cpu (default), cuda, or auto")
    t.add_argument("--workers", type=int, default=0,
                   help="processes making training patches (use several with a GPU; default 0)")
    t.add_argument("--split", choices=("auto", "images", "spatial"), default="auto",
                   help="validation data held out of the pairs: whole images, the last "
                        "quarter of every image, or auto (default: whole images from 10 "
                        "pairs on)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--overwrite", action="store_true", help="replace an existing model in --out")
    t.set_defaults(func=_train)

    r = sub.add_parser("predict", help="segment micrographs and write label TIFFs",
                       description="Segment micrographs and write <stem>.tif label images "
                                   "(x-2.tif, ... when inputs share a stem). Exit status: 0 all "
                                   "images done; 3 some files skipped (listed on stderr).")
    r.add_argument("inputs", nargs="+", type=Path, help="image files or folders of images")
    r.add_argument("--model", default="emps",
                   help="model folder or a shipped model name (default emps)")
    r.add_argument("--out", type=Path, required=True, help="folder for <stem>.tif label images")
    r.add_argument("--prob-thresh", type=float, help="override the model's probability threshold")
    r.add_argument("--nms-thresh", type=float, help="override the model's NMS threshold")
    r.add_argument("--scale", type=_number_or_auto, help=_SCALE_HELP)
    r.add_argument("--overwrite", action="store_true", help="replace existing label files")
    r.set_defaults(func=_predict)

    e = sub.add_parser("evaluate", help="precision/recall/F1/PQ of a model on annotated pairs")
    e.add_argument("--model", default="emps",
                   help="model folder or a shipped model name (default emps)")
    e.add_argument("--images", type=Path, required=True)
    e.add_argument("--masks", type=Path, required=True)
    e.add_argument("--iou", type=float, nargs="+", default=[0.5, 0.7],
                   help="IoU thresholds (default 0.5 0.7)")
    e.add_argument("--scale", type=_number_or_auto, help=_SCALE_HELP)
    e.add_argument("--csv", type=Path, help="write per-image and overall scores to this CSV")
    e.set_defaults(func=_evaluate)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


_SCALE_HELP = ("resize factor before the network, or 'auto' (try the model's scale x 1, 1/2, 2 "
               "and keep the surest result); default: the model's own setting")


def _number_or_auto(text: str):
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
    from ._model import load

    return load(name)


def _train(args) -> int:
    from ..cli import STARTED
    from ._adapt import adapt

    if (args.val_images is None) != (args.val_masks is None):
        raise ValueError("--val-images and --val-masks go together")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} exists and is not a folder")
    if (args.out / "weights.pt").exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} already holds a model; pass --overwrite")
    if args.n_rays is not None and args.init != "scratch":
        raise ValueError("--n-rays needs --init scratch (a base model keeps its rays)")
    pairs = _pairs(args.images, args.masks)
    if len(pairs) == 0:
        raise ValueError(f"no image/mask pairs in {args.images} and {args.masks}")
    val = _pairs(args.val_images, args.val_masks) if args.val_images is not None else None
    model = adapt(pairs, init=args.init, val=val, minutes=args.minutes,
                  synthetic_per_real=args.synthetic_per_real, scale=args.scale, seed=args.seed,
                  synthetic_scale=("auto" if args.synthetic_scale is None
                                   else tuple(args.synthetic_scale)),
                  split=args.split,
                  batch_size=args.batch_size, device=args.device, workers=args.workers,
                  config_changes={"n_rays": args.n_rays} if args.n_rays else None,
                  started=STARTED)
    a = model.info["adaptation"]
    a["images"] = str(args.images.resolve())
    a["masks"] = str(args.masks.resolve())
    a["pair_ids"] = list(getattr(pairs, "ids", []))
    model.save(args.out, overwrite=args.overwrite)
    v = a["validation"]
    print(f"model written to {args.out} (scale {a['scale']['chosen']}, thresholds "
          f"{model.thresholds}); held-out F1@0.5 {v['f1_50']:.3f}; use it with: "
          f"utilegen analyze IMAGES --model {args.out}")
    return 0


def _predict(args) -> int:
    import sys

    from ..io import list_images, read_image, unique_names, write_mask

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
    # a/x.png and b/x.png -> x.tif and x-2.tif: no output of this run replaces another
    outputs = [args.out / f"{name}.tif" for name in unique_names(f.stem for f in files)]
    if not args.overwrite:
        existing = [str(o) for o in outputs if o.exists()]
        if existing:
            raise FileExistsError(f"{len(existing)} output file(s) exist, e.g. {existing[0]}; "
                                  "pass --overwrite or choose another --out")
    args.out.mkdir(parents=True, exist_ok=True)
    skipped = 0
    for f, out in zip(files, outputs):
        try:
            mask = model.predict(read_image(f), prob_thresh=args.prob_thresh,
                                 nms_thresh=args.nms_thresh, scale=args.scale)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
            skipped += 1
            print(f"skipped {f}: {exc}", file=sys.stderr)
            continue
        write_mask(out, mask, overwrite=args.overwrite)
        print(f"{f}: {mask.count} particles -> {out.name}")
    if skipped:
        print(f"{skipped} of {len(files)} file(s) skipped", file=sys.stderr)
    return 3 if skipped else 0


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
