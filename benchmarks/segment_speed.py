"""Prediction speed of utilegen's StarDist on a 1024² micrograph (NMS included) and
training throughput in patches/s.

    .venv/bin/python benchmarks/segment_speed.py [--threads 2] [--repeat 7]

The image is utilegen's rendered sample at 1024² with 150 particles (EMPS-like density);
the model is the shipped default (`StarDist.pretrained("emps")`, StarDist2D's
architecture: 32 rays, grid 2, U-Net depth 3 / 32 filters, bf16 convolutions, images
resized by 0.5 before the network; by default ``scale="auto"``: three passes at 0.25,
0.5 and 1.0, also timed as one pass at 0.5); the same weights are also timed in float32 and at
full resolution (scale 1, StarDist2D's amount of work for a 1024² image). Timings: wall clock
per call of `model.predict(image)`, which includes percentile normalization, the network, candidate
selection, NMS (`stardist.nms`) and rendering the label image.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from utilegen.datasets import sample_pair
from utilegen.segment import StarDist, StarDistConfig


def timed(f, repeat):
    out, times = None, []
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t)
    return out, np.array(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--tile-sizes", default="",
                    help="also time the network alone on tiles of these sizes (comma-separated, "
                         "e.g. 512,768,1024,1536) with 64 px of context on each side: the cost "
                         "per useful Mpx that sets a large image's time at a given scale")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    image, truth = sample_pair((1024, 1024), particles=150, rng=0)
    model = StarDist.pretrained("emps")
    model.predict(image)  # warm-up (oneDNN kernel selection)
    mask, t = timed(lambda: model.predict(image), args.repeat)
    print(f"predict 1024² (bf16={model.config.mixed_precision}, scale={model.predict_scale!r}): "
          f"median {np.median(t):.3f} s, min {t.min():.3f} s, {mask.count} particles "
          f"(truth {truth.count})")
    fixed = model.config.scale
    mask, t = timed(lambda: model.predict(image, scale=fixed), args.repeat)
    print(f"predict 1024² (scale={fixed}, one pass): median {np.median(t):.3f} s, "
          f"min {t.min():.3f} s, {mask.count} particles")
    # parts: network alone, and NMS + rendering
    p = model.thresholds["prob"]
    cands, tn = timed(lambda: model.predict_candidates(image, prob_thresh=p), args.repeat)
    from utilegen.segment._predict import instances

    _, ti = timed(lambda: instances(*cands[:3], image.shape, prob_thresh=p,
                                    nms_thresh=model.thresholds["nms"], scale=model.config.scale),
                    args.repeat)
    print(f"  normalize + network + candidates: median {np.median(tn):.3f} s "
          f"({len(cands[1])} candidates); NMS + labels: median {np.median(ti):.3f} s")
    # the same weights with other settings: float32, and the network at full resolution
    # (scale 1: a 1024² network input, the work StarDist2D does on a 1024² image)
    for changes in ({"mixed_precision": False}, {"scale": 1.0},
                    {"scale": 1.0, "mixed_precision": False}):
        other = StarDist(model.config.replace(**changes), seed=None)
        other.network.load_state_dict(model.network.state_dict())
        other.thresholds = model.thresholds
        other.predict(image)
        _, t2 = timed(lambda other=other: other.predict(image), max(3, args.repeat // 2))
        print(f"predict 1024² {changes}: median {np.median(t2):.3f} s, min {t2.min():.3f} s")
    if args.tile_sizes:
        from utilegen.segment._predict import run_network

        for tile in (int(t) for t in args.tile_sizes.split(",")):
            x = np.random.default_rng(0).random((tile + 128, tile + 128), dtype=np.float32)
            mp = model.config.mixed_precision
            run_network(model.network, x, mixed_precision=mp)
            _, tt = timed(lambda x=x, mp=mp: run_network(model.network, x, mixed_precision=mp), 3)
            print(f"network alone, tile {tile} + 2 x 64 context: min {tt.min():.3f} s, "
                  f"{tt.min() / (tile / 1024) ** 2:.3f} s per useful 1024²")
    big = np.tile(image, (4, 4))
    _, tb = timed(lambda: model.predict(big), 1)
    print(f"predict 4096² (tiled 1024 + 64 context): {tb[0]:.1f} s")

    # training throughput (random patches from the sample image, batch 4 x 256²)
    for mp in (True, False):
        m = StarDist(StarDistConfig(mixed_precision=mp, scale=model.config.scale), seed=0)
        pairs = [sample_pair((512, 512), particles=40, rng=i) for i in range(4)]
        t = time.perf_counter()
        h = m.fit(pairs, epochs=1, steps_per_epoch=args.train_steps, progress=False)
        dt = time.perf_counter() - t
        print(f"training (bf16={mp}): {h[0]['steps'] * 4 / dt:.1f} patches/s "
              f"({dt / h[0]['steps']:.3f} s per step of 4 x 256², incl. data)")
    print(f"threads {args.threads}, load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
