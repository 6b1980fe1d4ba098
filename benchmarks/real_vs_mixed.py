"""Real-only vs real + synthetic training of StarDist on EMPS (the paper's Tables 3-5).

Designs (``--design``):

* ``table5``: spheres. The 166 EMPS sphere images are shuffled with seed 0; the first 30
  are the fixed validation set, training uses the first n_real in {5, 10, 20, 30} of
  the rest; each n_real is trained on the real images only and on real + 5 synthetic
  images per real image (synthetic made by `utilegen.synth` from those n_real images only).
* ``table3``: per class (sphere / cube / rod): half of the class's images (at most 20)
  train, the other half (at most 30) validate; real vs real + 5 synthetic per real.
* ``table4``: one sphere image -> 50 synthetic images (+ the real one), 3 different
  source images, evaluated on the table5 validation set.

Every cell uses the default model's recipe (StarDist2D's architecture with ``--base-filters``
filters at the top level, 16 by default to fit 17 cells into a 2-core CPU budget; images
resized by 0.5; prediction with ``scale="auto"``) and the same budget: the same number of
training steps of 4 x 256² patches (the same CPU work per step for real and mixed data) and
the same seed. Thresholds are tuned on the cell's own real training images (never on
validation). A classical baseline, Otsu threshold + distance-transform watershed, runs on
the same validation images.

    .venv/bin/python benchmarks/real_vs_mixed.py --design table5 table3 table4 --steps 1500 \\
        --out /tmp/rvm.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from utilegen.datasets import emps
from utilegen.masks import InstanceMask
from utilegen.segment import StarDist, StarDistConfig, evaluate

EMPS_ROOT = Path("/work/shared/data/emps")


def synthetic(pairs, n, seed):
    from utilegen.synth import Compositor, SyntheticDataset

    comp = Compositor(image_size=512, same_source=True, particles_per_image=(5, 40),
                      scale=(0.75, 1.33))
    # every particle is kept when all touch the border; particles that could not fit the
    # 512² canvas at the largest scale (1.33) are left out
    ds = SyntheticDataset.from_pairs(pairs, keep_all_if_empty=True, max_extent=512 / 1.33 - 4,
                                     compositor=comp, length=n, seed=seed)
    return [ds.pair(i) for i in range(n)]


def otsu_watershed(image: np.ndarray) -> InstanceMask:
    """Classical baseline: Otsu foreground (minority phase), distance-transform watershed."""
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian, threshold_otsu
    from skimage.segmentation import watershed

    smooth = gaussian(image.astype(np.float32), 1.0)
    fg = smooth > threshold_otsu(smooth)
    if fg.mean() > 0.5:  # particles are the minority phase (dark on bright in TEM)
        fg = ~fg
    fg = ndi.binary_opening(fg, iterations=1)
    dist = ndi.distance_transform_edt(fg)
    # seeds at least ~0.7 typical radii apart (the 90th percentile of the distance map)
    radius = np.percentile(dist[fg], 90) if fg.any() else 3
    peaks = peak_local_max(dist, min_distance=max(3, int(0.7 * radius)),
                           labels=ndi.label(fg)[0], exclude_border=False)
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-dist, markers, mask=fg)
    return InstanceMask(labels.astype(np.int32))


def scores(pred_or_model, val):
    df = evaluate(pred_or_model, val, iou=(0.5, 0.7))
    o = df[df.image == "all"].set_index("iou")
    return {"f1_50": float(o.loc[0.5, "f1"]), "f1_70": float(o.loc[0.7, "f1"]),
            "precision_50": float(o.loc[0.5, "precision"]),
            "recall_50": float(o.loc[0.5, "recall"])}


def cell(name, real, n_syn_per_real, val, steps, seed=0, syn_only=None, base_filters=16):
    real_pairs = list(real)
    train = list(real_pairs)
    n_syn = 0
    if n_syn_per_real or syn_only:
        syn = synthetic(real_pairs, syn_only or n_syn_per_real * len(real_pairs), seed=seed + 1)
        n_syn = len(syn)
        train += syn
    model = StarDist(StarDistConfig(scale=0.5, base_filters=base_filters), seed=seed)
    model.predict_scale = "auto"
    t = time.time()
    model.fit(train, None, epochs=1, steps_per_epoch=steps, seed=seed, progress=False)
    minutes = (time.time() - t) / 60
    model.optimize_thresholds(real_pairs)
    res = {"cell": name, "n_real": len(real_pairs), "n_synthetic": n_syn, "steps": steps,
           "base_filters": base_filters,
           "train_minutes": round(minutes, 2), "thresholds": model.thresholds, **scores(model, val)}
    print(json.dumps(res), flush=True)
    return res


def baseline(name, val):
    res = {"cell": name, "method": "otsu+watershed", **scores(
        [otsu_watershed(val.pair(i)[0]) for i in range(len(val))], val)}
    print(json.dumps(res), flush=True)
    return res


PAPER = {  # UTILE-Gen paper, F1 in % (DESIGN.md): Table 5 spheres, Table 3 per class
    "t5 n_real=5": (36, 74), "t5 n_real=10": (63, 86), "t5 n_real=20": (77, 88),
    "t5 n_real=30": (88, 92), "t3 cube": (79, 84), "t3 sphere": (84, 93), "t3 rod": (87, 93)}


def markdown(results) -> str:
    """The recorded cells as Markdown tables (real vs mixed side by side, with the paper)."""
    by = {r["cell"]: r for r in results}
    lines = [("| cell | real only F1@0.5 / @0.7 (P, R) | + synthetic F1@0.5 / @0.7 (P, R) | "
              "paper F1 real → mixed | train min real / mixed |"), "|---|---|---|---|---|"]

    def fmt(r):
        return (f"{r['f1_50']:.2f} / {r['f1_70']:.2f} ({r['precision_50']:.2f}, "
                f"{r['recall_50']:.2f})") if r else "not run"

    for key in PAPER:
        real, mixed = by.get(f"{key} syn=0"), by.get(f"{key} syn=5")
        if real or mixed:
            n_syn = f" (+{mixed['n_synthetic']} synthetic)" if mixed else ""
            lines.append(f"| {key}{n_syn} | {fmt(real)} | {fmt(mixed)} | {PAPER[key][0]} → "
                         f"{PAPER[key][1]} | {real['train_minutes'] if real else '-'} / "
                         f"{mixed['train_minutes'] if mixed else '-'} |")
    for r in by.values():  # the last record of each cell
        if r["cell"].startswith("t4"):
            lines.append(f"| {r['cell']} (1 real + {r['n_synthetic']}) | - | {fmt(r)} | 73-92 | "
                         f"- / {r['train_minutes']} |")
    for r in by.values():
        if "baseline" in r["cell"]:
            lines.append(f"| {r['cell']}: Otsu + watershed | {fmt(r)} | | | |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--table", type=Path, nargs="+",
                    help="print the results in these --out files as Markdown and exit")
    ap.add_argument("--design", choices=["table5", "table3", "table4"], nargs="+",
                    default=["table5"])
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--n-real", type=int, nargs="+", default=[5, 10, 20, 30])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--base-filters", type=int, default=16)
    ap.add_argument("--out", type=Path, default=Path("/tmp/real_vs_mixed.json"))
    args = ap.parse_args()
    if args.table:
        print(markdown([r for f in args.table for r in json.loads(f.read_text())]))
        return
    torch.set_num_threads(args.threads)
    data = emps(EMPS_ROOT)
    results = json.loads(args.out.read_text()) if args.out.is_file() else []
    done = {r["cell"] for r in results}

    def record(r):
        results.append(r)
        args.out.write_text(json.dumps(results, indent=1))

    spheres = list(np.array(data.with_shape("sphere").ids)
                   [np.random.default_rng(0).permutation(166)])
    val5, pool5 = data.subset(spheres[:30]), spheres[30:]
    if "table5" in args.design:
        if "t5 baseline" not in done:
            record(baseline("t5 baseline", val5))
        for n in args.n_real:
            for k in (0, 5):
                name = f"t5 n_real={n} syn={k}"
                if name not in done:
                    record(cell(name, data.subset(pool5[:n]), k, val5, args.steps,
                                       base_filters=args.base_filters))
    if "table3" in args.design:
        for shape in ("sphere", "cube", "rod"):
            ids = list(np.array(data.with_shape(shape).ids)[
                np.random.default_rng(1).permutation(len(data.with_shape(shape).ids))])
            half = len(ids) // 2
            train_ids, val_ids = ids[:min(half, 20)], ids[half:half + 30]
            val = data.subset(val_ids)
            if f"t3 {shape} baseline" not in done:
                record(baseline(f"t3 {shape} baseline", val))
            for k in (0, 5):
                name = f"t3 {shape} syn={k}"
                if name not in done:
                    record(cell(name, data.subset(train_ids), k, val, args.steps,
                                       base_filters=args.base_filters))
    if "table4" in args.design:
        for j in range(3):
            name = f"t4 source={pool5[j]} syn=50"
            if name not in done:
                record(cell(name, data.subset([pool5[j]]), 0, val5, args.steps, syn_only=50,
                                base_filters=args.base_filters))


if __name__ == "__main__":
    main()
