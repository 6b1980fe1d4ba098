"""One pass at the right scale: speed and accuracy of `predict`'s scale modes on the
shipped model's 37 validation images (EMPS images it was not trained on).

    .venv/bin/python benchmarks/scale_choice.py [--threads 2] [--emps ../shared/data/emps]

Modes, timed side by side in the same run on the same images (wall clock of
`model.predict(image)`: normalization, network, candidates, NMS and rendering):
- ``auto`` (the default): a coarse pass at 0.25, then one pass at the scale that brings the
  particles' width to 40 px (rule chosen on 33 of the model's *training* images);
- ``sweep``: the previous default, three passes (0.25, 0.5, 1.0), the surest kept;
- ``0.5``: one pass at the trained scale.
- a mode with ``+tta`` (e.g. ``auto+tta``): the same with test-time augmentation
  (`predict(tta=True)`: the 8 flips and quarter turns averaged before NMS; under ``auto``
  only in the kept pass, which is run again).
Speed is total time over total pixels, in s per 1024² (1,048,576 px); modes are
interleaved per image and each image is timed `--repeat` times per mode (fastest kept). F1@0.5
and F1@0.7, overall and per image class (shapes.csv), from counts summed over images
(stardist.matching), and the number of particles predicted.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from stardist.matching import matching

from utilegen.datasets import emps
from utilegen.segment import StarDist

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--emps", default=str(ROOT.parent / "shared" / "data" / "emps"))
    ap.add_argument("--modes", default="auto,sweep,0.5")
    ap.add_argument("--repeat", type=int, default=3,
                    help="time each image this many times per mode and keep the fastest")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = StarDist.pretrained("emps")
    data = emps(args.emps).subset(model.info["val_ids"])
    shapes = {}
    with open(Path(args.emps) / "shapes.csv") as fh:
        for line in fh:
            name, _, shape = line.strip().partition(",")
            shapes[Path(name).stem] = shape
    modes = args.modes.split(",")

    def predict_args(mode):
        scale, _, tta = mode.partition("+")
        if tta not in ("", "tta"):
            raise SystemExit(f"unknown mode {mode!r}: a scale mode, optionally with +tta")
        return {"scale": scale if scale in ("auto", "sweep") else float(scale),
                "tta": tta == "tta"}

    pairs = [data.pair(i) for i in range(len(data))]
    model.predict(pairs[0][0])  # warm-up
    pixels = sum(p[0].shape[0] * p[0].shape[1] for p in pairs)
    print(f"{len(pairs)} validation images, {pixels / 2**20:.1f} x 1024² pixels, "
          f"{args.threads} threads, {platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}")
    # modes interleaved per image, each image timed `repeat` times per mode (fastest
    # kept): drift of a shared machine's load hits every mode alike
    total = dict.fromkeys(modes, 0.0)
    counts = {m: {} for m in modes}
    counts70 = {m: {} for m in modes}
    passes = {m: [] for m in modes}
    for (image, truth), image_id in zip(pairs, data.ids):
        for mode in modes:
            best = np.inf
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                mask, details = model.predict(image, **predict_args(mode), return_details=True)
                best = min(best, time.perf_counter() - t0)
            total[mode] += best
            passes[mode].append(details["scale_choice"]["passes"])
            for iou, table in ((0.5, counts), (0.7, counts70)):
                m = matching(truth.labels, mask.labels, thresh=iou)
                for key in ("all", shapes.get(image_id, "?")):
                    c = table[mode].setdefault(key, np.zeros(3))
                    c += (m.tp, m.fp, m.fn)

    def f1(tp, fp, fn):
        return f"{2 * tp / max(1, 2 * tp + fp + fn):.3f}"

    classes = ("all", "sphere", "cube", "rod", "other")
    print("| mode | s per 1024² | passes (mean) | F1@0.5 | sphere | cube | rod | other | "
          "F1@0.7 | sphere | cube | rod | other | predicted |")
    print("|---" * 14 + "|")
    for mode in modes:
        print(f"| {mode} | {total[mode] / (pixels / 2**20):.3f} | {np.mean(passes[mode]):.2f} | "
              + " | ".join(f1(*table[mode][k]) if k in table[mode] else "-"
                           for table in (counts, counts70) for k in classes)
              + f" | {int(sum(counts[mode]['all'][:2]))} |", flush=True)
    print(f"load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
