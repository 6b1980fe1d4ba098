"""utilegen.segment: targets, decoding, training, tiled prediction, persistence, errors."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest

from utilegen.datasets import sample_pair
from utilegen.masks import InstanceMask
from utilegen.segment import StarDist, StarDistConfig, evaluate, normalize, targets

torch = pytest.importorskip("torch")

TINY = {"base_filters": 8, "feature_channels": 32, "patch_size": 64, "unet_depth": 2,
        "n_rays": 16, "learning_rate": 3e-3}


def disk_labels(shape=(96, 96), centres=((30, 30), (60, 64)), radius=12) -> np.ndarray:
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.uint16)
    for i, (r, c) in enumerate(centres, 1):
        labels[(rr - r) ** 2 + (cc - c) ** 2 <= radius**2] = i
    return labels


def square_labels() -> np.ndarray:
    labels = np.zeros((80, 80), np.uint16)
    labels[10:31, 10:31] = 1  # 21 x 21, centre (20, 20)
    labels[40:70, 45:60] = 2
    return labels


def decode(labels, grid, n_rays=32, nms=0.3):
    """Targets of a label image -> candidates -> NMS -> label image."""
    from utilegen.segment._predict import instances

    prob, dist = targets(labels, n_rays, grid)
    rows, cols = np.nonzero(prob > 0.3)
    points = np.stack([rows, cols], axis=1) * grid
    out, details = instances(points, prob[rows, cols], dist[rows, cols], labels.shape,
                             prob_thresh=0.3, nms_thresh=nms)
    return out, details


# ---------------------------------------------------------------- configuration
def test_config_defaults_are_stardist2d():
    c = StarDistConfig()
    assert (c.n_rays, c.grid, c.unet_depth, c.base_filters, c.kernel_size, c.feature_channels,
            c.patch_size, c.batch_size, c.learning_rate, c.dist_loss_weight) == \
        (32, 2, 3, 32, 3, 128, 256, 4, 3e-4, 0.2)
    assert (c.normalize_low, c.normalize_high) == (1.0, 99.8)


def test_config_json_round_trip_and_replace():
    c = StarDistConfig(n_rays=64, grid=1)
    assert StarDistConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert c.replace(n_rays=16).n_rays == 16 and c.n_rays == 64
    with pytest.raises(ValueError, match="unknown StarDistConfig keys"):
        StarDistConfig.from_dict({**c.to_dict(), "rays": 3})


@pytest.mark.parametrize("kwargs, name", [
    ({"n_rays": 2}, "n_rays"), ({"grid": 3}, "grid"), ({"patch_size": 100}, "patch_size"),
    ({"learning_rate": 0}, "learning_rate"), ({"foreground_fraction": 1.5}, "foreground_fraction"),
    ({"normalize_low": 99.9}, "normalize_low"), ({"unet_depth": 0}, "unet_depth"),
])
def test_config_range_checks_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        StarDistConfig(**kwargs)


def test_config_is_frozen():
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        StarDistConfig().n_rays = 8


# -------------------------------------------------------------------- targets
def test_prob_target_is_normalized_distance_to_background():
    labels = disk_labels()
    prob, _ = targets(labels, 32, 1)
    assert prob.shape == labels.shape
    assert prob[labels == 0].max() == 0
    assert prob[30, 30] == pytest.approx(1.0) and prob[60, 64] == pytest.approx(1.0)
    # on the edge of a radius-12 disk the distance is 1 of 12 or 13
    assert 0 < prob[30, 30 + 12] < 0.1


def test_dist_target_of_a_disk_centre_is_its_radius():
    labels = disk_labels(radius=12)
    _, dist = targets(labels, 32, 1)
    assert dist.shape == labels.shape + (32,)
    assert np.all(np.abs(dist[30, 30] - 12.5) <= 1.0)
    assert np.all(dist[labels == 0] == 0)


def test_dist_target_of_a_square_centre():
    _, dist = targets(square_labels(), 4, 1)
    # rays 0..3 point along the axes: half the side (10.5 px to the outer pixel edge)
    np.testing.assert_allclose(dist[20, 20], 11, atol=1)


@pytest.mark.parametrize("grid", [2, 4])
def test_targets_on_a_grid_are_the_full_targets_subsampled(grid):
    labels = sample_pair((96, 96), particles=8, rng=2)[1].labels
    prob1, dist1 = targets(labels, 16, 1)
    probg, distg = targets(labels, 16, grid)
    np.testing.assert_allclose(distg, dist1[::grid, ::grid], atol=1e-5)
    assert probg.shape == prob1[::grid, ::grid].shape
    np.testing.assert_array_equal(probg > 0, prob1[::grid, ::grid] > 0)


def test_targets_match_the_stardist_functions():
    from stardist.geometry import star_dist
    from stardist.utils import edt_prob

    labels = sample_pair((64, 64), particles=5, rng=4)[1].labels
    prob, dist = targets(labels, 32, 1)
    np.testing.assert_allclose(prob, edt_prob(labels), atol=1e-6)
    np.testing.assert_allclose(dist, star_dist(labels, 32), atol=1e-4)


@pytest.mark.parametrize("grid", [1, 2])
@pytest.mark.parametrize("make", [disk_labels, square_labels, lambda: sample_pair(
    (128, 128), particles=12, touching=0.0, rng=5)[1].labels])
def test_targets_decoded_through_nms_give_f1_one(grid, make):
    labels = make()
    out, details = decode(labels, grid)
    df = evaluate([out], [(np.zeros(labels.shape), labels)], iou=0.5)
    overall = df[df.image == "all"].iloc[0]
    assert overall.f1 == 1.0
    assert overall.n_pred == len(np.unique(labels)) - 1
    assert details["coord"].shape == (overall.n_pred, 2, 32)


def test_normalize_maps_percentiles_to_zero_and_one():
    image = np.arange(1000, dtype=np.uint16).reshape(20, 50)
    x = normalize(image, 0, 100)
    assert x.dtype == np.float32 and x.min() == 0 and x.max() == pytest.approx(1)
    with pytest.raises(ValueError, match="2-D"):
        normalize(np.zeros((2, 3, 4)))


# ----------------------------------------------------------------- evaluation
def test_evaluate_known_answers():
    truth = InstanceMask(disk_labels())
    only_first = InstanceMask((truth.labels == 1).astype(np.uint16))
    empty = InstanceMask(np.zeros(truth.shape, np.uint16))
    pairs = [(np.zeros(truth.shape), truth)] * 3
    df = evaluate([truth, only_first, empty], pairs, iou=(0.5, 0.7), names=["a", "b", "c"])
    per = df[df.image != "all"].set_index(["image", "iou"])
    assert per.loc[("a", 0.5), "f1"] == 1.0
    assert per.loc[("b", 0.5), "precision"] == 1.0 and per.loc[("b", 0.5), "recall"] == 0.5
    assert per.loc[("c", 0.7), "recall"] == 0.0
    overall = df[df.image == "all"].set_index("iou")
    assert overall.loc[0.5, "tp"] == 3 and overall.loc[0.5, "fn"] == 3
    assert overall.loc[0.5, "recall"] == pytest.approx(0.5)
    assert set(df.columns) >= {"precision", "recall", "f1", "accuracy", "panoptic_quality"}


def test_evaluate_rejects_bad_input():
    pairs = [(np.zeros((8, 8)), np.zeros((8, 8), np.uint16))]
    with pytest.raises(ValueError, match="predictions"):
        evaluate([], pairs)
    with pytest.raises(ValueError, match="iou"):
        evaluate([np.zeros((8, 8), np.uint16)], pairs, iou=1.5)
    with pytest.raises(ValueError, match="shape"):
        evaluate([np.zeros((9, 8), np.uint16)], pairs)


# --------------------------------------------------------------------- network
def test_network_shapes_and_parameter_count_of_the_defaults():
    model = StarDist()
    n = sum(p.numel() for p in model.network.parameters())
    assert 1.3e6 < n < 1.5e6  # StarDist2D's default U-Net has about 1.4 M parameters
    with torch.inference_mode():
        prob, dist = model.network(torch.zeros(1, 1, 64, 96))
    assert prob.shape == (1, 1, 32, 48) and dist.shape == (1, 32, 32, 48)
    assert torch.all((prob >= 0) & (prob <= 1))


@pytest.fixture(scope="module")
def trained():
    """A tiny model overfitted on one rendered image (about 10-20 s on 1 thread)."""
    torch.set_num_threads(1)
    pair = sample_pair((128, 128), particles=10, radius=(8, 14), touching=0.2, rng=3)
    model = StarDist(StarDistConfig(**TINY), seed=0)
    before = evaluate(model.predict_many([pair[0]], prob_thresh=0.5), [pair], iou=0.5)
    model.fit([pair], [pair], epochs=3, steps_per_epoch=40, seed=0, progress=False)
    model.optimize_thresholds([pair], nms_threshs=(0.3, 0.4))
    return model, pair, before


def test_tiny_model_overfits_one_image(trained):
    model, pair, before = trained
    after = evaluate(model, [pair], iou=(0.5,))
    f1_before = before[before.image == "all"].f1.iloc[0]
    f1_after = after[after.image == "all"].f1.iloc[0]
    assert f1_before < 0.2
    assert f1_after >= 0.8
    assert len(model.history) == 3 and model.history[-1]["loss"] < model.history[0]["loss"]
    assert 0 < model.thresholds["prob"] < 1 and model.thresholds["nms"] in (0.3, 0.4)


def test_predict_returns_mask_and_details(trained):
    model, pair, _ = trained
    mask, details = model.predict(pair[0], return_details=True)
    assert isinstance(mask, InstanceMask) and mask.shape == pair[0].shape
    assert len(details["prob"]) == mask.count == details["coord"].shape[0]
    assert details["prob_map"].shape == (64, 64)
    assert np.all(details["prob"] > model.thresholds["prob"])
    # RGB input is converted to gray and gives the same answer
    rgb = np.repeat(pair[0][..., None], 3, axis=-1)
    assert model.predict(rgb) == mask


def test_tiled_and_untiled_prediction_agree(trained):
    model, pair, _ = trained
    big = np.tile(pair[0], (2, 3))  # 256 x 384, tiled in 64-pixel tiles below
    fp32 = StarDist(model.config.replace(mixed_precision=False), seed=None)
    fp32.network.load_state_dict(model.network.state_dict())
    fp32.thresholds = model.thresholds
    whole, d1 = fp32.predict(big, return_details=True)
    tiled, d2 = fp32.predict(big, tile_size=64, context=48, return_details=True)
    np.testing.assert_allclose(d1["prob_map"], d2["prob_map"], atol=1e-4)
    df = evaluate([tiled], [(big, whole)], iou=0.9)
    assert df.f1.iloc[-1] >= 0.98 and whole.count >= 40
    # bf16 inference finds the same particles as float32
    df = evaluate([model.predict(big)], [(big, whole)], iou=0.8)
    assert df.f1.iloc[-1] >= 0.95


def test_predict_odd_sized_image(trained):
    model, pair, _ = trained
    mask = model.predict(pair[0][:101, :77])
    assert mask.shape == (101, 77)


def test_save_load_round_trip(trained, tmp_path):
    model, pair, _ = trained
    model.save(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {
        "weights.pt", "config.json", "thresholds.json", "info.json"}
    assert json.loads((tmp_path / "m" / "thresholds.json").read_text()) == {
        **model.thresholds, "scale": None, "auto_width": 40.0}
    loaded = StarDist.load(tmp_path / "m")
    assert loaded.config == model.config and loaded.thresholds == model.thresholds
    assert loaded.predict_scale is None and loaded.auto_width == 40.0
    assert loaded.predict(pair[0]) == model.predict(pair[0])
    with pytest.raises(FileExistsError):
        model.save(tmp_path / "m")
    model.save(tmp_path / "half", half=True)
    assert (tmp_path / "half" / "weights.pt").stat().st_size < 0.6 * (
        tmp_path / "m" / "weights.pt").stat().st_size
    half = StarDist.load(tmp_path / "half")
    df = evaluate([half.predict(pair[0])], [(pair[0], model.predict(pair[0]))], iou=0.8)
    assert df.f1.iloc[-1] >= 0.95


def test_weight_average_known_answer():
    from utilegen.segment._train import _Average

    net = torch.nn.Linear(1, 1)
    torch.nn.init.zeros_(net.weight)
    avg = _Average(net, 0.5)
    torch.nn.init.ones_(net.weight)
    for _ in range(3):
        avg.update()
    # decay per update t: min(0.5, (1 + t) / (10 + t)) = 2/11, 3/12, 4/13
    expected = 1 - (2 / 11) * (3 / 12) * (4 / 13)
    assert float(avg.net.weight) == pytest.approx(expected, rel=1e-6)
    assert float(net.weight) == 1.0  # the network itself is not touched
    for _ in range(200):
        avg.update()
    assert float(avg.net.weight) == pytest.approx(1.0, abs=1e-6)


def test_fit_with_weight_average_returns_the_average():
    torch.set_num_threads(1)
    pairs = [sample_pair((96, 96), particles=6, rng=i) for i in range(2)]
    nets = {}
    for decay in (0.0, 0.9):
        model = StarDist(StarDistConfig(**TINY, mixed_precision=False, ema_decay=decay), seed=1)
        model.fit(pairs, None, epochs=1, steps_per_epoch=6, seed=7, progress=False)
        nets[decay] = model.network
    start = StarDist(StarDistConfig(**TINY, mixed_precision=False), seed=1).network
    # same steps, so the average lies between the start and the last weights: each of
    # its parameters moved less far from the start than the trained network's did
    moved = {d: sum(float((a - b).abs().sum()) for a, b in
                    zip(n.parameters(), start.parameters())) for d, n in nets.items()}
    assert 0 < moved[0.9] < moved[0.0]
    with pytest.raises(ValueError, match="ema_decay"):
        StarDistConfig(ema_decay=1.0)


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_fit_resumes_from_a_checkpoint(tmp_path, ema_decay):
    torch.set_num_threads(1)
    pairs = [sample_pair((96, 96), particles=6, rng=i) for i in range(2)]
    cfg = StarDistConfig(**TINY, mixed_precision=False, ema_decay=ema_decay)
    straight = StarDist(cfg, seed=1)
    straight.fit(pairs, None, epochs=2, steps_per_epoch=3, seed=7, progress=False)
    resumed = StarDist(cfg, seed=1)
    resumed.fit(pairs, None, epochs=1, steps_per_epoch=3, seed=7, progress=False,
                checkpoint_dir=tmp_path)
    assert (tmp_path / "last.pt").is_file()
    resumed.fit(pairs, None, epochs=2, steps_per_epoch=3, seed=7, progress=False,
                resume=tmp_path / "last.pt")
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    for a, b in zip(straight.network.parameters(), resumed.network.parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_time_limit_stops_training():
    pairs = [sample_pair((96, 96), particles=6, rng=0)]
    model = StarDist(StarDistConfig(**TINY), seed=0)
    history = model.fit(pairs, epochs=50, steps_per_epoch=1000, time_limit=0.5, progress=False)
    assert len(history) == 1 and history[0]["steps"] < 1000


# ------------------------------------------------------------------ bad inputs
def test_bad_inputs_give_clear_errors(tmp_path):
    model = StarDist(StarDistConfig(**TINY))
    pair = sample_pair((64, 64), particles=3, rng=0)
    with pytest.raises(ValueError, match="2-D"):
        model.predict(np.zeros((4, 64, 64)))
    with pytest.raises(ValueError, match="prob_thresh"):
        model.predict(pair[0], prob_thresh=1.5)
    with pytest.raises(ValueError, match="tile_size"):
        model.predict(pair[0], tile_size=100)
    with pytest.raises(ValueError, match="epochs"):
        model.fit([pair], epochs=0)
    with pytest.raises(ValueError, match="empty"):
        model.fit([], epochs=1, steps_per_epoch=1, progress=False)
    with pytest.raises(ValueError, match="shape"):
        model.fit([(pair[0][:32], pair[1])], epochs=1, steps_per_epoch=1, progress=False)
    with pytest.raises(ValueError, match="config"):
        StarDist("big")
    with pytest.raises(ValueError, match="known: \\['emps'\\]"):
        StarDist.pretrained("nope")
    with pytest.raises(FileNotFoundError, match="not a saved StarDist model"):
        StarDist.load(tmp_path)
    with pytest.raises(ValueError, match="measure"):
        model.optimize_thresholds([pair], measure="speed")
    with pytest.raises(ValueError, match="prior"):
        model.optimize_thresholds([pair], prior=1.5)
    with pytest.raises(ValueError, match="tolerance_particles"):
        model.optimize_thresholds([pair], prior=0.5, tolerance_particles=-1)


def test_import_does_not_load_torch():
    code = "import sys, utilegen.segment; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_scaled_targets_decode_onto_the_original_image():
    from utilegen.segment._predict import instances
    from utilegen.segment._targets import resize_labels

    labels = disk_labels((128, 128), centres=((40, 40), (80, 90), (30, 100)), radius=16)
    small = resize_labels(labels, 0.5)
    assert small.shape == (64, 64) and set(np.unique(small)) == {0, 1, 2, 3}
    prob, dist = targets(small, 32, 1)
    rows, cols = np.nonzero(prob > 0.3)
    out, _ = instances(np.stack([rows, cols], 1), prob[rows, cols], dist[rows, cols],
                       labels.shape, prob_thresh=0.3, nms_thresh=0.3, scale=0.5)
    df = evaluate([out], [(np.zeros(labels.shape), labels)], iou=0.8)
    assert out.shape == (128, 128) and df.f1.iloc[-1] == 1.0


def test_scaled_model_predicts_at_the_input_size(trained):
    model, pair, _ = trained
    half = StarDist(model.config.replace(scale=0.5), seed=None)
    mask, details = half.predict(pair[0], return_details=True)
    assert mask.shape == pair[0].shape and details["prob_map"].shape == (32, 32)
    with pytest.raises(ValueError, match="scale"):
        StarDistConfig(scale=0)


def test_auto_scale_finds_particles_twice_the_trained_size(trained):
    import cv2

    model, pair, _ = trained
    image = cv2.resize(pair[0].astype(np.float32), (256, 256), interpolation=cv2.INTER_LINEAR)
    truth = np.asarray(pair[1].labels).repeat(2, 0).repeat(2, 1)  # disks of radius 16-28
    auto, details = model.predict(image, scale="sweep", return_details=True)
    assert details["scale"] == 0.5
    assert evaluate([auto], [(image, truth)], iou=0.5).f1.iloc[-1] >= 0.8
    # the rule: of the tried scales, the result whose instances are surest on average
    means = {}
    for s in (1.0, 0.5, 2.0):
        mask, d = model.predict(image, scale=s, return_details=True)
        means[s] = (np.mean(d["prob"]) if len(d["prob"]) else -1, mask)
    best = max(means, key=lambda s: means[s][0])
    assert best == 0.5 and means[best][1] == auto


def test_auto_scale_measures_the_particles_then_runs_one_pass(trained):
    import cv2

    model, pair, _ = trained
    image = cv2.resize(pair[0].astype(np.float32), (256, 256), interpolation=cv2.INTER_LINEAR)
    truth = np.asarray(pair[1].labels).repeat(2, 0).repeat(2, 1)  # disks of radius 16-28
    model.auto_width = 22.0  # the tiny model was trained on disks 16-28 px wide
    try:
        auto, details = model.predict(image, scale="auto", return_details=True)
    finally:
        model.auto_width = 40.0
    choice = details["scale_choice"]
    # the coarse pass (0.5) sees disks 32-56 px wide, and one pass runs where they are
    # 22 px wide: two passes in all, not three
    assert choice["mode"] == "auto" and choice["seen_at"] == 0.5 and choice["passes"] <= 2
    assert 32 * 0.8 <= choice["width_px"] <= 56 * 1.2
    target = 22 / choice["width_px"]
    if abs(np.log(target / 0.5)) <= np.log(1.2):  # the coarse pass is already there: kept
        assert details["scale"] == 0.5 and choice["passes"] == 1
    else:
        assert details["scale"] == pytest.approx(target, rel=0.05) and choice["passes"] == 2
    assert evaluate([auto], [(image, truth)], iou=0.5).f1.iloc[-1] >= 0.8


def test_predict_scale_is_saved_and_validated(trained, tmp_path):
    model, pair, _ = trained
    copy = StarDist(model.config, seed=None)
    copy.network.load_state_dict(model.network.state_dict())
    copy.predict_scale = "auto"
    copy.save(tmp_path / "auto")
    loaded = StarDist.load(tmp_path / "auto")
    assert loaded.predict_scale == "auto"
    assert loaded.predict(pair[0]) == copy.predict(pair[0], scale="auto")
    for bad in ("big", 0, 5.0, [1.0]):
        with pytest.raises(ValueError, match="scale"):
            model.predict(pair[0], scale=bad)
    t = tmp_path / "auto" / "thresholds.json"
    t.write_text(json.dumps({"prob": 0.5, "nms": 0.4, "scale": "huge"}))
    with pytest.raises(ValueError, match="scale"):
        StarDist.load(tmp_path / "auto")


def test_zoom_augmentation_keeps_patch_size_and_varies_particle_size():
    from utilegen.segment._data import PatchSampler

    labels = disk_labels((300, 400), centres=((50, 50), (150, 200), (250, 350)), radius=20)
    image = (labels > 0).astype(np.float32)
    areas = {}
    for zoom in (1.0, 2.0):
        cfg = StarDistConfig(**{**TINY, "zoom": zoom, "patch_size": 128})
        sampler, rng, seen = PatchSampler([(image, labels)], cfg), np.random.default_rng(0), []
        for _ in range(100):
            x, lab = sampler.patch(0, rng, zoom=True)
            assert x.shape == lab.shape == (128, 128)
            assert set(np.unique(lab)) <= {0, 1, 2, 3}
            whole = [a for a in np.bincount(lab.ravel())[1:] if a]
            seen += whole
        areas[zoom] = np.array(seen)
    full = np.pi * 20**2
    assert areas[1.0].max() <= full + 60  # unzoomed: a disk is never larger than itself
    # zoomed by up to 2x: whole disks up to 4x the area, and down to a quarter
    assert areas[2.0].max() > 2 * full and np.percentile(areas[2.0], 5) < 0.6 * full
    with pytest.raises(ValueError, match="zoom"):
        StarDistConfig(zoom=0.5)


@pytest.mark.parametrize("scale", [0.25, 0.5])
def test_scaled_polygons_land_on_the_original_pixel_centres(scale):
    """Decoding at `scale` puts a disk back where it was (no half-pixel drift)."""
    from scipy import ndimage as ndi

    from utilegen.segment._predict import instances
    from utilegen.segment._targets import resize_labels

    labels = disk_labels((203, 161), centres=((100, 60), (150, 120)), radius=24)
    small = resize_labels(labels, scale)
    prob, dist = targets(small, 64, 1)
    rows, cols = np.nonzero(prob > 0.5)
    out, _ = instances(np.stack([rows, cols], 1), prob[rows, cols], dist[rows, cols],
                       labels.shape, prob_thresh=0.5, nms_thresh=0.3, scale=scale)
    assert out.shape == labels.shape
    truth = np.array(ndi.center_of_mass(labels > 0, labels, [1, 2]))
    found = np.array(ndi.center_of_mass(out > 0, out, np.unique(out)[1:]))
    found = found[np.argsort(found[:, 0])]
    assert found.shape == (2, 2) and np.abs(found - truth).max() < 0.75


@pytest.mark.parametrize("diameter, shape, count, scale", [
    (10, (256, 256), 60, 1.0), (30, (384, 384), 40, 1.0), (100, (768, 768), 15, 0.41),
    (300, (1100, 1100), 5, 0.25)])
def test_auto_scale_estimates_the_particle_size_of_rendered_images(diameter, shape, count, scale):
    # the shipped model: a coarse pass measures the particles, one pass runs where they are
    # about AUTO_WIDTH px wide (within config.scale x [1/2, 2] = [0.25, 1])
    model = StarDist.pretrained("emps")
    image, truth = sample_pair(shape, particles=count, radius=(0.45 * diameter, 0.55 * diameter),
                               touching=0.0, rng=1)
    mask, details = model.predict(image, return_details=True)
    choice = details["scale_choice"]
    assert choice["mode"] == "auto"
    assert 0.75 * diameter <= choice["width_px"] <= 1.25 * diameter  # narrowest width, px
    assert details["scale"] == pytest.approx(scale, abs=0.06)
    assert choice["passes"] <= (3 if diameter <= 30 else 2)  # small ones: 0.25, 0.5, then 1
    assert abs(mask.count - truth.count) <= max(2, 0.1 * truth.count)


def test_rasterize_matches_stardists_polygon_rendering():
    from stardist.geometry import dist_to_coord, polygons_to_label

    from utilegen.segment._predict import rasterize

    rng = np.random.default_rng(0)
    shape = (300, 400)
    n = 60
    points = np.stack([rng.uniform(-20, 320, n), rng.uniform(-20, 420, n)], axis=1)
    dists = rng.uniform(0.3, 1.0, (n, 32)) * rng.uniform(2, 60, (n, 1))  # some below 1 px
    dists[:3] = 1e-3  # degenerate polygons draw nothing, as in stardist
    probs = rng.uniform(0.5, 1, n)
    order = np.argsort(probs, kind="stable")  # stardist paints the surest last
    dists, points, probs = dists[order], points[order], probs[order]
    ref = polygons_to_label(dists, points, shape=shape, prob=probs)
    ours = rasterize(dist_to_coord(dists, points), shape)
    assert np.mean(ref == ours) >= 0.995
    assert set(np.unique(ref)) == set(np.unique(ours))
    with pytest.raises(ValueError, match="oversample"):
        rasterize(np.zeros((0, 2, 32)), shape, oversample=4)


def test_auto_scale_detects_a_second_smaller_population():
    # large particles (~150 px) with small ones (~18 px) between them: the coarse pass sees
    # only the large ones; the probe finds the small ones and one more pass adds them
    model = StarDist.pretrained("emps")
    big, big_mask = sample_pair((640, 640), particles=6, radius=(70, 80), touching=0.0, rng=2)
    small, small_mask = sample_pair((640, 640), particles=90, radius=(8, 10), touching=0.0,
                                    rng=3)
    lb, ls = big_mask.labels, small_mask.labels
    free = np.setdiff1d(np.unique(ls[ls > 0]), np.unique(ls[(ls > 0) & (lb > 0)]))
    image = np.where(np.isin(ls, free), small, big)
    truth = np.where(lb > 0, lb, np.where(np.isin(ls, free), ls + lb.max(), 0))
    mask, details = model.predict(image, return_details=True)
    choice = details["scale_choice"]
    assert choice["second_population"]["width_px"] < 0.25 * choice["width_px"]
    assert choice["second_population"]["scale"] == 1.0
    f1 = evaluate([mask], [(image, truth)], iou=0.5).f1.iloc[-1]
    assert f1 >= 0.9
    # and only the large ones without it (what the coarse pass alone gives)
    alone = model.predict(image, scale=details["scale"])
    assert evaluate([alone], [(image, truth)], iou=0.5).f1.iloc[-1] < 0.3
    # one population: the probe runs but adds nothing
    mask, details = model.predict(big, return_details=True)
    assert "second_population" not in details["scale_choice"]
    assert details["scale_choice"]["probe"] is True and mask.count == big_mask.count


def test_patch_sampler_composes_synthetic_pairs_on_the_fly():
    from utilegen.segment._data import PatchSampler

    config = StarDistConfig(patch_size=64, n_rays=8, base_filters=8)
    empty = [(np.random.default_rng(0).random((96, 96)).astype(np.float32),
              np.zeros((96, 96), np.int32))]  # real pairs without particles

    class Disks:  # a synthetic dataset: every item a new image full of particles
        calls = 0

        def __len__(self):
            return 10**9

        def pair(self, i):
            Disks.calls += 1
            return sample_pair((128, 128), particles=12, radius=(8, 12), rng=int(i) % 1000)

    rng = np.random.default_rng(1)
    only_real = PatchSampler(empty, config)
    assert only_real.batch(rng, 4, augment=False)[1].max() == 0
    only_syn = PatchSampler(empty, config, synthetic=Disks(), synthetic_share=1.0,
                            synthetic_reuse=1)
    x, prob, _ = only_syn.batch(rng, 4, augment=False)
    assert Disks.calls == 4  # a new synthetic pair per patch
    assert all(p.max() > 0 for p in prob) and x.shape == (4, 1, 64, 64)
    # each pair serves `synthetic_reuse` patches: 120 patches, 3 per pair -> 40 pairs, and at
    # most 3 held at once (the last ones may be part-used)
    Disks.calls = 0
    reused = PatchSampler(empty, config, synthetic=Disks(), synthetic_share=1.0,
                          synthetic_reuse=3)
    for _ in range(30):
        reused.batch(rng, 4, augment=False)
    assert 40 <= Disks.calls <= 42 and len(reused._held) <= 3
    # half the patches synthetic: about 60 of 120, so about 20 pairs
    Disks.calls = 0
    half = PatchSampler(empty, config, synthetic=Disks(), synthetic_share=0.5, synthetic_reuse=3)
    prob = np.concatenate([half.batch(rng, 4, augment=False)[1] for _ in range(30)])
    n_syn = sum(p.max() > 0 for p in prob)
    assert 40 <= n_syn <= 80 and n_syn / 3 <= Disks.calls <= n_syn / 3 + 3
    with pytest.raises(ValueError, match="synthetic_share"):
        PatchSampler(empty, config, synthetic=Disks(), synthetic_share=1.5)
    with pytest.raises(ValueError, match="synthetic"):
        PatchSampler(empty, config, synthetic_share=0.5)
    with pytest.raises(ValueError, match="synthetic_reuse"):
        PatchSampler(empty, config, synthetic=Disks(), synthetic_share=0.5, synthetic_reuse=0)


def test_threshold_choice_takes_the_middle_of_a_flat_top():
    from utilegen.segment._model import _flat_top_argmax

    def plateau(t):  # what 2 held-out particles give: any threshold in [0.2, 0.7] finds both
        return 1.0 if 0.2 <= t <= 0.7 else 0.5

    t, best = _flat_top_argmax(plateau, 0.05, 0.98)
    assert best == 1.0 and abs(t - 0.45) <= 0.026  # not an end of the range
    # a single sharp peak between grid points is found by the finer grid
    t, best = _flat_top_argmax(lambda t: -abs(t - 0.333), 0.05, 0.98)
    assert abs(t - 0.333) <= 0.006 and best > -0.006
    # two flat tops: the widest one's middle
    t, _ = _flat_top_argmax(lambda t: 1.0 if 0.1 <= t <= 0.15 or 0.5 <= t <= 0.8 else 0.0,
                            0.05, 0.98)
    assert 0.6 <= t <= 0.7
    # an empty range (lowest = highest): its one point
    assert _flat_top_argmax(lambda t: t, 0.05, 0.05)[0] == 0.05


def test_threshold_choice_with_a_prior_moves_only_as_far_as_the_evidence():
    from utilegen.segment._model import _flat_top_argmax

    def plateau(t):
        return 1.0 if 0.2 <= t <= 0.7 else 0.5

    # the prior inside the flat top is kept as it is
    assert _flat_top_argmax(plateau, 0.05, 0.98, prior=0.563)[0] == 0.563
    # outside it: the nearest point that scores the best, to the fine step
    t, best = _flat_top_argmax(plateau, 0.05, 0.98, prior=0.9)
    assert best == 1.0 and 0.69 <= t <= 0.7
    t, best = _flat_top_argmax(plateau, 0.05, 0.98, prior=0.1)
    assert best == 1.0 and 0.2 <= t <= 0.21

    def slope(t):  # a clear optimum at 0.3, 0.1 lower at 0.5
        return 1.0 - 0.5 * abs(t - 0.3)

    # without tolerance the optimum wins over the prior; within the tolerance, the prior
    t, _ = _flat_top_argmax(slope, 0.05, 0.98, prior=0.56)
    assert abs(t - 0.3) <= 0.006
    t, value = _flat_top_argmax(slope, 0.05, 0.98, prior=0.56, tolerance=0.1)
    assert 0.49 <= t <= 0.5 and value >= 0.9 - 1e-9
    assert _flat_top_argmax(slope, 0.05, 0.98, prior=0.56, tolerance=0.2)[0] == 0.56
    # a prior outside the searched range is taken to its nearest end
    assert _flat_top_argmax(lambda t: 0.0, 0.3, 0.6, prior=0.9)[0] == 0.6


def test_candidate_cap_keeps_the_sure_ones_and_the_surest_others():
    from utilegen.segment._model import _cap_candidates

    rng = np.random.default_rng(0)
    probs = rng.uniform(0.05, 1, 5000).astype(np.float32)
    points = np.stack([np.arange(5000), np.arange(5000)], 1)
    dists = rng.uniform(1, 5, (5000, 8)).astype(np.float32)
    (p, q, d), cut = _cap_candidates((points, probs, dists), 0.5, 100)
    n_sure = int((probs >= 0.5).sum())
    assert len(q) == n_sure + 100
    assert cut == np.sort(probs)[::-1][n_sure + 99] and np.all(q >= cut)  # the most probable
    assert np.array_equal(probs[p[:, 0]], q) and np.array_equal(dists[p[:, 0]], d)
    few = (points[:50], probs[:50], dists[:50])
    assert _cap_candidates(few, 0.5, 100) == (few, 0.0)


def test_threshold_search_starts_above_the_candidate_cap(trained, monkeypatch):
    """Below the cap's cut the search would see fewer candidates than `predict` keeps, so
    it must not choose a threshold there."""
    import utilegen.segment._model as model_module

    model, pair, _ = trained
    model = copy.deepcopy(model)
    image = pair[0]
    probs = model.predict_candidates(image, prob_thresh=0.05)[1]
    sure = int((probs >= probs.max() / 2).sum())
    assert len(probs) > sure + 20  # enough candidates below the sure ones to cap
    monkeypatch.setattr(model_module, "CANDIDATE_CAP", 10)
    cut = np.sort(probs)[::-1][sure + 9]
    model.optimize_thresholds([pair], nms_threshs=(0.3,))
    assert model.thresholds["prob"] >= cut - 1e-6


def test_tta_ray_order_known_answers():
    from utilegen.segment._predict import _ray_order

    k = np.arange(32)
    np.testing.assert_array_equal(_ray_order(32, False, False, False), k)
    np.testing.assert_array_equal(_ray_order(32, False, False, True), (16 - k) % 32)  # col -> -col
    np.testing.assert_array_equal(_ray_order(32, False, True, False), (-k) % 32)  # row -> -row
    np.testing.assert_array_equal(_ray_order(32, True, False, False), (8 - k) % 32)  # row <-> col
    # 6 rays: a quarter turn sends them between rays; flips map them onto rays
    assert _ray_order(6, True, False, False) is None
    np.testing.assert_array_equal(_ray_order(6, False, True, True), (np.arange(6) + 3) % 6)


class _ProbeNet(torch.nn.Module):
    """A stand-in network whose outputs are known: on every g-th pixel, prob is the input
    there and ray k reads the input 3 px away along ray k (so it turns with the image)."""

    def __init__(self, grid: int, n_rays: int = 16):
        super().__init__()
        self.g = grid
        phi = 2 * np.pi * np.arange(n_rays) / n_rays
        self.offsets = np.round(3 * np.stack([np.sin(phi), np.cos(phi)], 1)).astype(int)

    def forward(self, x):
        x = x[:, :1].float().contiguous()
        pad = torch.nn.functional.pad(x, (3, 3, 3, 3))
        h, w = x.shape[-2:]
        rays = [pad[..., 3 + dr:3 + dr + h, 3 + dc:3 + dc + w] for dr, dc in self.offsets]
        return x[..., ::self.g, ::self.g], torch.cat(rays, 1)[..., ::self.g, ::self.g]


@pytest.mark.parametrize("grid", [1, 2])
def test_tta_maps_every_flip_and_turn_back_onto_the_same_pixels_and_rays(grid):
    from utilegen.segment._predict import run_network, run_network_tta

    rng = np.random.default_rng(0)
    x = rng.random((24, 40)).astype(np.float32)  # not square: the turns swap the sides
    net = _ProbeNet(grid)
    prob, dist = run_network(net, x, mixed_precision=False)
    prob_t, dist_t = run_network_tta(net, x, grid=grid, n_rays=16, mixed_precision=False)
    assert prob_t.shape == prob.shape and dist_t.shape == dist.shape
    # an equivariant network gains nothing from TTA: the average is its own output,
    # exactly, away from the edges where the flipped images see zeros in other places
    np.testing.assert_allclose(prob_t, prob, atol=1e-6)
    m = -(-4 // grid)
    np.testing.assert_allclose(dist_t[:, m:-m, m:-m], dist[:, m:-m, m:-m], atol=1e-6)
    assert not np.allclose(dist[0], dist[4])  # the rays do differ: the check has teeth


def test_predict_with_tta_augments_the_kept_passes(trained, monkeypatch):
    from utilegen.segment import _predict

    model, pair, _ = trained
    calls = []
    real = _predict.run_network_tta
    monkeypatch.setattr(_predict, "run_network_tta",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    plain, d0 = model.predict(pair[0], return_details=True)
    assert not calls and d0["tta"] is False
    mask, details = model.predict(pair[0], tta=True, return_details=True)
    assert len(calls) == 1 and details["tta"] is True  # one pass, one tile
    assert not np.allclose(details["prob_map"], d0["prob_map"])  # the average is used
    assert evaluate([mask], [pair], iou=0.5).f1.iloc[-1] >= 0.8  # the overfitted tiny model
    calls.clear()
    model.predict(pair[0], scale="sweep", tta=True)
    assert len(calls) == 3  # every pass of the sweep
    calls.clear()
    auto, details = model.predict(pair[0], scale="auto", tta=True, return_details=True)
    assert len(calls) == 1  # only the kept pass; those that choose the scale are plain
    assert auto.count >= 0.8 * plain.count
    # the attribute is the default, as analyze uses it; fine_tune starts without it
    calls.clear()
    model.predict_tta = True
    try:
        model.predict(pair[0])
        assert len(calls) == 1
        from utilegen.segment._adapt import _resolve_init
        assert _resolve_init(model)[0].predict_tta is False
    finally:
        model.predict_tta = False
