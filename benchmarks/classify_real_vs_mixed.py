"""Shape classification on EMPS, real vs real + synthetic (the design of the paper's Table 2).

Cells: backbone (convnext_atto, xception41; both at 128 px) x augmentation ("standard",
"randaugment+mixup") x data ("real": 15 real images per class; "mixed": the same + 5
synthetic per real, made by `utilegen.synth` from that class's 15 training images only).
Every cell gets the same budget: the same number of optimizer steps of the same batch
size at the same input size, from the same seed. No ImageNet weights (no network here):
all models train from random initialisation, unlike the paper's fine-tuning.

Split (fixed): the EMPS images labelled sphere / cube / rod in shapes.csv; each class's
ids sorted and shuffled with ``np.random.default_rng(0)``; the first 15 spheres, 5 cubes
and 8 rods are the test set, the next 15 of each class the training set (cube has only 20
images, so there is no validation set: the weights after the last step are evaluated).

    nohup .venv/bin/python benchmarks/classify_real_vs_mixed.py --record > classify_bench.log 2>&1 &
    .venv/bin/python benchmarks/classify_real_vs_mixed.py --quick    # 2-minute smoke run
    .venv/bin/python benchmarks/classify_real_vs_mixed.py --rules-only

Reference without any training: `particle_shapes` (morphometry `ShapeRules`) on the
annotated instance masks, image label = `dominant_shape` (largest area fraction among
sphere/cube/rod, border particles left out), on the same test images and on all 215.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from utilegen.classify import ShapeClassifier, from_emps, synthetic_for_class
from utilegen.datasets import emps

ROOT = Path(__file__).resolve().parent.parent
EMPS_ROOT = ROOT.parent / "shared" / "data" / "emps"
CLASSES = ("sphere", "cube", "rod")
N_TEST = {"sphere": 15, "cube": 5, "rod": 8}
N_TRAIN = 15
SYNTH_PER_REAL = 5
BACKBONES = {"convnext_atto": {}, "xception41": {}, "regnetx_002": {}}
AUGMENTS = ("standard", "randaugment+mixup")


def split(data, seed=0):
    """{class: (train ids, test ids)} as described in the module docstring."""
    out = {}
    for c in CLASSES:
        ids = sorted(i for i in data.ids if data.shapes.get(i) == c)
        ids = [ids[k] for k in np.random.default_rng(seed).permutation(len(ids))]
        test = ids[:N_TEST[c]]
        train = ids[N_TEST[c]:N_TEST[c] + N_TRAIN]
        out[c] = (train, test)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=120, help="optimizer steps per cell (120)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (few steps, 64 px)")
    parser.add_argument("--only", default="", help="comma-separated backbones to run")
    parser.add_argument("--init", type=Path, default=None,
                        help="a saved per-particle ShapeClassifier folder whose backbone weights "
                             "start every cell (its backbone is used; the head is new). It must "
                             "not have seen the test images: `particle_classifier.py table2-base`")
    parser.add_argument("--out", type=Path, default=Path("/tmp/utilegen-classify-bench"),
                        help="folder for results.json and confusion-matrix PNGs")
    parser.add_argument("--rules-only", action="store_true",
                        help="only the morphometry-rules reference (no training)")
    parser.add_argument("--record", action="store_true",
                        help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.image_size = 4, 64
    args.out.mkdir(parents=True, exist_ok=True)

    data = emps(EMPS_ROOT)
    parts = split(data)
    labelled = from_emps(data, CLASSES)
    by_name = {n: i for i, n in enumerate(labelled.names)}
    train_real = labelled.subset([by_name[i] for c in CLASSES for i in parts[c][0]])
    test = labelled.subset([by_name[i] for c in CLASSES for i in parts[c][1]]).materialize()
    print("split:", {c: {"train": len(parts[c][0]), "test": len(parts[c][1])} for c in CLASSES})
    print("test ids:", {c: parts[c][1] for c in CLASSES})
    rules = rules_reference(data, [i for c in CLASSES for i in parts[c][1]])
    print(f"morphometry rules on annotated masks, test images: acc {rules['test'].accuracy:.3f} "
          f"bal {rules['test'].balanced_accuracy:.3f} cm {rules['test'].confusion.tolist()}; all "
          f"{rules['all'].n}: acc {rules['all'].accuracy:.3f} "
          f"bal {rules['all'].balanced_accuracy:.3f} "
          f"cm {rules['all'].confusion.tolist()} ({rules['seconds']:.0f} s)", flush=True)
    if args.rules_only:
        return

    t = time.perf_counter()
    synthetic = None
    for k, c in enumerate(CLASSES):
        syn = synthetic_for_class(data.subset(parts[c][0]), c, SYNTH_PER_REAL * len(parts[c][0]),
                                  seed=100 + k, image_size=512)
        synthetic = syn if synthetic is None else synthetic + syn
    train_real = train_real.materialize()
    synthetic = synthetic.materialize()
    synth_seconds = time.perf_counter() - t
    print(f"synthetic: {synthetic} in {synth_seconds:.0f} s")
    datasets = {"real": train_real, "mixed": train_real + synthetic}

    results = []
    backbones = [b for b in BACKBONES if not args.only or b in args.only.split(",")]
    init = None
    if args.init is not None:
        meta = json.loads((args.init / "config.json").read_text())
        backbones, init = [meta["classifier"]["backbone"]], args.init / "weights.pt"
        seen = set(meta.get("trained_on") or [])
        leaked = seen & {i for c in CLASSES for i in parts[c][1]}
        if not seen or leaked:
            raise SystemExit(f"--init {args.init}: its training images are not recorded or "
                             f"include {len(leaked)} test images")
    for backbone in backbones:
        for augment in AUGMENTS:
            for kind, train in datasets.items():
                clf = ShapeClassifier(backbone, classes=CLASSES, image_size=args.image_size, seed=0,
                                      model_kwargs=BACKBONES[backbone],
                                      pretrained=init if init is not None else False)
                t = time.perf_counter()
                clf.fit(train, None, steps=args.steps, batch_size=args.batch_size, augment=augment,
                        learning_rate=args.lr, seed=0, progress=False)
                seconds = time.perf_counter() - t
                ev = clf.evaluate(test)
                row = {"backbone": backbone + (" (particle init)" if init else ""),
                       "augment": augment, "data": kind,
                       "train_images": len(train),
                       "steps": args.steps, "train_seconds": round(seconds, 1), **ev.to_dict()}
                results.append(row)
                fig = ev.plot(title=f"{backbone} {augment} {kind}: acc {ev.accuracy:.2f}")
                fig.savefig(args.out
                            / f"confusion_{backbone}_{augment.replace('+', '_')}_{kind}.png",
                            dpi=100)
                import matplotlib.pyplot as plt

                plt.close(fig)
                print(f"{backbone:14s} {augment:18s} {kind:5s} acc {ev.accuracy:.3f} "
                      f"bal {ev.balanced_accuracy:.3f} cm {ev.confusion.tolist()} {seconds:.0f} s",
                      flush=True)
                (args.out / "results.json").write_text(json.dumps(results, indent=1))

    table = markdown(results, args, synth_seconds, len(synthetic))
    print(table)
    if args.record and not args.quick:
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as f:
            f.write("\n" + table)


def rules_reference(data, test_ids) -> dict:
    """Image labels from per-particle morphometry rules on the annotated masks."""
    from utilegen.classify import Evaluation, dominant_shape, particle_shapes

    t = time.perf_counter()
    ids = [i for i in data.ids if data.shapes.get(i) in CLASSES]
    sub = data.subset(ids)
    pred = {}
    for k, image_id in enumerate(ids):
        _, mask = sub.pair(k)
        pred[image_id] = dominant_shape(particle_shapes(mask, exclude_border=True), CLASSES)
    pred = {i: (p if p in CLASSES else "sphere") for i, p in pred.items()}  # no particle: majority
    out = {"seconds": time.perf_counter() - t}
    for name, chosen in (("test", test_ids), ("all", ids)):
        out[name] = Evaluation.from_labels([data.shapes[i] for i in chosen],
                                           [pred[i] for i in chosen],
                                           CLASSES, names=chosen)
    return out


def markdown(results, args, synth_seconds, n_synth) -> str:
    load = os.getloadavg()
    lines = [
        "## Shape classification", "",
        ("`.venv/bin/python benchmarks/classify_real_vs_mixed.py --record` "
        f"({platform.machine()}, torch {torch.__version__}, {args.threads} thread; load average "
        f"{load[0]:.1f} at the end; another training job shared the 2 cores)."), "",
        (f"EMPS sphere/cube/rod, fixed split (seed-0 shuffle per class): test 15 sphere / 5 cube / "
        f"8 rod images; train 15 real per class (45), mixed = the same + 5 synthetic per real "
        f"({n_synth}, 512², generated per class from that class's training images only, "
        f"{synth_seconds:.0f} s). Same budget per cell: {args.steps} AdamW steps x batch "
        f"{args.batch_size} at {args.image_size} px, lr {args.lr}, seed 0; random initialisation "
        "(no ImageNet weights could be downloaded; the paper fine-tuned pretrained models), no "
        "validation set (cube has 20 images), last weights evaluated."), "",
        ("| backbone | augmentation | data | accuracy | balanced acc. | recall sphere/cube/rod "
        "| confusion (rows true s/c/r, cols predicted) | train time |"),
        "|---|---|---|---|---|---|---|---|"]
    for r in results:
        rec = "/".join(f"{r['recall'][c]:.2f}" for c in CLASSES)
        cm = " ; ".join(" ".join(str(v) for v in row) for row in r["confusion"])
        lines.append(f"| {r['backbone']} | {r['augment']} | {r['data']} | {r['accuracy']:.3f} | "
                     f"{r['balanced_accuracy']:.3f} | {rec} | {cm} | {r['train_seconds']:.0f} s |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
