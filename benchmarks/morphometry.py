"""Morphometry speed: `utilegen.morphometry.measure` vs `skimage.measure.regionprops_table`.

Both compute the same quantities on the same masks in one run (single thread):
label, centroid, area, equivalent diameter, bounding box, perimeter, convex area,
solidity, extent, orientation, ellipse axes, maximum Feret diameter, intensity mean and
std. `measure` computes more (minimum Feret, Feret angle, circularity, roundness, aspect
ratios, border flag) in that time. Values are checked where the definitions coincide.

    .venv/bin/python benchmarks/morphometry.py [--emps PATH] [--limit N] [--repeat R]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

REGIONPROPS = ("label", "centroid", "area", "equivalent_diameter_area", "bbox", "perimeter",
               "area_convex", "solidity", "extent", "orientation", "axis_major_length",
               "axis_minor_length", "feret_diameter_max", "intensity_mean", "intensity_std")


def synthetic(size=4096, count=10_000, seed=0):
    """A size x size mask with `count` non-overlapping disks and ellipses of 6-24 px radius."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((size, size), np.uint16)
    cells = int(np.ceil(np.sqrt(count)))
    step = size // cells
    label = 0
    for i in range(cells):
        for j in range(cells):
            if label == count:
                break
            a = rng.uniform(6, step / 2 - 2)
            b = rng.uniform(0.5, 1.0) * a
            t = rng.uniform(0, np.pi)
            cy, cx = (i * step + step / 2 + rng.uniform(-1, 1),
                      j * step + step / 2 + rng.uniform(-1, 1))
            r0, r1 = int(cy - a - 1), int(cy + a + 2)
            c0, c1 = int(cx - a - 1), int(cx + a + 2)
            yy, xx = np.mgrid[r0:r1, c0:c1].astype(float)
            u = np.cos(t) * (xx - cx) + np.sin(t) * (yy - cy)
            v = -np.sin(t) * (xx - cx) + np.cos(t) * (yy - cy)
            inside = (u / a) ** 2 + (v / b) ** 2 <= 1
            label += 1
            labels[r0:r1, c0:c1][inside] = label
    image = rng.normal(120, 15, labels.shape).astype(np.float32) + 60 * (labels > 0)
    return labels, image


def run_ours(pairs):
    from utilegen.morphometry import measure

    return [measure(lab, img) for lab, img in pairs]


def run_regionprops(pairs):
    from skimage.measure import regionprops_table

    return [regionprops_table(lab, img, properties=REGIONPROPS) for lab, img in pairs]


def best_times(fns, pairs, repeat):
    """Best wall and CPU time of each function; runs alternate so that both see the same
    machine load (the 2 cores are shared)."""
    wall = [[] for _ in fns]
    cpu = [[] for _ in fns]
    outs = [None] * len(fns)
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            t0, c0 = time.perf_counter(), time.process_time()
            outs[k] = fn(pairs)
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return [min(w) for w in wall], [min(c) for c in cpu], outs


def check_same(ours, theirs):
    """Largest differences where the definitions coincide."""
    import pandas as pd

    worst = {}
    for t, rp in zip(ours, theirs):
        rp = pd.DataFrame(rp)
        if len(t) == 0:
            continue
        pairs = {
            "area": (t.area, rp.area),
            "centroid": (np.r_[t.centroid_y, t.centroid_x],
                         np.r_[rp["centroid-0"], rp["centroid-1"]]),
            "bbox": (np.r_[t.bbox_height, t.bbox_width],
                     np.r_[rp["bbox-2"] - rp["bbox-0"], rp["bbox-3"] - rp["bbox-1"]]),
            "extent": (t.extent, rp.extent),
            "equivalent_diameter": (t.equivalent_diameter, rp.equivalent_diameter_area),
            "intensity_mean": (t.intensity_mean, rp.intensity_mean),
            "intensity_std": (t.intensity_std, rp.intensity_std),
        }
        for name, (a, b) in pairs.items():
            d = float(np.max(np.abs(np.asarray(a, float) - np.asarray(b, float))))
            worst[name] = max(worst.get(name, 0.0), d)
    return worst


def emps_pairs(root: Path, limit: int | None):
    from utilegen.io import read_image, read_mask

    masks = sorted((root / "segmaps").glob("*.png"))[:limit]
    return [(read_mask(m).labels, read_image(root / "images" / m.name)) for m in masks]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emps", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "data" / "emps")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N masks")
    parser.add_argument("--no-emps", action="store_true", help="only the synthetic mask")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--count", type=int, default=10_000)
    args = parser.parse_args(argv)

    import skimage

    print(f"machine: {platform.processor() or platform.machine()}, python "
          f"{platform.python_version()}, numpy {np.__version__}, "
          f"scikit-image {skimage.__version__}")
    print(f"regionprops_table properties: {', '.join(REGIONPROPS)}")
    cases = []
    if args.no_emps:
        pass
    elif (args.emps / "segmaps").is_dir():
        pairs = emps_pairs(args.emps, args.limit)
        cases.append(((f"EMPS training masks ({len(pairs)} masks, "
                       f"{sum(int(p[0].max() > 0) and len(np.unique(p[0])) - 1 for p in pairs)} "
                       "particles)"), pairs))
    else:
        print(f"EMPS not found at {args.emps}; skipping")
    lab, img = synthetic(args.size, args.count)
    cases.append((f"synthetic {args.size}x{args.size}, {len(np.unique(lab)) - 1} particles",
                  [(lab, img)]))

    for name, pairs in cases:
        run_ours(pairs[:1])  # warm imports and caches for both
        run_regionprops(pairs[:1])
        (w_ours, w_rp), (c_ours, c_rp), (ours, theirs) = best_times(
            [run_ours, run_regionprops], pairs, args.repeat)
        worst = check_same(ours, theirs)
        print(f"\n{name}   (best of {args.repeat}: wall s / CPU s)")
        print(f"  utilegen.morphometry.measure : {w_ours:8.3f} / {c_ours:8.3f}")
        print(f"  skimage regionprops_table    : {w_rp:8.3f} / {c_rp:8.3f}")
        print(f"  speed-up                     : {w_rp / w_ours:8.2f} x wall, "
              f"{c_rp / c_ours:.2f} x CPU")
        print("  max |difference| where definitions coincide: "
              + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))


if __name__ == "__main__":
    main()
