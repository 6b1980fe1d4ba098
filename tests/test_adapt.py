"""Few-shot adaptation (`segment.adapt`, `StarDist.fine_tune`, `utilegen segment train`).

Tiny models on tiny rendered images: each training call is bounded by its `minutes`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from utilegen.datasets import sample_pair
from utilegen.segment import StarDist, StarDistConfig, adapt
from utilegen.segment._adapt import (
    annotation_stats,
    choose_scale,
    equivalent_diameters,
    holdout,
    synthetic_like,
)

torch = pytest.importorskip("torch")

TINY = {"base_filters": 8, "feature_channels": 16, "patch_size": 64, "unet_depth": 2,
        "n_rays": 16, "learning_rate": 3e-3}


def disks(shape, centres, radius) -> np.ndarray:
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.uint16)
    for i, (r, c) in enumerate(centres, 1):
        labels[(rr - r) ** 2 + (cc - c) ** 2 <= radius**2] = i
    return labels


def rendered(n, size=96, seed=0):
    return [sample_pair((size, size), particles=6, rng=seed + i) for i in range(n)]


# ----------------------------------------------------------------- annotations and scale
def test_equivalent_diameters_of_disks_and_border_particles():
    labels = disks((100, 100), [(30, 30), (60, 60), (0, 50)], 10)  # the third is cut
    d = equivalent_diameters(labels)
    assert len(d) == 2 and np.allclose(d, 20, rtol=0.05)
    assert len(equivalent_diameters(labels, inner_only=False)) == 3


def test_annotation_stats_size_density_and_touching():
    apart = disks((200, 200), [(40, 40), (40, 120), (120, 40), (120, 120)], 12)
    stats = annotation_stats([(np.zeros_like(apart), apart)])
    assert stats["n_particles"] == 4 and stats["diameter_median"] == pytest.approx(24, rel=0.05)
    assert stats["particles_per_megapixel"] == pytest.approx(4 / 0.04)
    assert stats["touching_fraction"] == 0
    touching = disks((100, 100), [(50, 30), (50, 54)], 12)  # centres 24 px apart: touching
    assert annotation_stats([(np.zeros_like(touching), touching)])["touching_fraction"] == 1
    with pytest.raises(ValueError, match="no particles"):
        annotation_stats([(np.zeros((10, 10)), np.zeros((10, 10), np.uint16))])


@pytest.mark.parametrize("diameter, scale", [(40, 1.0), (80, 0.5), (400, 0.1), (10, 2.0),
                                             (110, 0.36), (4000, 0.1)])
def test_choose_scale_brings_particles_to_the_target_size(diameter, scale):
    assert choose_scale(diameter) == pytest.approx(scale)


def test_choose_scale_rejects_nonsense():
    with pytest.raises(ValueError, match="median_diameter"):
        choose_scale(0)


def test_holdout_whole_images_or_spatial_quarter():
    pairs = [(np.zeros((40, 60)), disks((40, 60), [(20, 10), (20, 50)], 5)) for _ in range(10)]
    train, val, how = holdout(pairs, seed=0)  # from 10 pairs on, 2 whole images validate
    assert (len(train), len(val), how["kind"]) == (8, 2, "images")
    assert sorted(how["train"] + how["val"]) == list(range(10))
    assert holdout(pairs[:9])[2]["kind"] == "spatial"
    train, val, how = holdout(pairs[:1])
    assert how["kind"] == "spatial"
    assert train[0][0].shape == (40, 45) and val[0][0].shape == (40, 15)  # longer side cut
    # the particle in the held-out quarter is there, relabelled from 1
    assert val[0][1].max() == 1 and train[0][1].max() == 1


def test_holdout_split_can_be_chosen():
    pairs = [(np.zeros((40, 60)), disks((40, 60), [(20, 10), (20, 50)], 5)) for _ in range(5)]
    train, val, how = holdout(pairs, split="spatial")
    # a quarter of every image validates, not one whole image
    assert how["kind"] == "spatial" and len(train) == len(val) == 5
    assert all(t[0].shape == (40, 45) and v[0].shape == (40, 15) for t, v in zip(train, val))
    train, val, how = holdout(pairs[:2], split="images")
    assert (len(train), len(val), how["kind"]) == (1, 1, "images")
    with pytest.raises(ValueError, match="2 or more pairs"):
        holdout(pairs[:1], split="images")
    with pytest.raises(ValueError, match="split must be one of"):
        holdout(pairs, split="kfold")


def test_synthetic_pairs_match_the_annotated_size_and_density():
    real = [(im, m.labels) for im, m in rendered(2, size=128)]
    stats = annotation_stats(real)
    ds, settings = synthetic_like(real, 6, stats=stats, seed=3)
    lo, hi = settings["compositor"]["particles_per_image"]
    expected = stats["particles_per_megapixel"] * 128 * 128 / 1e6
    assert lo <= expected <= hi
    counts = [ds.sample(i).params["requested"] for i in range(6)]
    assert 0.6 * expected <= np.mean(counts) <= 1.4 * expected
    sizes = np.concatenate([equivalent_diameters(ds.pair(i)[1].labels) for i in range(6)])
    assert np.median(sizes) == pytest.approx(stats["diameter_median"], rel=0.35)
    assert ds.pair(0)[0].shape == (128, 128)
    # a wider scale range spreads the sizes around the annotated ones
    wide, settings = synthetic_like(real, 6, stats=stats, seed=3, scale=(0.5, 2.0))
    assert settings["compositor"]["scale"] == [0.5, 2.0]
    drawn = [p["scale"] for i in range(6) for p in wide.sample(i).params["particles"]]
    assert min(drawn) < 0.8 and max(drawn) > 1.25 and all(0.5 <= d <= 2.0 for d in drawn)


def test_synthetic_pairs_leave_out_pieces_of_particles():
    # four whole disks, and the sliver of a fifth that an inset hides (a rectangle of
    # ground painted over it, the annotation cut with it): the sliver is a piece, not a
    # particle, and is never pasted; the whole disks all are
    from utilegen.segment._adapt import MIN_PIECE

    labels = disks((200, 200), [(40, 40), (40, 130), (130, 50), (140, 140), (100, 165)], 16)
    labels[60:140, 154:] = 0  # hidden by an inset
    sliver = np.count_nonzero(labels == 5)
    mean_area = np.bincount(labels.ravel())[1:].mean()
    assert 0 < sliver < MIN_PIECE * mean_area
    image = np.where(labels > 0, 70, 190).astype(np.float32)
    ds, settings = synthetic_like([(image, labels)], 4, seed=0)
    assert settings["particles"] == 4 and settings["min_piece"] == MIN_PIECE
    assert sorted(p.area for p in ds.particles) == sorted(
        np.count_nonzero(labels == k) for k in range(1, 5))
    # it was left out as a piece, not as a border particle
    from utilegen.synth import ParticlePool

    assert sum(not p.touches_border for p in ParticlePool.from_pairs([(image, labels)])) == 5


def test_synthetic_pairs_keep_the_crowding_of_each_magnification():
    # one image of many small particles, one of a few large ones: each synthetic image
    # follows its own source, not the pooled density (which would thin out the small ones)
    crowded = sample_pair((160, 160), particles=30, radius=(4, 5), rng=1)
    sparse = sample_pair((160, 160), particles=3, radius=(14, 16), rng=2)
    real = [(im, m.labels) for im, m in (crowded, sparse)]
    ds, _ = synthetic_like(real, 12, seed=0)
    by_source = {0: [], 1: []}
    for i in range(12):
        item = ds.sample(i)
        source = ds.backgrounds[item.params["background"]["index"]].source
        by_source[source].append(item.mask.count)
    assert by_source[0] and by_source[1]
    assert np.mean(by_source[0]) >= 0.6 * crowded[1].count
    assert np.mean(by_source[1]) <= 1.5 * sparse[1].count
    # "auto" synthetic scale: narrow across magnifications (the real images span sizes) and
    # with many whole particles; 0.5-2 with few at one magnification, less where large
    # particles would not fit the canvas
    from utilegen.segment._adapt import FEW_PARTICLES, _synthetic_scale, several_magnifications

    def auto_scale(pairs):
        stats = annotation_stats(pairs)
        return _synthetic_scale(pairs, stats, several=several_magnifications(stats))

    assert several_magnifications(annotation_stats(real))  # radius 4-5 against 14-16
    assert auto_scale(real) == (0.8, 1.25)
    small = disks((200, 200), [(40, 40), (40, 120), (120, 60), (150, 150)], 8)
    one = [(small.astype(np.float32), small), (small.astype(np.float32), small)]
    assert not several_magnifications(annotation_stats(one))
    assert auto_scale(one) == (0.5, 2.0)
    large = disks((100, 100), [(50, 50)], 35)
    big = [(large.astype(np.float32), large)]
    lo, hi = auto_scale(big)
    assert lo == 0.5 and hi == 1.25
    # a dense layer of one size: enough whole particles show the material's own spread
    centres = [(r, c) for r in range(12, 200, 24) for c in range(12, 200, 24)]
    layer = disks((200, 200), centres, 10)
    dense = [(layer.astype(np.float32), layer)]
    stats = annotation_stats(dense)
    assert stats["n_whole"] >= FEW_PARTICLES > annotation_stats(one)["n_whole"]
    assert not several_magnifications(stats) and auto_scale(dense) == (0.8, 1.25)
    # synthetic share: the paper's 5 per real pair, 1 for a dense layer of touching particles
    from utilegen.segment._adapt import synthetic_share

    touching = disks((200, 200), [(r, c) for r in range(12, 200, 20) for c in range(12, 200, 20)],
                     10)
    packed = annotation_stats([(touching.astype(np.float32), touching)])
    assert packed["touching_fraction"] > 0.5 and packed["n_whole"] >= FEW_PARTICLES
    assert synthetic_share(packed)[0] == 1
    assert synthetic_share(stats)[0] == 5                      # many, but apart
    assert synthetic_share(annotation_stats(one))[0] == 5      # few
    # and their synthetic pairs are packed as the layer was; particles kept apart are not
    image = np.where(touching > 0, 60, 190).astype(np.float32)
    assert synthetic_like([(image, touching)], 2)[1]["compositor"]["packed"]
    assert not synthetic_like(one, 2)[1]["compositor"]["packed"]


# ------------------------------------------------------------------------- adaptation
@pytest.fixture(scope="module")
def adapted():
    base = StarDist(StarDistConfig(**TINY), seed=1)
    base.thresholds = {"prob": 0.5, "nms": 0.3}
    weights = {k: v.clone() for k, v in base.network.state_dict().items()}
    train = rendered(3, size=96, seed=0)
    val = rendered(2, size=96, seed=50)
    # a step cap as well as the clock: the same training on a busy or an idle machine
    model = base.fine_tune(train, val=val, minutes=6, max_steps=400, synthetic_per_real=1,
                           progress=False)
    return base, weights, model, val


def test_fine_tune_improves_validation_f1_and_leaves_the_base_alone(adapted):
    from utilegen.segment._adapt import validation_figures

    base, weights, model, val = adapted
    val = [(im, m.labels) for im, m in val]
    before = validation_figures(base, val)["f1_50"]
    after = model.info["adaptation"]["validation"]["f1_50"]
    assert after > before + 0.3 and after >= 0.6, (before, after)
    assert all(torch.equal(weights[k], v) for k, v in base.network.state_dict().items())
    assert model is not base and model.predict_scale == model.config.scale


def test_several_magnifications_predict_with_the_sweep():
    """Annotated images whose particle sizes differ 4-fold: one fixed scale cannot serve
    both, and the one-pass "auto" rule misreads a narrowly adapted model, so the sweep."""
    def image_of(labels):
        return np.where(labels > 0, 60, 190).astype(np.uint8)

    small = disks((96, 96), [(20, 20), (20, 60), (60, 20), (60, 60), (80, 40)], 5)
    large = disks((128, 128), [(32, 32), (32, 92), (92, 60)], 20)
    pairs = [(image_of(small), small), (image_of(large), large),
             (image_of(small), small), (image_of(large), large)]
    base = StarDist(StarDistConfig(**TINY), seed=1)
    model = base.fine_tune(pairs, val=pairs[:2], minutes=1, max_steps=2,
                           synthetic_per_real=0, progress=False)
    assert model.info["adaptation"]["scale"]["predict"] == "sweep" == model.predict_scale


def test_adaptation_records_provenance_and_honours_minutes(adapted):
    _, _, model, _ = adapted
    a = model.info["adaptation"]
    assert a["base"] == "model" and a["pairs"] == 3 and a["split"]["kind"] == "given"
    # synthetic pairs composed on the fly, as many patches as 3 stored pairs would give
    assert a["synthetic"]["on_the_fly"] and a["synthetic"]["equivalent_pairs"] == 3
    assert a["synthetic"]["share_of_patches"] == 0.5 and a["annotations"]["n_particles"] > 0
    assert a["scale"]["from"] == "annotated median diameter"
    assert {"f1_50", "f1_70", "d50_relative_error"} <= set(a["validation"])
    assert a["steps"] == 400


def test_minutes_are_honoured_threshold_search_included():
    model = adapt(rendered(2), init="scratch", minutes=0.2, synthetic_per_real=1, progress=False,
                  config_changes={k: v for k, v in TINY.items() if k != "learning_rate"})
    a = model.info["adaptation"]
    assert a["steps"] > 0 and a["total_minutes"] <= 0.2 * 1.25 + 0.05
    # the reserve after training is recorded: 12 s at least, capped at 40 % of the budget,
    # so here the cap (4.8 s of 12)
    assert a["reserve_minutes"] == pytest.approx(0.4 * 0.2, abs=1e-3)
    # the budget counts from `started` (the command line's own start): 6 s already spent
    # come off the training time and are part of the total
    import time

    model = adapt(rendered(2), init="scratch", minutes=0.2, synthetic_per_real=1,
                  progress=False, started=time.monotonic() - 6, split="images",
                  config_changes={k: v for k, v in TINY.items() if k != "learning_rate"})
    b = model.info["adaptation"]
    assert b["split"]["kind"] == "images" and b["val_pairs"] == 1  # the split asked for
    assert 0.1 <= b["total_minutes"] <= 0.2 * 1.25 + 0.05
    assert b["train_minutes"] >= 0.1


def test_adapt_validates_arguments():
    pairs = rendered(1)
    with pytest.raises(ValueError, match="minutes"):
        adapt(pairs, init="scratch", minutes=0)
    with pytest.raises(ValueError, match="synthetic_per_real"):
        adapt(pairs, init="scratch", synthetic_per_real=-1)
    for bad in ((2.0, 1.0), (0, 1), "wide", (1, float("nan"))):
        with pytest.raises(ValueError, match="synthetic_scale"):
            adapt(pairs, init="scratch", synthetic_scale=bad)
    with pytest.raises(ValueError, match="init"):
        adapt(pairs, init=3.5)
    with pytest.raises(ValueError, match="split"):
        adapt(pairs, init="scratch", split="kfold")
    with pytest.raises(FileNotFoundError, match="shipped"):
        adapt(pairs, init="no-such-model")


def test_cli_train_writes_a_model_that_analyze_uses(tmp_path, capsys):
    import argparse

    from utilegen import analyze
    from utilegen.io import write_image, write_mask
    from utilegen.segment._cli import add_cli

    for i, (image, mask) in enumerate(rendered(2, size=96)):
        write_image(tmp_path / "images" / f"im{i}.tif", image)
        write_mask(tmp_path / "masks" / f"im{i}.tif", mask)
    parser = argparse.ArgumentParser(prog="utilegen")
    add_cli(parser.add_subparsers(dest="command"))
    argv = ["segment", "train", "--images", str(tmp_path / "images"), "--masks",
            str(tmp_path / "masks"), "--out", str(tmp_path / "model"), "--minutes", "0.15",
            "--init", "scratch", "--n-rays", "16"]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    info = json.loads((tmp_path / "model" / "info.json").read_text())
    a = info["adaptation"]
    # two 96 px images: their held-out quarters hold a few particles, and the user is told
    from utilegen.segment._adapt import FEW_HELDOUT

    assert 0 < a["validation"]["n_true"] < FEW_HELDOUT
    printed = capsys.readouterr().out
    assert "held-out particles: these figures" in printed
    assert "expect lower figures on other samples" in printed  # the held-out quarters
    assert "synthetic: 5 per real pair (the paper's ratio), particle scale 0.5-" in printed
    assert info["kind"] == "stardist" and "utilegen_version" in info
    assert a["base"] == "scratch" and a["pair_ids"] == ["im0", "im1"]
    assert a["split"]["kind"] == "spatial" and a["images"].endswith("images")
    # the default synthetic share: a few particles apart, the paper's 5 per real pair
    assert a["synthetic"]["synthetic_per_real"] == 5
    assert a["synthetic"]["synthetic_per_real_from"] == "the paper's ratio"
    report = analyze(tmp_path / "images", segmenter=str(tmp_path / "model"))
    assert len(report.ids) == 2
    # the report carries the model's held-out figures, its own error bar
    held = report.settings["segmenter_heldout"]
    assert held["f1_50"] == a["validation"]["f1_50"]
    assert held["d50_relative_error"] == a["validation"]["d50_relative_error"]
    assert analyze(tmp_path / "images").settings["segmenter_heldout"] is None  # shipped
    from utilegen.cli import main

    assert main(["analyze", str(tmp_path / "images"), "--model", str(tmp_path / "model"),
                 "--out", str(tmp_path / "report"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "segmenter on its held-out annotated images" in out and "a rough figure" in out
    with pytest.raises(FileExistsError):
        args = parser.parse_args(argv)
        args.func(args)


def test_threshold_search_reuses_one_nms_exactly():
    from utilegen.segment._predict import above, instances, render, suppress

    rng = np.random.default_rng(0)
    n = 400
    points = rng.integers(5, 95, (n, 2))
    probs = rng.uniform(0.2, 1, n).astype(np.float32)
    dists = rng.uniform(2, 9, (n, 16)).astype(np.float32)
    kept = suppress(points, probs, dists, prob_thresh=0.3, nms_thresh=0.3)
    for t in (0.3, 0.45, 0.6, 0.8, 0.95):
        direct = instances(points, probs, dists, (100, 100), prob_thresh=t, nms_thresh=0.3)[0]
        assert np.array_equal(direct, render(*above(kept, t), (100, 100))[0])


def test_fit_with_patch_worker_processes():
    model = StarDist(StarDistConfig(**TINY), seed=0)
    history = model.fit(rendered(2), epochs=1, steps_per_epoch=2, workers=1, progress=False)
    assert history[0]["steps"] == 2 and np.isfinite(history[0]["loss"])


def test_load_by_name_or_folder(tmp_path):
    from utilegen.segment import list_pretrained, load

    assert "emps" in list_pretrained()
    model = StarDist(StarDistConfig(**TINY))
    model.save(tmp_path / "emps")
    assert load(tmp_path / "emps").config.base_filters == 8  # an existing folder wins
    with pytest.raises(FileNotFoundError, match="shipped: emps"):
        load(tmp_path / "nothing")


def test_trust_warnings_for_size_confidence_and_nothing_found():
    from utilegen import InstanceMask

    model = StarDist(StarDistConfig(**TINY))
    model.thresholds = {"prob": 0.6, "nms": 0.3}
    model.info["trained_diameter_px"] = [20, 40]
    big = InstanceMask(disks((400, 400), [(200, 200)], 100))  # diameter 200 > 2 x 40
    sure, unsure = {"prob": np.array([0.95])}, {"prob": np.array([0.62, 0.65])}
    assert any("far outside the trained range" in w for w in model.trust_warnings(big, sure))
    ok = InstanceMask(disks((100, 100), [(50, 50)], 15))
    assert model.trust_warnings(ok, sure) == []
    assert any("low detection confidence" in w for w in model.trust_warnings(ok, unsure))
    empty = InstanceMask(np.zeros((10, 10), np.uint16))
    assert "no particles found" in model.trust_warnings(empty, {"prob": np.array([])})[0]


def test_analyze_reports_untrustworthy_images(monkeypatch):
    from utilegen import analyze

    model = StarDist(StarDistConfig(**TINY))
    model.info["trained_diameter_px"] = [2, 4]
    image, _ = rendered(1, size=96)[0]
    report = analyze([image], segmenter=model, ids=["mine"])
    assert report.warnings and all(w.startswith("mine: ") for w in report.warnings)


def test_main_objects_at_the_top_level_lazily():
    import subprocess
    import sys

    code = ("import sys, utilegen\n"
            "assert 'torch' not in sys.modules\n"
            "names = ['ParticlePool', 'BackgroundPool', 'Compositor', 'Augmenter',\n"
            "         'SyntheticDataset', 'StarDist', 'ShapeClassifier', 'measure',\n"
            "         'SizeDistribution', 'InstanceMask']\n"
            "assert set(names) <= set(dir(utilegen))\n"
            "from utilegen.segment import StarDist\n"
            "assert utilegen.StarDist is StarDist and all(getattr(utilegen, n) for n in names)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr


def test_the_base_is_kept_when_adaptation_makes_things_worse():
    """A base that already segments the rendered particles, 'adapted' by a learning rate that
    wrecks it in a few steps: the held-out comparison returns the base."""
    base = StarDist(StarDistConfig(**TINY), seed=1)
    base.fit(rendered(3, seed=10), epochs=1, steps_per_epoch=150, progress=False)
    model = base.fine_tune(rendered(3), val=rendered(2, seed=50), minutes=2, max_steps=25,
                           synthetic_per_real=0, learning_rate=0.9, progress=False)
    a = model.info["adaptation"]
    assert a["kept"] == "base" and a["base_validation"]["f1_50"] > 0.5
    assert a["validation"] == a["base_validation"]
