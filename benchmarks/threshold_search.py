"""Threshold search: NMS once per NMS threshold (now) vs once per probability tried (before).

`StarDist.optimize_thresholds` used to run stardist's NMS for every probability threshold
the golden-section search tried (about 20 per NMS threshold, 3 NMS thresholds), at low
thresholds on dense images: minutes. Greedy NMS at a higher threshold keeps exactly the
survivors above it of the run at the lowest one, so it now runs NMS once per NMS
threshold. Both are run here on the same candidates, and must choose the same thresholds.
Both use the golden-section search of that time: since session 7 `optimize_thresholds`
scores a grid and caps the candidates (benchmarks/RESULTS.md, "Thresholds from a few
held-out particles"), so this script measures the NMS reuse alone, not today's search.

Images: the densest EMPS images of the shipped model's validation split (speed only; no
accuracy is claimed here). The network pass is shared and not timed.

    .venv/bin/python benchmarks/threshold_search.py --images 8
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def search(truths, cands, bracket, score_fn, nms_threshs=(0.3, 0.4, 0.5)):
    from scipy.optimize import minimize_scalar

    best = (-np.inf, None, None)
    for nms in nms_threshs:
        prepared = score_fn(nms)
        cache = {}

        def score(t, cache=cache, prepared=prepared):
            t = float(np.clip(t, *bracket))
            if t not in cache:
                cache[t] = prepared(t)
            return -cache[t]

        opt = minimize_scalar(score, method="golden", bracket=bracket, tol=1e-2,
                              options={"maxiter": 20})
        if -opt.fun > best[0]:
            best = (-opt.fun, float(np.clip(opt.x, *bracket)), nms)
    return best


def main():
    from stardist.matching import matching_dataset
    from train_default import split

    from utilegen.datasets import emps
    from utilegen.segment import StarDist, normalize
    from utilegen.segment._data import as_image_and_labels
    from utilegen.segment._model import _surest
    from utilegen.segment._predict import above, instances, render, suppress

    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=8)
    args = ap.parse_args()
    data = emps(ROOT.parent / "shared" / "data" / "emps")
    _, val_ids = split(data)
    pairs = [as_image_and_labels(*data.pair(data.ids.index(i)), name=i) for i in val_ids]
    pairs = sorted(pairs, key=lambda p: -int(p[1].max()))[: args.images]  # densest first
    model = StarDist.pretrained("emps")
    scales = model._scales("auto")
    truths = [y for _, y in pairs]
    cands = []
    for image, _ in pairs:
        x = normalize(image)
        cands.append([(s, model.predict_candidates(x, prob_thresh=0.05, scale=s,
                                                   _normalized=True)[:3]) for s in scales])
    n_cand = sum(len(c[1]) for cs in cands for _, c in cs)
    max_prob = max(float(c[1].max()) for cs in cands for _, c in cs if len(c[1]))
    bracket = (max_prob / 2, max_prob)

    def f1(preds):
        return float(np.mean([s.accuracy for s in matching_dataset(
            truths, preds, thresh=[0.3, 0.5, 0.7], show_progress=False)]))

    def surest(results):  # the rule of `predict(scale="auto")`, on rendered results
        return max(results,
                   key=lambda r: float(np.mean(r[1]["prob"])) if len(r[1]["prob"]) else -1.0)

    def before(nms):  # NMS and drawing at every scale, for every probability tried
        return lambda t: f1([surest([instances(*c, y.shape, prob_thresh=t, nms_thresh=nms, scale=s)
                                     for s, c in cs])[0] for cs, y in zip(cands, truths)])

    def now(nms):  # NMS once; per probability, only the chosen scale is drawn
        kept = [[(s, suppress(*c, prob_thresh=bracket[0], nms_thresh=nms)) for s, c in cs]
                for cs in cands]

        def score(t):
            preds = []
            for ks, y in zip(kept, truths):
                chosen = [(s, above(k, t)) for s, k in ks]
                s, k = chosen[_surest(chosen)]
                preds.append(render(*k, y.shape, scale=s)[0])
            return f1(preds)

        return score

    times = {}
    results = {}
    for name, fn in (("now (NMS once per NMS threshold)", now),
                     ("before (NMS per probability tried)", before)):
        t = time.perf_counter()
        results[name] = search(truths, cands, bracket, fn)
        times[name] = time.perf_counter() - t
    print(f"{len(pairs)} images, {sum(int(y.max()) for y in truths)} annotated particles, "
          f"{n_cand} candidates above 0.05 at scales {scales}")
    for name, seconds in times.items():
        score, t, nms = results[name]
        print(f"{name}: {seconds:.1f} s -> prob {t:.4f}, nms {nms}, accuracy {score:.4f}")
    (a, b), (t_now, t_before) = results.values(), times.values()
    print(f"same thresholds: {a == b}; speed-up x{t_before / t_now:.1f}")


if __name__ == "__main__":
    main()
