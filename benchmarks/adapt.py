"""Few-shot adaptation on EMPS, as a user runs it: the paper's Tables 3-5, and one lab's series.

Every cell runs the user's command in a fresh process,

    utilegen segment train --images DIR --masks DIR --out MODEL --minutes M --init INIT \\
        --synthetic-per-real K

on the cell's training images (symbolic links in a temporary folder), then scores the
written model on the cell's evaluation images: F1 at IoU 0.5 and 0.7, and the relative
error of the median particle size (D50 of the equivalent diameter, all particles) against
the annotations.

No leakage: the fine-tuning base is `benchmarks/models/base_other`, trained only on the
151 EMPS images labelled "other" (`benchmarks/train_base.py`); it has never seen a sphere,
cube or rod image. The shipped model has seen every EMPS image and is not used here. The
evaluation images never take part in training, synthetic pools, weight selection or
thresholds: the train command holds out part of the cell's own training images for those.

Arms: scratch-real (``--init scratch --synthetic-per-real 0``, the paper's baseline),
scratch-mixed (scratch, 5 synthetic per real), finetune-real (base, 0),
finetune-mixed (base, 5; our default until session 12) and finetune-auto (base, "auto":
the default since, 5 or 1 for a dense material).

Designs (the images each uses, all fixed by seeds):
* ``t5``: spheres. The 166 sphere images shuffled with seed 0 (as `real_vs_mixed.py`);
  the first 30 are the evaluation set; n in {1, 5, 10, 30} training images are the first
  n of the rest. Every arm.
* ``t4``: one image -> 50 synthetic: each of the first three training images of ``t5``
  alone; scratch-real and finetune-mixed with ``--synthetic-per-real 50``. Same
  evaluation set as ``t5``.
* ``t3``: per class (sphere / cube / rod), shuffled with seed 1: the first half (at most
  20) trains, the next (at most 30) evaluates. scratch-real, finetune-mixed and
  finetune-auto.
* ``series``: one lab's own series, the nearest EMPS has to a user's images: the sphere
  images of one article (`SERIES`, 10 SEM micrographs of dense, touching microspheres).
  The 5 of its figure 2 train (``series n=5``), or the first of them alone
  (``series n=1``); the 5 of its other figures evaluate. finetune-mixed, finetune-real,
  scratch-real and finetune-auto. Left out of ``--select`` (e83de4878a, one of its training
  images, is a selection image). Not part of the selection images' exclusions (those
  were fixed before this design existed; none of its evaluation images is among them).

Settings are chosen with ``--select``: the cell's training images, scored on 20 sphere
images that no cell trains or evaluates on (`selection_ids`), never on the evaluation sets.

    nohup .venv/bin/python benchmarks/adapt.py --minutes 10 --out benchmarks/adapt_results.json \\
        > /tmp/adapt.log 2>&1 &
    .venv/bin/python benchmarks/adapt.py --table benchmarks/adapt_results.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EMPS_ROOT = ROOT.parent / "shared" / "data" / "emps"
BASE = ROOT / "benchmarks" / "models" / "base_other"
ARMS = {"scratch-real": ("scratch", 0), "scratch-mixed": ("scratch", 5),
        "finetune-real": (str(BASE), 0), "finetune-mixed": (str(BASE), 5),
        "finetune-auto": (str(BASE), "auto")}
PAPER = {"t5 n=5": (36, 74), "t5 n=10": (63, 86), "t5 n=20": (77, 88), "t5 n=30": (88, 92),
         "t3 cube": (79, 84), "t3 sphere": (84, 93), "t3 rod": (87, 93)}


def designs(data):
    """(cell name, arm, training ids, evaluation ids, synthetic per real) in run order."""
    spheres = list(np.array(data.with_shape("sphere").ids)
                   [np.random.default_rng(0).permutation(166)])
    eval5, pool5 = spheres[:30], spheres[30:]
    cells = []
    for n in (1, 5):
        for arm in ARMS:
            cells.append((f"t5 n={n}", arm, pool5[:n], eval5, ARMS[arm][1]))
    for j in range(3):
        for arm in ("scratch-real", "finetune-mixed"):
            cells.append((f"t4 source={pool5[j]}", arm, [pool5[j]], eval5,
                          50 if arm.endswith("mixed") else 0))
    for n in (10, 30):
        for arm in ARMS:
            cells.append((f"t5 n={n}", arm, pool5[:n], eval5, ARMS[arm][1]))
    for shape in ("sphere", "cube", "rod"):
        try:
            ids = data.with_shape(shape).ids
        except ValueError:  # a copy of EMPS with some classes only
            continue
        ids = list(np.array(ids)[np.random.default_rng(1).permutation(len(ids))])
        half = len(ids) // 2
        for arm in ("scratch-real", "finetune-mixed", "finetune-auto"):
            cells.append((f"t3 {shape}", arm, ids[:min(half, 20)], ids[half:half + 30],
                          ARMS[arm][1]))
    return cells


#: The EMPS article with the most sphere images (10 SEM micrographs of microspheres; DOI
#: as written in EMPS' metadata.csv) and the figure whose images train the series cell
SERIES = ("10.1016.j.apsusc.2020.145360", "gr2")


def series_cells(data):
    """The ``series`` design's cells: one article's sphere images, one figure trains."""
    import csv

    meta = Path(data.root) / "metadata.csv"
    if not meta.is_file():
        return []
    shapes = set(data.with_shape("sphere").ids)
    rows = [r for r in csv.DictReader(meta.open()) if r["doi"] == SERIES[0]
            and Path(r["filename"]).stem in shapes]
    train = sorted(Path(r["filename"]).stem for r in rows if r["locator"] == SERIES[1])
    evaluate = sorted(Path(r["filename"]).stem for r in rows if r["locator"] != SERIES[1])
    if not train or not evaluate:
        return []
    return [(f"series n={len(ids)}", arm, ids, evaluate, ARMS[arm][1])
            for ids in (train, train[:1])
            for arm in ("finetune-mixed", "finetune-real", "scratch-real", "finetune-auto")]


def selection_ids(data, n=20):
    """Sphere images that no cell trains or evaluates on, to choose settings with.

    The t5 pool after the 30 images that the largest t5 cell trains on, less every image of
    the t3 sphere cell (its training half and its evaluation images).
    """
    cells = designs(data)
    used = {i for _, _, train, evaluate, _ in cells for i in (*train, *evaluate)}
    spheres = list(np.array(data.with_shape("sphere").ids)
                   [np.random.default_rng(0).permutation(166)])
    return [str(i) for i in spheres[60:] if i not in used][:n]


def run_cell(data, name, arm, train_ids, eval_ids, n_syn, minutes, seed=0, extra=(), keep=None):
    from utilegen.segment import StarDist

    init = ARMS[arm][0]
    with tempfile.TemporaryDirectory(prefix="utilegen-adapt-") as tmp:
        tmp = Path(tmp)
        for sub, folder in (("images", "images"), ("masks", "segmaps")):
            (tmp / sub).mkdir()
            for i in train_ids:
                os.symlink(Path(data.root).resolve() / folder / f"{i}.png", tmp / sub / f"{i}.png")
        cmd = [sys.executable, "-m", "utilegen", "segment", "train",
               "--images", str(tmp / "images"), "--masks", str(tmp / "masks"),
               "--out", str(tmp / "model"), "--minutes", str(minutes),
               "--init", init, "--synthetic-per-real", str(n_syn), "--seed", str(seed), *extra]
        t = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = (time.time() - t) / 60
        if r.returncode != 0:
            return {"cell": name, "arm": arm, "error": r.stderr[-2000:]}
        model = StarDist.load(tmp / "model")
        if keep is not None:  # for later evaluation without retraining
            import shutil

            dest = kept_folder(keep, name, arm)
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(tmp / "model", dest)
    record = score(model, data, eval_ids)
    a = model.info["adaptation"]
    return {"cell": name, "arm": arm, "n_real": len(train_ids),
            "n_synthetic": (a["synthetic"] or {}).get("equivalent_pairs", 0),
            "train_ids": list(train_ids), "n_eval": len(eval_ids), "minutes_budget": minutes,
            "command_minutes": round(wall, 2), "steps": a["steps"], "scale": a["scale"]["chosen"],
            "split": a["split"]["kind"], "thresholds": a["thresholds"],
            "predict_scale": a["scale"]["predict"], "heldout": a["validation"],
            "kept": a.get("kept", "adapted"),
            # the train command's own clock: training, the reserve kept after it, and all of
            # adapt (an overrun of --minutes is traced with these)
            "adapt_minutes": {k: a.get(f"{k}_minutes") for k in ("train", "reserve", "total")},
            **record}


def kept_folder(keep, name, arm) -> Path:
    """Where ``--keep`` copies a cell's model."""
    return Path(keep) / f"{name} {arm}".replace(" ", "_").replace("=", "")


