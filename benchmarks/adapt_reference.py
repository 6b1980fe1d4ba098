"""Reference rows for `benchmarks/adapt.py`: the base model with no adaptation, and why one
image is a hard start on EMPS (the magnifications of the sources and of the evaluation set).

    .venv/bin/python benchmarks/adapt_reference.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adapt import BASE, EMPS_ROOT, designs


def main():
    from utilegen.datasets import emps
    from utilegen.segment import StarDist
    from utilegen.segment._adapt import equivalent_diameters, validation_figures
    from utilegen.segment._data import as_image_and_labels

    data = emps(EMPS_ROOT)
    cells = designs(data)
    eval_ids = next(c[3] for c in cells if c[0] == "t5 n=1")
    pairs = [as_image_and_labels(*data.pair(data.ids.index(i)), name=i) for i in eval_ids]
    medians = [float(np.median(equivalent_diameters(y))) for _, y in pairs]
    print(f"t5 evaluation set: {len(pairs)} images, per-image median diameter "
          f"{min(medians):.0f}-{max(medians):.0f} px (median of medians {np.median(medians):.0f})")
    for c in cells:
        if c[0].startswith("t4") and c[1] == "scratch-real":
            (i,) = c[2]
            _, y = as_image_and_labels(*data.pair(data.ids.index(i)), name=i)
            d = equivalent_diameters(y)
            within = np.mean([0.5 <= m / np.median(d) <= 2 for m in medians])
            print(f"{c[0]}: {len(d)} particles, median diameter {np.median(d):.0f} px; "
                  f"{within:.0%} of the evaluation images have a median within 2x of it")
    base = StarDist.load(BASE)
    for scale in (None, "auto"):
        base.predict_scale = scale if scale else base.config.scale
        print(f"base_other, no adaptation, scale {base.predict_scale}:",
              json.dumps(validation_figures(base, pairs)))


if __name__ == "__main__":
    main()
