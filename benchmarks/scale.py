"""Export throughput on a Dask cluster with 1 and 2 workers (and the single-process baseline).

    .venv/bin/python benchmarks/scale.py [--items 200] [--record]

Uses EMPS sphere images as the input pool and 1024x1024 items. On this 2-core machine two
workers are the ceiling; on a real cluster pass --scheduler tcp://host:8786 to measure it.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utilegen.datasets import emps
from utilegen.synth import Compositor, SyntheticDataset


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emps", default=str(ROOT.parent / "shared" / "data" / "emps"))
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--layout", default="tiff", choices=("tiff", "zarr"))
    ap.add_argument("--scheduler", help="an existing cluster to measure instead of local ones")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()

    from distributed import Client, LocalCluster

    data = emps(args.emps).with_shape("sphere")
    pairs = [data.pair(i) for i in range(20)]
    ds = SyntheticDataset.from_pairs(pairs, background=("inpaint", "mean"),
                                     compositor=Compositor(image_size=1024), length=args.items,
                                     seed=0)
    results = {}

    def run(label, **kw):
        out = Path(tempfile.mkdtemp(prefix="utilegen-scale-"))
        try:
            t0 = time.perf_counter()
            ds.export(out / "ds", layout=args.layout, progress=False, **kw)
            results[label] = args.items / (time.perf_counter() - t0)
        finally:
            shutil.rmtree(out)
        print(f"{label}: {results[label]:.1f} items/s", flush=True)

    run("one process, no Dask")
    if args.scheduler:
        with Client(args.scheduler) as client:
            run(f"cluster {args.scheduler} ({len(client.scheduler_info()['workers'])} workers)",
                client=client)
    else:
        for n in (1, 2):
            with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster, Client(cluster) as client:
                run(f"Dask LocalCluster, {n} worker{'s' * (n > 1)}", client=client)
    lines = [f"- {k}: **{v:.1f} items/s**" for k, v in results.items()]
    keys = list(results)
    if len(keys) == 3:
        lines.append(f"- 2 workers / 1 worker: x{results[keys[2]] / results[keys[1]]:.2f}")
    lines.append(f"- {args.items} items of 1024x1024, layout {args.layout}; {platform.machine()}, "
                 f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end")
    print("\n".join(lines))
    if args.record:
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as f:
            f.write(f"\n## Export on Dask ({time.strftime('%Y-%m-%d')})\n\n"
                    f"`.venv/bin/python benchmarks/scale.py {' '.join(sys.argv[1:])}`\n\n"
                    + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
