"""Scale-bar reading on EMPS micrographs against our own annotations.

    .venv/bin/python benchmarks/scalebar.py [--emps ../shared/data/emps]

Truth: benchmarks/data/emps_scalebars.csv, 92 EMPS training images (every 4th id of
train.csv, sorted) annotated by eye (label read, bar length measured from pixel profiles
around the bar; no detector or OCR was used to make it). Nothing was tuned on these
images before this run. For each image: `utilegen.io.read_calibration(path)` (EMPS PNGs
carry no metadata, so only the scale bar can calibrate them). Rates:
- within 2 %: calibrated, and |nm/px / truth - 1| <= 0.02, over images with a readable bar;
- wrong: calibrated but more than 2 % off (over all calibrated images, and as a count);
- not found: no calibration on an image with a readable bar;
- false calibration: a calibration on an image without a bar, or more than 2 % off the
  main bar on an image whose bar was marked unreadable (two indicators, no label).
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

from utilegen.io import read_calibration

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emps", default=str(ROOT.parent / "shared" / "data" / "emps"))
    ap.add_argument("--rows", choices=("all", "even", "odd"), default="all",
                    help="even rows were used to develop the reader, odd rows kept unseen")
    args = ap.parse_args()
    with open(ROOT / "benchmarks" / "data" / "emps_scalebars.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if args.rows != "all":
        rows = rows[(args.rows == "odd")::2]
    within = wrong = missing = false_cal = readable = calibrated = 0
    times = []
    for r in rows:
        t0 = time.perf_counter()
        cal = read_calibration(Path(args.emps) / "images" / f"{r['id']}.png")
        times.append(time.perf_counter() - t0)
        got = cal.pixel_size if cal.source == "scale bar" else None
        calibrated += got is not None
        if r["has_bar"] == "yes" and r["readable"] == "yes":
            readable += 1
            truth = float(r["nm_per_px"])
            if got is None:
                missing += 1
            elif abs(got / truth - 1) <= 0.02:
                within += 1
            else:
                wrong += 1
                print(f"WRONG {r['id']}: read {cal.label!r} -> {got:.4g} nm/px, truth "
                      f"{r['label']!r} {truth:.4g} nm/px")
        elif got is not None:
            if r["has_bar"] == "no":
                false_cal += 1
            elif r["nm_per_px"] and abs(got / float(r["nm_per_px"]) - 1) > 0.02:
                false_cal += 1  # two indicators, or no label: the main bar's value known
            print(f"calibrated {r['id']} (has_bar={r['has_bar']}, readable={r['readable']}): "
                  f"{cal.label!r} -> {got:.4g} nm/px, truth {r['nm_per_px'] or '-'}")
    n = len(rows)
    print(f"{n} images, {readable} with a readable bar, "
          f"{sum(r['has_bar'] == 'no' for r in rows)} without a bar")
    print(f"within 2 %: {within}/{readable} = {within / readable:.1%}")
    print(f"wrong (> 2 % off): {wrong}/{readable} readable-bar images; "
          f"{wrong + false_cal}/{max(1, calibrated)} of all calibrations")
    print(f"not found: {missing}/{readable} = {missing / readable:.1%}")
    print(f"false calibrations (no bar, or > 2 % off on an image marked unreadable): {false_cal}")
    print(f"time per image: median {sorted(times)[n // 2]:.2f} s, max {max(times):.2f} s "
          f"({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