def score(model, data, eval_ids, brief=False) -> dict:
    """A cell's figures: `model` on the cell's evaluation images (all, matched, per mode).

    `brief`: all and matched only (no other scale modes, no per-image figures)."""
    from utilegen.segment._adapt import equivalent_diameters, validation_figures
    from utilegen.segment._data import as_image_and_labels

    pairs = [as_image_and_labels(*data.pair(data.ids.index(i)), name=i) for i in eval_ids]
    figures = validation_figures(model, pairs)
    # EMPS images span magnifications (the t5 evaluation set's particles: 10-400 px), which
    # a user's own series does not; scored also with the scale tried per image (labelled)
    a = model.info["adaptation"]
    # A user's own series has one magnification: the evaluation images whose median particle
    # is within 2x of the training annotations' median stand in for it (defined before any
    # result was seen; labelled "matched")
    d_train = a["annotations"]["diameter_median"]
    is_matched = [0.5 <= np.median(equivalent_diameters(y)) / d_train <= 2 for _, y in pairs]
    matched = [p for p, m in zip(pairs, is_matched) if m]
    match = validation_figures(model, matched) if matched else None
    if brief:
        return {**figures, "matched": None if match is None else {
            "n_images": len(matched), **{k: match[k] for k in ("f1_50", "f1_70",
                                                               "d50_relative_error")}}}
    ids = [i for i, m in zip(eval_ids, is_matched) if m]
    # the matched images under each way of choosing the scale (labelled; the thresholds
    # were chosen for the model's own predict_scale)
    modes = {}
    stored = model.predict_scale
    for mode in ("auto", "sweep", None):
        model.predict_scale = mode
        if matched:
            f = validation_figures(model, matched)
            modes[str(mode or f"fixed {model.config.scale:g}")] = {
                k: f[k] for k in ("f1_50", "f1_70", "recall_50", "d50_relative_error")}
    model.predict_scale = "auto"
    auto = validation_figures(model, pairs)
    model.predict_scale = stored
    return {**figures,
            "auto_scale": {k: auto[k] for k in ("f1_50", "f1_70", "d50_relative_error")},
            "matched_by_scale_mode": modes,
            "matched": None if match is None else {
                "n_images": len(matched), **{k: match[k] for k in ("f1_50", "f1_70",
                                                                   "d50_relative_error")},
                "per_image": per_image(model, matched, ids)}}


