"""`utilegen classify train|predict|evaluate` (registered by `utilegen.cli`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EXAMPLES = """examples:
  utilegen classify train --emps ../shared/data/emps --classes sphere,cube,rod \\
      --backbone convnext_atto --image-size 128 --epochs 20 --augment randaugment+mixup \\
      --synthetic-per-real 5 --out models/shape
  utilegen classify train --images data/images --labels data/shapes.csv --out models/shape
  utilegen classify predict --model models/shape data/new/*.png --csv predictions.csv
  utilegen classify evaluate --model models/shape --images data/test --labels data/test.csv \\
      --plot confusion.png
"""


def _classes(text: str) -> tuple:
    classes = tuple(c.strip() for c in text.split(",") if c.strip())
    if len(classes) < 2:
        raise argparse.ArgumentTypeError(f"give at least two comma-separated classes, got {text!r}")
    return classes


def _add_data_args(p):
    g = p.add_argument_group("labelled images (either --emps or --images/--labels)")
    g.add_argument("--emps", type=Path, help="EMPS folder (images/, segmaps/, shapes.csv)")
    g.add_argument("--images", type=Path, help="folder of micrographs")
    g.add_argument("--labels", type=Path,
                   help="CSV with the columns filename,shape (default with --emps: its shapes.csv)")


def add_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "classify", help="shape classification of micrographs (sphere / cube / rod ...)",
        description="Train, apply and evaluate a whole-image shape classifier on a timm backbone.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="classify_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])

    t = sub.add_parser("train", help="train a classifier and save it to a folder",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_data_args(t)
    t.add_argument("--classes", type=_classes, default=("sphere", "cube", "rod"),
                   help="comma-separated classes to train on (default sphere,cube,rod); images of "
                        "other classes in the label file are ignored")
    t.add_argument("--backbone", default="convnext_atto",
                   help="timm model name (default convnext_atto)")
    t.add_argument("--pretrained", default=None,
                   help="'hub' to download timm's weights, or a local weights file")
    t.add_argument("--image-size", type=int, default=128,
                   help="network input size in px (default 128)")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--steps", type=int, default=None,
                   help="total optimizer steps (overrides --epochs)")
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    t.add_argument("--augment", choices=("standard", "randaugment+mixup"), default="standard")
    t.add_argument("--val-fraction", type=float, default=0.2,
                   help="fraction of each class held out to pick the best checkpoint (default 0.2)")
    t.add_argument("--synthetic-per-real", type=int, default=0,
                   help="with --emps: add this many synthetic images per real training image, "
                        "generated per class from that class's training images")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", type=Path, required=True, help="model folder to write")
    t.add_argument("--overwrite", action="store_true", help="replace a model already in --out")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_train)

    pr = sub.add_parser("predict", help="classify images with a saved model")
    pr.add_argument("--model", type=Path, required=True, help="folder written by 'classify train'")
    pr.add_argument("inputs", nargs="+", type=Path, help="image files or folders of images")
    pr.add_argument("--csv", type=Path, help="write name,label,p_<class>... to this CSV")
    pr.set_defaults(func=_predict)

    e = sub.add_parser("evaluate", help="accuracy, precision/recall and confusion matrix")
    e.add_argument("--model", type=Path, required=True, help="folder written by 'classify train'")
    _add_data_args(e)
    e.add_argument("--plot", type=Path, help="write the normalised confusion matrix as PNG")
    e.add_argument("--json", type=Path, help="write the metrics as JSON")
    e.set_defaults(func=_evaluate)


def _labelled(args, classes):
    from . import from_emps, from_folder

    if args.emps is not None and args.images is not None:
        raise ValueError("give either --emps or --images/--labels, not both")
    if args.emps is not None:
        from ..datasets import emps

        data = emps(args.emps)
        return from_emps(data, classes, labels=args.labels), data
    if args.images is None or args.labels is None:
        raise ValueError("give --emps, or --images and --labels")
    from . import read_labels

    table = read_labels(args.labels)
    unknown = sorted(set(table.values()) - set(classes)) if classes else []
    data = from_folder(args.images, args.labels)
    if unknown:
        keep = [i for i, lab in enumerate(data.labels) if lab in classes]
        if not keep:
            raise ValueError(f"--labels {args.labels} has no images of the classes {list(classes)}")
        data = data.subset(keep)
    return data, None


def _train(args) -> int:
    from . import ShapeClassifier, synthetic_for_class

    if args.out is not None and (args.out / "config.json").exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} already holds a model; pass --overwrite to replace it")
    if args.synthetic_per_real < 0:
        raise ValueError(f"--synthetic-per-real must be >= 0, got {args.synthetic_per_real}")
    data, emps_ds = _labelled(args, args.classes)
    missing = [c for c in args.classes if c not in data.labels]
    if missing:
        raise ValueError(f"no training images of the classes {missing}")
    train, val = (data.split(args.val_fraction, rng=args.seed) if args.val_fraction > 0
                  else (data, None))
    if args.synthetic_per_real:
        if emps_ds is None:
            raise ValueError(
                "--synthetic-per-real needs --emps (instance masks to cut particles from)")
        for k, c in enumerate(args.classes):
            ids = [n for n, lab in zip(train.names, train.labels) if lab == c]
            syn = synthetic_for_class(emps_ds.subset(ids), c, args.synthetic_per_real * len(ids),
                                      seed=args.seed * 1000 + k)
            train = train + syn
    print(f"train: {train}; val: {val}")
    pretrained = True if args.pretrained == "hub" else (args.pretrained or False)
    clf = ShapeClassifier(args.backbone, classes=args.classes, pretrained=pretrained,
                          image_size=args.image_size, seed=args.seed)
    clf.fit(train.materialize(), val.materialize() if val is not None else None,
            epochs=args.epochs, steps=args.steps,
            augment=args.augment, batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed,
            progress=not args.quiet)
    clf.save(args.out, overwrite=args.overwrite)
    best = max((r for r in clf.history if "val_accuracy" in r), key=lambda r: r["val_accuracy"],
               default=None)
    if best is not None:
        print(f"best validation accuracy {best['val_accuracy']:.3f} at step {best['step']}")
    print(f"saved {clf} to {args.out}")
    return 0


def _image_files(inputs):
    from ..io import list_images

    files = []
    for path in inputs:
        if path.is_dir():
            files += list_images(path)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"input not found: {path}")
    if not files:
        raise ValueError(f"no image files in {', '.join(map(str, inputs))}")
    return files


def _image_level(clf, name):
    """`clf`, if it classifies whole images (these commands feed it whole micrographs)."""
    if clf.level == "particle":
        raise ValueError(f"{name} is a per-particle classifier (it labels single-particle "
                         "crops, not micrographs): use it through `utilegen analyze "
                         f"--classifier {name}`, or `particle_shapes(mask, image, "
                         "classifier=...)` in Python")
    return clf


def _predict(args) -> int:
    from ..io import atomic_path
    from . import load

    clf = _image_level(load(args.model), args.model)
    table = clf.predict(_image_files(args.inputs)).to_frame()
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.csv is not None:
        with atomic_path(args.csv, overwrite=True) as tmp:
            table.to_csv(tmp, index=False)
        print(f"wrote {args.csv}")
    return 0


def _evaluate(args) -> int:
    from ..io import atomic_path
    from . import load

    clf = _image_level(load(args.model), args.model)
    data, _ = _labelled(args, clf.classes)
    result = clf.evaluate(data)
    print(result)
    if args.json is not None:
        with atomic_path(args.json, overwrite=True) as tmp:
            tmp.write_text(json.dumps(result.to_dict(), indent=2))
    if args.plot is not None:
        fig = result.plot()
        with atomic_path(args.plot, overwrite=True) as tmp:
            fig.savefig(tmp, dpi=150, format=args.plot.suffix.lstrip(".") or "png")
    return 0
