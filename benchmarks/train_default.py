"""Train the default model shipped as `StarDist.pretrained("emps")`.

Data: the 366 EMPS training-split micrographs (all shape classes, 'other' included,
since the model must handle every kind of EMPS image), split with a fixed seed into
329 training and 37 validation images; plus synthetic images made by `utilegen.synth`
from the 329 training images only (particles and inpainted backgrounds of the same
source image, 512², 1 synthetic image per real one). The validation images pick the
best epoch and the thresholds and give the reported F1.

EMPS particles are large (median diameter per image 110 px, a quarter above 170 px), too
large for StarDist2D's receptive field and 256² patches at full resolution, so the
default model works on images resized by 0.5 (``StarDistConfig.scale``; StarDist2D's
``predict_instances(scale=...)``). A first run at full resolution learned slowly
(validation loss 6.0 after 500 steps, probability map max 0.41) and was stopped.

    nohup .venv/bin/python benchmarks/train_default.py --minutes 60 > train_default.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from utilegen.datasets import emps
from utilegen.segment import StarDist, StarDistConfig, evaluate

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "utilegen" / "models" / "stardist_emps"
EMPS_ROOT = Path("/work/shared/data/emps")


def split(data, val_fraction=0.1, seed=0):
    ids = np.array(data.ids)
    perm = np.random.default_rng(seed).permutation(len(ids))
    n_val = round(val_fraction * len(ids))
    return sorted(ids[perm[n_val:]]), sorted(ids[perm[:n_val]])


def synthetic(train, n, seed=1):
    from utilegen.synth import Compositor, SyntheticDataset

    comp = Compositor(image_size=512, same_source=True, particles_per_image=(5, 40),
                      scale=(0.75, 1.33))
    # particles that could not fit a 512² canvas at the largest scale (1.33) are left out
    return SyntheticDataset.from_pairs(train, max_extent=512 / 1.33 - 4, compositor=comp,
                                       length=n, seed=seed)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--synthetic-per-real", type=float, default=1.0)
    ap.add_argument("--steps-per-epoch", type=int, default=100)
    ap.add_argument("--lr-patience", type=int, default=8)
    ap.add_argument("--scale", type=float, default=0.5,
                    help="resize factor before the network (EMPS particles are ~110 px across)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--checkpoints", type=Path, default=Path("/tmp/utilegen_default_ckpt_s05"))
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--zoom", type=float, default=1.0,
                    help="StarDistConfig.zoom (patch zoom range)")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--init", type=Path, default=None,
                    help="start from the weights of this saved model (fine-tuning)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = emps(EMPS_ROOT)
    train_ids, val_ids = split(data)
    train, val = data.subset(train_ids), data.subset(val_ids)
    n_syn = round(args.synthetic_per_real * len(train))
    train_set = list(train)
    if n_syn:
        syn = synthetic(train, 3 * n_syn)
        made, i = [], 0
        while len(made) < n_syn and i < len(syn):
            try:  # a few EMPS particles are too large for a 512² canvas: skip those items
                made.append(syn.pair(i))
            except ValueError:
                pass
            i += 1
        train_set += made
        n_syn = len(made)
    print(f"train: {len(train)} real + {n_syn} synthetic, val: {len(val)} real", flush=True)
    config = StarDistConfig(lr_patience=args.lr_patience, scale=args.scale, zoom=args.zoom,
                            learning_rate=args.lr)
    model = StarDist(config, seed=0)
    if args.init is not None:
        start = StarDist.load(args.init)
        model.network.load_state_dict(start.network.state_dict())
        model.thresholds = dict(start.thresholds)
    t0 = time.time()
    meta = {"data": "EMPS train split (366 images, all shapes): 329 train / 37 val, seed 0",
            "train_ids": train_ids, "val_ids": val_ids, "synthetic_images": n_syn,
            "synthetic": "utilegen.synth, same-source particles, 512x512, scale 0.75-1.33, "
                         "5-40 particles",
            "init": str(args.init) if args.init else None}

    def save_best(record, m, best_state):
        # a usable model at every epoch: best weights so far, default thresholds
        if best_state is None:
            return
        snap = StarDist(m.config, seed=None)
        snap.network.load_state_dict(best_state)
        # thresholds of the model saved before (a resumed run), else StarDist's defaults
        saved = args.out / "thresholds.json"
        t = json.loads(saved.read_text()) if saved.is_file() else dict(m.thresholds)
        snap.thresholds = {"prob": t["prob"], "nms": t["nms"]}
        snap.predict_scale = t.get("scale", "auto")
        snap.history = m.history or []
        snap.info = {**meta, "status": f"partial: epoch {record['epoch']}, "
                     f"{record['seconds'] / 60:.1f} min", "train_minutes": record["seconds"] / 60}
        snap.save(args.out, overwrite=True, half=True)

    resume = args.checkpoints / "last.pt" if args.resume else None
    prior_min = 0.0
    if resume is not None:  # minutes spent before the interruption
        prior_min = torch.load(resume, map_location="cpu",
                               weights_only=False)["history"][-1]["seconds"] / 60
    model.fit(train_set, val, epochs=10_000, steps_per_epoch=args.steps_per_epoch,
              time_limit=args.minutes * 60, seed=0, checkpoint_dir=args.checkpoints,
              resume=resume, callback=save_best, progress=True)
    train_min = (time.time() - t0) / 60 + prior_min
    steps = sum(r["steps"] for r in model.history)
    print(f"trained {steps} steps in {train_min:.1f} min", flush=True)
    t1 = time.time()
    # the shipped model predicts with scale="auto" (three network scales, the surest wins)
    thresholds = model.optimize_thresholds(val, scale="auto", progress=True)
    print("thresholds", thresholds, f"({time.time() - t1:.0f} s)", flush=True)
    df = evaluate(model, val, iou=(0.5, 0.7))
    overall = df[df.image == "all"].set_index("iou")
    print(overall, flush=True)
    model.info = {**meta, "status": "complete", "train_minutes": round(train_min, 2),
                  "train_steps": steps, "batch_size": config.batch_size,
                  "val_f1_iou50": float(overall.loc[0.5, "f1"]),
                  "val_f1_iou70": float(overall.loc[0.7, "f1"]),
                  "val_precision_iou50": float(overall.loc[0.5, "precision"]),
                  "val_recall_iou50": float(overall.loc[0.5, "recall"])}
    model.save(args.out, overwrite=True, half=True)
    print(json.dumps({k: v for k, v in model.info.items() if "ids" not in k}, indent=1))


if __name__ == "__main__":
    main()