def per_image(model, pairs, ids) -> list[dict]:
    """Per image: F1@0.5, counts, and the median ratio of predicted to true equivalent
    diameter over the pairs matched at IoU 0.5 (a size bias, apart from missed particles)."""
    from stardist.matching import matching

    out = []
    for (image, truth), i in zip(pairs, ids):
        pred = model.predict(image).labels
        m = matching(truth, pred, thresh=0.5, report_matches=True)
        pairs_tp = [(t, p) for (t, p), iou in zip(m.matched_pairs, m.matched_scores)
                    if iou >= 0.5]
        at = np.bincount(truth.ravel())
        ap = np.bincount(pred.ravel())
        ratio = [np.sqrt(ap[p] / at[t]) for t, p in pairs_tp]
        out.append({"id": i, "f1_50": round(float(m.f1), 4), "n_true": int(m.n_true),
                    "n_pred": int(m.n_pred),
                    "tp_size_ratio": round(float(np.median(ratio)), 4) if ratio else None})
    return out


def rescore(data, keep, record, seed=0, select=None, split="auto", rule=None,
            brief=False) -> dict | None:
    """A kept cell's model with its thresholds chosen again by the present code, on the
    held-out part of its own training images (the train command's split, same seed), then
    scored as the cell was. No training and no evaluation image takes part in the choice.
    The adapted-or-base choice the train command made is not redone.

    With `select` (the selection ids), scored on those instead of the cell's evaluation
    images, with the old thresholds too (``rescored["before"]``); otherwise "before" is the
    record's own figures (None for a --select record, scored on the cell's evaluation
    images). None when the kept model is not the one of `record` (another run
    of the cell) or the split cannot be rebuilt.

    `brief`: as `score`'s.
    `rule`: None for `optimize_thresholds`' default (the middle of a flat top), or
    ``(prior, tolerance_particles)``: the threshold nearest `prior` (None: the base
    model's) among those within that many held-out particles of the best; `adapt` uses
    ``(FLAT_TOP_THRESHOLD, 0)`` (RESULTS.md, "Where held-out particles cannot choose the
    threshold").
    """
    from utilegen.segment import StarDist
    from utilegen.segment._adapt import holdout, validation_figures
    from utilegen.segment._data import as_image_and_labels

    model = StarDist.load(kept_folder(keep, record["cell"], record["arm"]))
    a = model.info["adaptation"]
    if a["steps"] != record["steps"] or model.thresholds != record["thresholds"]:
        return None  # the kept model is another run of this cell
    # the train command reads its folder in sorted order
    real = [as_image_and_labels(*data.pair(data.ids.index(i)), name=i)
            for i in sorted(record["train_ids"])]
    _, val, how = holdout(real, seed=seed, split=split)
    if how != a["split"]:
        return None  # trained with another seed or given validation pairs
    design = {(n, arm): e for n, arm, _, e, _ in designs(data) + series_cells(data)}
    # a --select record's model (trained on the cell's own training images) is scored on
    # the cell's evaluation images without --select
    cell = record["cell"].removeprefix("select ")
    if select is None and (cell, record["arm"]) not in design:
        return None
    eval_ids = select or design[(cell, record["arm"])]
    before = dict(model.thresholds)
    if select is not None:
        old = score(model, data, eval_ids, brief=brief)
        figures_before = {k: old[k] for k in ("f1_50", "f1_70", "d50_relative_error",
                                              "matched")}
    elif cell != record["cell"]:  # the record's figures are of the selection images
        figures_before = None
    else:
        figures_before = {k: record[k] for k in ("f1_50", "f1_70", "d50_relative_error",
                                                 "matched")}
    how_chosen = {}
    if rule is not None:
        prior, tolerance = rule
        if prior is None:
            base = a["base"]
            prior = StarDist.load(base).thresholds["prob"] if Path(str(base)).is_dir() else None
        how_chosen = {"prior": prior, "tolerance_particles": tolerance}
    try:
        model.optimize_thresholds(val, scale=model.predict_scale, **how_chosen)
    except ValueError as exc:  # no foreground on the held-out data
        return {"cell": record["cell"], "arm": record["arm"], "error": str(exc)}
    return {**{k: record[k] for k in ("cell", "arm", "n_real", "n_synthetic", "train_ids",
                                      "minutes_budget", "command_minutes", "steps",
                                      "scale", "split", "predict_scale", "kept")},
            "cell": ("select " if select else "") + record["cell"].removeprefix("select "),
            "n_eval": len(eval_ids),
            "rescored": {"thresholds_before": before, "before": figures_before,
                         "rule": how_chosen or "middle of the flat top"},
            "thresholds": dict(model.thresholds), "heldout": validation_figures(model, val),
            **score(model, data, eval_ids, brief=brief)}


