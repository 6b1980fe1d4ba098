"""Train the leakage-free base model of the adaptation benchmark (`benchmarks/adapt.py`).

The shipped model (`StarDist.pretrained("emps")`) has seen all 366 EMPS training images,
so an adaptation benchmark on EMPS sphere, cube or rod images cannot start from it. This
base sees only the EMPS images labelled "other" in shapes.csv (151 images: aggregates,
irregular and mixed particles), none of the sphere / cube / rod images that the paper's
Tables 3-5 use. 10 % of the "other" images (seed 0) choose the best epoch and the
thresholds. Same architecture and recipe as the shipped model (StarDist2D with 32 base
filters, images resized by 0.5, zoom 1.6), no synthetic data.

It was trained on a GPU (``--device auto --workers 14``: star-distance targets are CPU
work, so worker processes make the patches); the same command runs on a CPU, slower.

    python benchmarks/train_base.py --emps-root ../shared/data/emps --minutes 6 \\
        --device auto --workers 14 --out benchmarks/models/base_other
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def main():
    import torch

    from utilegen.datasets import emps
    from utilegen.segment import StarDist, StarDistConfig, evaluate

    ap = argparse.ArgumentParser()
    ap.add_argument("--emps-root", type=Path, default=ROOT.parent / "shared" / "data" / "emps")
    ap.add_argument("--minutes", type=float, default=6)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps-per-epoch", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "models" / "base_other")
    args = ap.parse_args()
    if args.device == "cpu" or not torch.cuda.is_available():
        torch.set_num_threads(2)
    data = emps(args.emps_root).with_shape("other")
    ids = np.array(data.ids)
    perm = np.random.default_rng(0).permutation(len(ids))
    n_val = round(0.1 * len(ids))
    train, val = data.subset(sorted(ids[perm[n_val:]])), data.subset(sorted(ids[perm[:n_val]]))
    config = StarDistConfig(scale=0.5, zoom=1.6, batch_size=args.batch_size, lr_patience=5,
                            learning_rate=3e-4)
    model = StarDist(config, seed=0)
    t0 = time.time()
    model.fit(train, val, epochs=10_000, steps_per_epoch=args.steps_per_epoch,
              time_limit=args.minutes * 60, seed=0, device=args.device, workers=args.workers)
    train_minutes = (time.time() - t0) / 60
    steps = sum(r["steps"] for r in model.history)
    model.optimize_thresholds(val, scale="auto")
    df = evaluate(model, val)
    overall = df[df.image == "all"].set_index("iou")
    model.info.update({
        "kind": "stardist", "purpose": "benchmark base: EMPS 'other' images only",
        "train_ids": sorted(ids[perm[n_val:]].tolist()),
        "val_ids": sorted(ids[perm[:n_val]].tolist()),
        "steps": steps, "batch_size": args.batch_size, "train_minutes": round(train_minutes, 2),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "val_f1_50": float(overall.loc[0.5, "f1"]), "val_f1_70": float(overall.loc[0.7, "f1"])})
    model.save(args.out, overwrite=True, half=True)
    print(json.dumps({k: v for k, v in model.info.items() if "ids" not in k}, indent=1))


if __name__ == "__main__":
    main()
