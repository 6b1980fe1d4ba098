"""Tests of utilegen.classify: data helpers, metrics, ShapeClassifier, per-particle shapes, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from utilegen.classify import (
    ClassifierConfig,
    Evaluation,
    LabelledImages,
    ShapeRules,
    TrainConfig,
    confusion_matrix,
    dominant_shape,
    from_emps,
    from_folder,
    particle_crops,
    particle_shapes,
    read_labels,
    shape_fractions,
    synthetic_for_class,
)
from utilegen.masks import InstanceMask

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
torch.set_num_threads(1)

TINY = "resnet10t"  # ~5M parameters, fast at 32 px


def _blobs(kind: str, rng, shape=(48, 56)) -> np.ndarray:
    """A dark field with 4 bright discs or 4 bright bars."""
    image = np.full(shape, 40, np.uint8)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    for _ in range(4):
        r, c = rng.integers(10, shape[0] - 10), rng.integers(14, shape[1] - 14)
        if kind == "disc":
            image[(yy - r) ** 2 + (xx - c) ** 2 < 36] = 210
        else:
            image[r - 2:r + 2, c - 12:c + 12] = 210
    return image


@pytest.fixture(scope="module")
def blobs() -> LabelledImages:
    rng = np.random.default_rng(0)
    kinds = ["disc", "bar"] * 8
    return LabelledImages([_blobs(k, rng) for k in kinds], kinds)


def _nll(clf, data) -> float:
    proba = clf.predict_proba(data)
    idx = [clf.classes.index(lab) for lab in data.labels]
    return float(-np.mean(np.log(proba[np.arange(len(idx)), idx])))


@pytest.fixture(scope="module")
def trained(blobs):
    from utilegen.classify import ShapeClassifier

    clf = ShapeClassifier(TINY, classes=("disc", "bar"), image_size=32, seed=0)
    before = _nll(clf, blobs)
    clf.fit(blobs, blobs, steps=12, batch_size=8, learning_rate=3e-3, eval_every=4, progress=False)
    return clf, before


# ------------------------------------------------------------------------- import / config
def test_import_is_light():
    code = ("import sys, utilegen, utilegen.classify; "
            "print('torch' in sys.modules, 'timm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_configs_round_trip_and_validate():
    cfg = ClassifierConfig(backbone="convnext_atto", classes=["a", "b"], image_size=64)
    assert ClassifierConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    train = TrainConfig(steps=5, augment="randaugment+mixup")
    assert TrainConfig.from_dict(json.loads(json.dumps(train.to_dict()))) == train
    with pytest.raises(ValueError, match="classes"):
        ClassifierConfig(classes=("a", "a"))
    with pytest.raises(ValueError, match="image_size"):
        ClassifierConfig(image_size=8)
    with pytest.raises(ValueError, match="augment"):
        TrainConfig(augment="mixup")
    with pytest.raises(ValueError, match="unknown ClassifierConfig keys"):
        ClassifierConfig.from_dict({"backbone": "x", "colour": 1})


# ------------------------------------------------------------------------------ metrics
def test_metrics_known_values():
    true = ["s", "s", "s", "c", "c", "r"]
    pred = ["s", "s", "c", "c", "s", "r"]
    ev = Evaluation.from_labels(true, pred, ("s", "c", "r"))
    np.testing.assert_array_equal(ev.confusion, [[2, 1, 0], [1, 1, 0], [0, 0, 1]])
    assert ev.accuracy == pytest.approx(4 / 6)
    assert ev.precision == pytest.approx({"s": 2 / 3, "c": 1 / 2, "r": 1.0})
    assert ev.recall == pytest.approx({"s": 2 / 3, "c": 1 / 2, "r": 1.0})
    np.testing.assert_allclose(ev.normalized().sum(axis=1), 1)
    assert "accuracy 0.667" in str(ev)
    fig = ev.plot()
    assert len(fig.axes[0].texts) == 9
    with pytest.raises(ValueError, match="not among the classes"):
        confusion_matrix(["x"], ["s"], ("s", "c"))


# ------------------------------------------------------------------------- labels / data
def test_read_labels_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="label file not found"):
        read_labels(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,kind\na.png,sphere\n")
    with pytest.raises(ValueError, match="filename,shape"):
        read_labels(bad)
    typo = tmp_path / "typo.csv"
    typo.write_text("filename,shape\na.png,sphere\nb.png,sphre\n")
    with pytest.raises(ValueError, match=r"line 3: label 'sphre'"):
        read_labels(typo, classes=("sphere", "rod"))
    clash = tmp_path / "clash.csv"
    clash.write_text("filename,shape\na.png,sphere\na.png,rod\n")
    with pytest.raises(ValueError, match="labelled both"):
        read_labels(clash)
    empty = tmp_path / "empty.csv"
    empty.write_text("filename,shape\n")
    with pytest.raises(ValueError, match="no rows"):
        read_labels(empty)
    good = tmp_path / "good.csv"
    good.write_text("filename,shape\na.png,sphere\nb.tif,rod\n")
    assert read_labels(good) == {"a": "sphere", "b": "rod"}


def test_from_folder_names_missing_files(tmp_path):
    from utilegen.io import write_image

    (tmp_path / "im").mkdir()
    write_image(tmp_path / "im" / "a.tif", np.zeros((8, 8), np.uint8))
    labels = tmp_path / "labels.csv"
    labels.write_text("filename,shape\na.png,sphere\nb.png,rod\n")
    with pytest.raises(ValueError, match="not found in .*: b"):
        from_folder(tmp_path / "im", labels)


def test_labelled_images_basics(blobs):
    with pytest.raises(ValueError, match="labels has 1 entries"):
        LabelledImages([np.zeros((4, 4))] * 2, ["a"])
    both = blobs + blobs.subset([0, 1])
    assert len(both) == 18 and both.labels[-2:] == ["disc", "bar"]
    np.testing.assert_array_equal(both.image(16), blobs.image(0))
    rest, held = blobs.split(0.25, rng=0)
    assert held.counts() == {"disc": 2, "bar": 2} and rest.counts() == {"disc": 6, "bar": 6}
    assert not set(rest.names) & set(held.names)


def test_from_emps_uses_shapes_csv(emps_root):
    from utilegen.datasets import emps

    data = from_emps(emps(emps_root), ("sphere", "cube", "rod"))
    assert data.counts() == {"sphere": 166, "cube": 20, "rod": 29}
    assert data.image(0).ndim == 2


def test_synthetic_for_class_is_labelled_and_reproducible(emps_root):
    from utilegen.datasets import emps

    ds = emps(emps_root)
    spheres = ds.with_shape("sphere")
    pairs = spheres.subset(spheres.ids[:2])
    options = {"seed": 5, "image_size": 256, "particles_per_image": (3, 6), "scale": (0.5, 1.0)}
    syn = synthetic_for_class(pairs, "sphere", 3, **options)
    assert syn.labels == ["sphere"] * 3 and len(syn) == 3
    again = synthetic_for_class(pairs, "sphere", 3, **options)
    np.testing.assert_array_equal(syn.image(2), again.image(2))
    assert syn.image(0).shape == (256, 256)
    with pytest.raises(ValueError, match="no particle of the 'sphere' pairs fits"):
        synthetic_for_class(pairs, "sphere", 1, image_size=16)


# ----------------------------------------------------------------------- the classifier
def test_unknown_backbone_lists_close_names():
    from utilegen.classify import ShapeClassifier

    with pytest.raises(ValueError, match=r"unknown backbone 'convnext_atoo'.*convnext_atto"):
        ShapeClassifier("convnext_atoo")


def test_training_lowers_the_loss(trained, blobs):
    clf, before = trained
    assert _nll(clf, blobs) < before
    assert [r["step"] for r in clf.history] == [4, 8, 12]
    assert sum(bool(r.get("best")) for r in clf.history) >= 1
    # The best checkpoint is kept: val is the training set here, so evaluating on it
    # reproduces the best validation accuracy of the history.
    best = max(r["val_accuracy"] for r in clf.history)
    assert clf.evaluate(blobs).accuracy == pytest.approx(best)


def test_fit_is_deterministic_with_a_seed(blobs):
    from utilegen.classify import ShapeClassifier

    probs = []
    for _ in range(2):
        clf = ShapeClassifier(TINY, classes=("disc", "bar"), image_size=32, seed=3)
        clf.fit(blobs, steps=3, batch_size=4, augment="randaugment+mixup", seed=7, progress=False)
        probs.append(clf.predict_proba(blobs))
    np.testing.assert_array_equal(probs[0], probs[1])


def test_mixup_needs_even_batches_and_known_labels(blobs):
    from utilegen.classify import ShapeClassifier

    clf = ShapeClassifier(TINY, classes=("disc", "bar"), image_size=32)
    with pytest.raises(ValueError, match="batch_size must be even"):
        clf.fit(blobs, steps=1, batch_size=3, augment="randaugment+mixup", progress=False)
    with pytest.raises(ValueError, match=r"labels \['cube'\]"):
        clf.fit(LabelledImages([np.zeros((8, 8), np.uint8)], ["cube"]), steps=1, progress=False)


def test_predict_accepts_any_image(trained, tmp_path):
    from utilegen.io import write_image

    clf, _ = trained
    rng = np.random.default_rng(1)
    path = tmp_path / "x.tif"
    write_image(path, _blobs("bar", rng, (70, 50)))
    images = [_blobs("disc", rng), (_blobs("bar", rng).astype(np.uint16) * 200),
              _blobs("disc", rng).astype(np.float32) / 3,
              np.repeat(_blobs("bar", rng)[..., None], 3, -1), path]
    pred = clf.predict(images)
    assert len(pred) == 5 and set(pred.labels) <= {"disc", "bar"}
    np.testing.assert_allclose(pred.probabilities.sum(axis=1), 1, rtol=1e-5)
    assert len(clf.predict(images[0])) == 1
    assert list(pred.to_frame().columns) == ["name", "label", "p_disc", "p_bar"]


def test_save_load_round_trip(trained, blobs, tmp_path):
    from utilegen.classify import ShapeClassifier

    clf, _ = trained
    clf.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["classifier"]["classes"] == ["disc", "bar"] and config["training"]["steps"] == 12
    loaded = ShapeClassifier.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict_proba(blobs), clf.predict_proba(blobs))
    assert loaded.config == clf.config and loaded.history == clf.history
    with pytest.raises(FileExistsError, match="overwrite=True"):
        clf.save(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="not a saved ShapeClassifier"):
        ShapeClassifier.load(tmp_path / "missing")


def test_load_by_folder_or_shipped_name(trained, blobs, tmp_path):
    from utilegen.classify import list_pretrained, load

    clf, _ = trained
    clf.save(tmp_path / "m")
    np.testing.assert_array_equal(load(tmp_path / "m").predict_proba(blobs),
                                  clf.predict_proba(blobs))
    assert all(isinstance(name, str) for name in list_pretrained())
    with pytest.raises(FileNotFoundError, match="folder not found.*shipped"):
        load(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no classifier folder 'nope'"):
        load("nope")

def test_pretrained_from_a_local_file(tmp_path):
    import timm

    from utilegen.classify import ShapeClassifier

    torch.manual_seed(123)
    source = timm.create_model(TINY, num_classes=1000)  # like an ImageNet checkpoint
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    clf = ShapeClassifier(TINY, classes=("a", "b", "c"), pretrained=path, image_size=32)
    loaded = clf.model.state_dict()
    for name, value in source.state_dict().items():
        if not name.startswith("fc."):
            torch.testing.assert_close(loaded[name], value, rtol=0, atol=0)
    assert loaded["fc.weight"].shape == (3, source.num_features)  # new head
    assert clf.config.mean == tuple(timm.create_model(TINY).pretrained_cfg["mean"])
    with pytest.raises(FileNotFoundError, match="pretrained weights file not found"):
        ShapeClassifier(TINY, pretrained=tmp_path / "nope.pth")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="does not fit backbone"):
        ShapeClassifier(TINY, pretrained=tmp_path / "other.pth")


# ------------------------------------------------------------------- per-particle shapes
def _shapes_mask() -> InstanceMask:
    yy, xx = np.mgrid[:220, :320]
    lab = np.zeros((220, 320), np.int32)
    lab[(yy - 50) ** 2 + (xx - 50) ** 2 < 30 ** 2] = 1                     # disk
    lab[120:170, 30:80] = 2                                                 # square
    lab[np.abs(yy - 160) + np.abs(xx - 140) < 30] = 3                       # square at 45°
    lab[20:40, 120:220] = 4                                                 # 5:1 rod
    lab[100:110, 220:300] = 5                                               # L: not convex
    lab[100:190, 220:230] = 5
    lab[10:14, 290:294] = 6                                                 # too small to tell
    return InstanceMask(lab)


def test_particle_shapes_from_morphometry():
    table = particle_shapes(_shapes_mask())
    assert list(table["shape"]) == ["sphere", "cube", "cube", "rod", "other", "other"]
    assert shape_fractions(table) == pytest.approx({"sphere": 1 / 6, "cube": 2 / 6,
                                                    "rod": 1 / 6, "other": 2 / 6})
    by_area = shape_fractions(table, weight="area")
    assert by_area["rod"] == pytest.approx(2000 / table["area"].sum())
    assert dominant_shape(table) == "cube"  # two cubes cover the largest area
    assert dominant_shape(table[table["shape"] == "other"]) == "other"
    with pytest.raises(ValueError, match="rod_aspect"):
        ShapeRules(rod_aspect=0.5)


def test_particle_shapes_from_crops(trained):
    clf, _ = trained
    mask = _shapes_mask()
    image = np.where(mask.labels > 0, 200, 40).astype(np.uint8)
    crops = particle_crops([(image, mask)], "disc", min_area=30)
    assert len(crops) == 5 and crops.labels == ["disc"] * 5
    table = particle_shapes(mask, image, classifier=clf)
    assert set(table["shape"]) <= {"disc", "bar"} and {"p_disc", "p_bar"} <= set(table.columns)
    with pytest.raises(ValueError, match="image is required"):
        particle_shapes(mask, classifier=clf)


# ------------------------------------------------------------------------------------ CLI
def test_cli_train_predict_evaluate(tmp_path, blobs, capsys):
    from utilegen.cli import main
    from utilegen.io import write_image

    folder = tmp_path / "images"
    folder.mkdir()
    rows = ["filename,shape"]
    for i, (image, label) in enumerate(blobs):
        write_image(folder / f"im{i:02d}.tif", image)
        rows.append(f"im{i:02d}.png,{label}")
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    model = tmp_path / "model"
    assert main(["classify", "train", "--images", str(folder), "--labels", str(labels),
                 "--classes", "disc,bar", "--backbone", TINY, "--image-size", "32", "--steps", "2",
                 "--batch-size", "4", "--out", str(model), "--quiet"]) == 0
    assert (model / "weights.pt").is_file()
    assert main(["classify", "predict", "--model", str(model), str(folder / "im00.tif"),
                 "--csv", str(tmp_path / "p.csv")]) == 0
    assert (tmp_path / "p.csv").read_text().startswith("name,label,p_disc,p_bar")
    assert main(["classify", "evaluate", "--model", str(model), "--images", str(folder),
                 "--labels", str(labels), "--plot", str(tmp_path / "cm.png"),
                 "--json", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["n"] == 16
    assert (tmp_path / "cm.png").stat().st_size > 0
    capsys.readouterr()
    bad = tmp_path / "bad.csv"
    bad.write_text("image,kind\nim00.tif,disc\n")
    assert main(["classify", "evaluate", "--model", str(model), "--images", str(folder),
                 "--labels", str(bad)]) == 2
    assert "filename,shape" in capsys.readouterr().err


# ------------------------------------------------------- the shipped per-particle classifier
def test_shipped_classifier_loads_offline_and_names_rendered_shapes(rendered_shapes):
    from utilegen.classify import ShapeClassifier, classify_crops, list_pretrained

    assert "emps" in list_pretrained()
    clf = ShapeClassifier.pretrained("emps")  # from the package: no network
    assert clf.level == "particle" and set(clf.classes) == {"sphere", "cube", "rod", "other"}
    image, mask, truth = rendered_shapes
    labels = sorted(truth)
    pred = classify_crops(clf, image, mask, labels)
    got = dict(zip(labels, pred.labels, strict=True))
    for shape in ("sphere", "cube", "rod"):
        mine = [k for k in labels if truth[k] == shape]
        right = sum(got[k] == shape for k in mine)
        assert right >= len(mine) - 1, (shape, {k: got[k] for k in mine})
    assert pred.probabilities.shape == (len(labels), 4)
    np.testing.assert_allclose(pred.probabilities.sum(1), 1, atol=1e-5)
    with pytest.raises(ValueError, match="unknown pretrained classifier"):
        ShapeClassifier.pretrained("nope")


def test_half_precision_save_halves_the_file_and_loads(trained, blobs, tmp_path):
    clf, _ = trained
    clf.save(tmp_path / "full")
    clf.save(tmp_path / "half", half=True)
    full, half = (tmp_path / "full" / "weights.pt").stat().st_size, \
        (tmp_path / "half" / "weights.pt").stat().st_size
    assert half < 0.6 * full
    back = type(clf).load(tmp_path / "half")
    assert next(back.model.parameters()).dtype == torch.float32
    np.testing.assert_allclose(back.predict_proba(blobs), clf.predict_proba(blobs), atol=5e-3)


def test_classifier_level_is_checked_and_saved(tmp_path):
    from utilegen.classify import ClassifierConfig, ShapeClassifier

    with pytest.raises(ValueError, match="level"):
        ClassifierConfig(backbone=TINY, level="pixel")
    clf = ShapeClassifier(TINY, classes=("a", "b"), image_size=32, level="particle")
    clf.save(tmp_path / "m")
    assert ShapeClassifier.load(tmp_path / "m").level == "particle"
    assert "level='particle'" in repr(clf)


def test_shape_fractions_by_mean_probability():
    import pandas as pd

    table = pd.DataFrame({"shape": ["sphere", "cube", "cube"], "area": [100.0, 10.0, 10.0],
                          "p_sphere": [0.9, 0.45, 0.4], "p_cube": [0.1, 0.55, 0.6],
                          "p_rod": [0.0, 0.0, 0.0]})
    got = shape_fractions(table, weight="probability")
    assert got == pytest.approx({"sphere": 1.75 / 3, "cube": 1.25 / 3, "rod": 0.0, "other": 0.0})
    assert dominant_shape(table, weight="probability") == "sphere"  # soft counts
    assert dominant_shape(table, weight="count") == "cube"
    with pytest.raises(ValueError, match="p_<shape>"):
        shape_fractions(table[["shape", "area"]], weight="probability")
    aggregates = table.assign(shape=["other"] * 3)  # nothing named sphere / cube / rod
    assert dominant_shape(aggregates, weight="probability") == "other"


def test_classify_cli_refuses_a_particle_model_on_whole_images(tmp_path, capsys):
    from utilegen.classify import ShapeClassifier
    from utilegen.cli import main
    from utilegen.io import write_image

    ShapeClassifier(TINY, classes=("a", "b"), image_size=32, level="particle").save(
        tmp_path / "m")
    write_image(tmp_path / "x.tif", np.zeros((40, 40), np.uint8))
    assert main(["classify", "predict", "--model", str(tmp_path / "m"),
                 str(tmp_path / "x.tif")]) != 0
    assert "per-particle classifier" in capsys.readouterr().err


def test_crops_of_float_and_nan_images_keep_the_image_contrast():
    from utilegen.classify import classify_crops

    class Recorder:  # a classifier that keeps what it is given
        def predict(self, crops):
            self.crops = crops
            return "seen"

    lab = np.zeros((60, 120), np.int32)
    lab[20:40, 20:40], lab[20:40, 80:100] = 1, 2
    image = np.where(lab > 0, 10.0, 50.0)
    image[:, 60:] += 1000.0  # the right half is much brighter, particle and ground
    image[30, 30] = np.nan  # a dead pixel inside the first particle's crop
    image[5, 5] = np.inf  # and an infinite one outside
    rec = Recorder()
    assert classify_crops(rec, image, InstanceMask(lab), [1, 2]) == "seen"
    left, right = rec.crops
    assert left.dtype == right.dtype == np.uint8
    # one mapping for the whole image: the right particle stays brighter than the left
    # one (a crop stretched on its own would make them look alike)
    assert right.mean() > left.mean() + 100
    assert left[13, 13] == left.min()  # the NaN pixel (image row 30, col 30) went low, not 255
    same = particle_crops([(image, InstanceMask(lab))], "x", min_area=10, exclude_border=False)
    np.testing.assert_array_equal(same.image(0), left)  # training crops are cut the same way