def markdown(results) -> str:
    lines = [("| cell | arm | F1@0.5 | F1@0.7 | P / R @0.5 | D50 error | F1@0.5 / D50 error, "
              "scale per image | F1@0.5 / D50 error, matched magnification (images) | steps | "
              "min | paper real → mixed |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['cell']} | {r['arm']} | failed | | | | | | | | |")
            continue
        err = r["d50_relative_error"]
        paper = PAPER.get(r["cell"])
        arm = (r["arm"] + (" (base kept)" if r.get("kept") == "base" else "")
               + (f", {r['variant']}" if r.get("variant") else ""))
        lines.append(f"| {r['cell']} | {arm} | {r['f1_50']:.2f} | {r['f1_70']:.2f} | "
                     f"{r['precision_50']:.2f} / {r['recall_50']:.2f} | "
                     f"{'n/a' if err is None else f'{err:+.1%}'} | {_auto(r)} | {_matched(r)} | "
                     f"{r['steps']} | "
                     f"{r['command_minutes']:.1f} | "
                     + (f"{paper[0]} → {paper[1]}" if paper
                        else ("73-92 (mixed)" if r["cell"].startswith("t4") else ""))
                     + " |")
    return "\n".join(lines)


def _matched(r) -> str:
    m = r.get("matched")
    if not m:
        return "not measured" if "matched" not in r else "no image"
    err = m["d50_relative_error"]
    return f"{m['f1_50']:.2f} / {'n/a' if err is None else f'{err:+.1%}'} ({m['n_images']})"


def _auto(r) -> str:
    a = r.get("auto_scale")
    if not a:
        return ""
    err = a["d50_relative_error"]
    return f"{a['f1_50']:.2f} / {'n/a' if err is None else f'{err:+.1%}'}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "adapt_results.json")
    ap.add_argument("--only", nargs="+",
                    help="run only these cells (a cell name such as 't5 n=1', "
                         "or a design: t5, t4, t3, series)")
    ap.add_argument("--arms", nargs="+", choices=list(ARMS), help="run only these arms")
    ap.add_argument("--emps-root", type=Path, default=EMPS_ROOT)
    ap.add_argument("--device", help="passed to the train command (a labelled, lighter variant)")
    ap.add_argument("--workers", type=int, default=0, help="passed to the train command")
    ap.add_argument("--keep", type=Path, help="copy each cell's model into this folder")
    ap.add_argument("--select", action="store_true",
                    help="evaluate on the selection images (spheres that no cell trains or "
                         "evaluates on) instead of the cell's own: for choosing settings")
    ap.add_argument("--synthetic-per-real", type=float,
                    help="override the mixed arms' synthetic pairs per real pair (a variant)")
    ap.add_argument("--train-args", default="",
                    help="more arguments for the train command (a labelled variant)")
    ap.add_argument("--rescore", nargs=2, type=Path, metavar=("RECORDS", "KEPT"),
                    help="choose the thresholds of the models kept (--keep) in folder KEPT "
                         "again with the present code, for the cells in the file RECORDS, and "
                         "score them again (no training); written to --out")
    ap.add_argument("--rule", default=None,
                    help="with --rescore: 'middle' (the middle of a flat top), "
                         "'prior:K' or 'prior:K@P' (the threshold nearest the base model's, "
                         "or P, among those within K held-out particles of the best) or "
                         "'fixed:T' (T; to score a grid); default: adapt's own")
    ap.add_argument("--brief", action="store_true",
                    help="with --rescore: the figures on all and matched images only")
    ap.add_argument("--table", type=Path,
                    help="print the results in this file as Markdown and exit")
    args = ap.parse_args()
    if args.table:
        print(markdown(json.loads(args.table.read_text())))
        return
    from utilegen.datasets import emps

    data = emps(args.emps_root)
    if args.rescore:
        records, kept = args.rescore
        if "--out" not in sys.argv or args.out.resolve() == records.resolve():
            ap.error("--rescore writes a new file: give --out, other than RECORDS")
        out, select = [], selection_ids(data) if args.select else None
        if args.rule is None:  # adapt's own
            from utilegen.segment._adapt import FLAT_TOP_THRESHOLD

            rule = (FLAT_TOP_THRESHOLD, 0.0)
        elif args.rule == "middle":
            rule = None
        elif args.rule.startswith("prior:"):  # prior:K (the base's threshold) or prior:K@P
            k, _, p = args.rule.split(":", 1)[1].partition("@")
            rule = (float(p) if p else None, float(k))
        elif args.rule.startswith("fixed:"):  # a probability threshold given, for a grid
            rule = (float(args.rule.split(":", 1)[1]), float("inf"))
        else:
            ap.error(f"--rule must be 'middle', 'prior:K' or 'fixed:T', got {args.rule!r}")
        for r in json.loads(records.read_text()):
            if "error" in r or not kept_folder(kept, r["cell"], r["arm"]).is_dir():
                continue
            if args.only and r["cell"] not in args.only and not any(
                    r["cell"].startswith(o + " ") for o in args.only):
                continue
            if args.arms and r["arm"] not in args.arms:
                continue
            # the train command's seed and split, from a --train-args "--seed N --split S"
            # variant
            words = r.get("variant", "").split()
            seed = int(words[words.index("--seed") + 1]) if "--seed" in words else 0
            split = words[words.index("--split") + 1] if "--split" in words else "auto"
            new = rescore(data, kept, r, seed=seed, select=select, split=split, rule=rule,
                          brief=args.brief)
            if new is None:
                continue
            out.append(new)
            tmp = args.out.with_suffix(".tmp")
            tmp.write_text(json.dumps(out, indent=1))
            tmp.replace(args.out)
            print(json.dumps({k: out[-1].get(k) for k in ("cell", "arm", "thresholds", "f1_50",
                                                           "matched", "rescored", "error")}),
                  flush=True)
        return
    extra = (["--device", args.device] if args.device else []) + (
        ["--workers", str(args.workers)] if args.workers else []) + args.train_args.split()
    select = selection_ids(data) if args.select else None
    results = json.loads(args.out.read_text()) if args.out.is_file() else []
    done = {(r["cell"], r["arm"]) for r in results if "error" not in r}
    # the series cells stay out of --select: a training image of theirs is a selection image
    cells = designs(data) + ([] if select is not None else series_cells(data))
    for name, arm, train_ids, eval_ids, n_syn in cells:
        key = f"select {name}" if select is not None else name
        if (key, arm) in done or (args.only and name not in args.only
                                  and not any(name.startswith(o + " ") for o in args.only)):
            continue
        if args.arms and arm not in args.arms:
            continue
        if args.synthetic_per_real is not None and n_syn and n_syn != "auto":
            n_syn = args.synthetic_per_real
        if select is not None:
            name, eval_ids = key, select
        r = run_cell(data, name, arm, train_ids, eval_ids, n_syn, args.minutes, extra=extra,
                     keep=args.keep)
        variant = extra + ([f"--synthetic-per-real {n_syn:g}"]
                           if args.synthetic_per_real is not None and n_syn else [])
        if variant:
            r["variant"] = " ".join(variant)
        results = [x for x in results if (x["cell"], x["arm"]) != (name, arm)] + [r]
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(args.out)
        print(json.dumps({k: v for k, v in r.items() if k not in ("train_ids", "heldout")}),
              flush=True)


if __name__ == "__main__":
    main()
