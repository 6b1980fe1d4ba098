"""analyze() and Report: known particles in, known table/distribution/files out.

Most tests segment with `ThresholdSegmenter` (Otsu + connected components), a classical
stand-in: it is exact on the well-separated synthetic disks used here, so the expected
counts and sizes are known in advance. The StarDist plumbing (a saved model folder, tiled
prediction) is tested with a tiny untrained network, and the shipped default model, when
present, on one EMPS image.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import utilegen
from utilegen import InstanceMask, io
from utilegen.pipeline import Report, analyze, overlay
from utilegen.segment import ThresholdSegmenter

# (row, col, radius) of dark disks; the last one is cut by the top border.
DISKS = [(40, 40, 12), (40, 110, 8), (110, 60, 15), (120, 130, 10), (0, 150, 9)]
INSIDE = DISKS[:-1]


def disks_image(shape=(160, 180), disks=DISKS, dtype=np.uint8) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.full(shape, 200, dtype=np.float64)
    for r, c, rad in disks:
        img[(yy - r) ** 2 + (xx - c) ** 2 <= rad**2] = 50
    if dtype == np.uint16:
        img = img * 250
    return img.astype(dtype)


@pytest.fixture
def seg():
    return ThresholdSegmenter(sigma=0, min_area=5)


@pytest.fixture
def folder(tmp_path) -> Path:
    d = tmp_path / "micrographs"
    d.mkdir()
    import cv2

    cv2.imwrite(str(d / "a.png"), disks_image())
    cv2.imwrite(str(d / "b.png"), disks_image(disks=INSIDE[:2]))
    return d


def test_known_disks_table_distribution_and_summary(seg):
    report = analyze(disks_image(), segmenter=seg, pixel_size=0.5, unit="nm")
    assert isinstance(report, Report)
    assert report.ids == ["image_0"] and report.errors == []
    # All five are segmented; the one cut by the border is left out of the table.
    assert len(report.masks["image_0"]) == 5
    table = report.particles
    assert len(table) == 4 and report.count("image_0") == 4
    assert list(table.columns[:3]) == ["image_id", "image_class", "shape_class"]
    assert {"equivalent_diameter", "circularity", "feret_diameter_max"} <= set(table.columns)
    expected = sorted(2 * rad * 0.5 for _, _, rad in INSIDE)  # nm
    np.testing.assert_allclose(sorted(table["equivalent_diameter"]), expected, rtol=0.06)
    assert table["shape_class"].tolist() == ["sphere"] * 4  # digital disks
    assert table.attrs["units"]["equivalent_diameter"] == "nm"
    psd = report.distributions["equivalent_diameter"]
    assert len(psd) == 4 and psd.unit == "nm"
    overall = report.summary.iloc[0]
    assert overall["image_id"] == "all" and overall["particles"] == 4
    assert overall["unit"] == "nm" and overall["pixel_size"] == 0.5
    assert overall["equivalent_diameter_mean"] == pytest.approx(np.mean(expected), rel=0.06)
    assert overall["fraction_sphere"] == 1.0
    assert len(report.summary) == 2  # batch + one image
    # sampling intervals: the mean's from Student's t around it; four particles are too
    # few for a 95 % interval of the median (it would reach past the extremes)
    low, high = (overall[f"equivalent_diameter_mean_ci_{end}"] for end in ("low", "high"))
    assert low < overall["equivalent_diameter_mean"] < high
    assert np.isnan(overall["equivalent_diameter_d50_ci_low"])


def test_keep_border_particles(seg):
    report = analyze(disks_image(), segmenter=seg, exclude_border=False)
    assert len(report.particles) == 5
    assert report.particles["touches_border"].sum() == 1
    assert report.summary.iloc[0]["unit"] == "px"  # no calibration given: pixels


def test_package_attribute_is_callable(seg):
    report = utilegen.analyze(disks_image(), segmenter=seg)
    assert len(report.particles) == 4


def test_folder_glob_and_list_inputs(folder, seg):
    by_folder = analyze(folder, segmenter=seg)
    assert by_folder.ids == ["a", "b"]
    assert by_folder.count("a") == 4 and by_folder.count("b") == 2
    by_glob = analyze(str(folder / "*.png"), segmenter=seg)
    assert by_glob.ids == ["a", "b"]
    arrays = analyze([disks_image(), disks_image(disks=INSIDE[:1])], segmenter=seg,
                     ids=["x", "y"])
    assert arrays.ids == ["x", "y"] and arrays.count("y") == 1
    stack = analyze(np.stack([disks_image()] * 3), segmenter=seg)
    assert stack.ids == ["image_0", "image_1", "image_2"]


def test_bad_files_are_reported_and_skipped(folder, tmp_path, seg):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    inputs = [folder / "a.png", corrupt, text, tmp_path / "missing.tif", folder / "b.png"]
    report = analyze(inputs, segmenter=seg)
    assert report.ids == ["a", "b"]
    failed = [name for name, _ in report.errors]
    assert failed == [str(corrupt), str(text), str(tmp_path / "missing.tif")]
    assert "not a valid PNG" in report.errors[0][1]
    assert "unsupported file type" in report.errors[1][1]
    assert "no such file" in report.errors[2][1]


def test_segmenter_failure_on_one_image_does_not_abort(seg):
    class Flaky:
        def predict(self, image):
            if image.shape[0] == 40:
                raise RuntimeError("out of memory")
            return seg.predict(image)

    report = analyze([disks_image(), np.full((40, 40), 9, np.uint8), disks_image()],
                     segmenter=Flaky())
    assert report.ids == ["image_0", "image_2"]
    assert report.errors == [("image_1", "RuntimeError: out of memory")]


def test_duplicate_stems_get_unique_ids(tmp_path, seg):
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        io.write_image(tmp_path / sub / "same.tif", disks_image())
    report = analyze([tmp_path / "x" / "same.tif", tmp_path / "y" / "same.tif"], segmenter=seg)
    assert report.ids == ["same", "same-2"]


def test_calibration_read_from_tiff(tmp_path, seg):
    path = io.write_image(tmp_path / "cal.tif", disks_image(dtype=np.uint16), pixel_size=0.25,
                          unit="nm")
    report = analyze(path, segmenter=seg)
    assert report.calibration["cal"] == (0.25, "nm")
    np.testing.assert_allclose(sorted(report.particles["equivalent_diameter"]),
                               sorted(2 * r * 0.25 for _, _, r in INSIDE), rtol=0.06)
    # An explicit pixel size wins over the file's calibration.
    assert analyze(path, segmenter=seg, pixel_size=2.0, unit="µm").calibration["cal"] == (2.0, "µm")


def test_no_particles_gives_empty_table_and_a_plot(seg):
    report = analyze(np.full((64, 64), 100, np.uint8), segmenter=seg)
    assert len(report.particles) == 0 and "equivalent_diameter" in report.particles.columns
    assert report.distributions == {}
    assert report.summary.iloc[0]["particles"] == 0
    assert report.psd_figure() is not None


def test_classifier_fills_image_class(seg):
    class Prediction:  # the shape of utilegen.classify.Prediction
        def __init__(self, labels):
            self.labels = labels

    class Classifier:
        def predict(self, image):
            return Prediction(("sphere",))

    report = analyze(disks_image(), segmenter=seg, classifier=Classifier())
    assert report.classes == {"image_0": "sphere"}
    assert set(report.particles["image_class"]) == {"sphere"}
    assert report.summary.iloc[0]["image_class"] == "sphere"


def test_invalid_arguments(seg, tmp_path):
    with pytest.raises(ValueError, match="pixel_size"):
        analyze(disks_image(), segmenter=seg, pixel_size=-1)
    with pytest.raises(ValueError, match="unit"):
        analyze(disks_image(), segmenter=seg, pixel_size=1, unit="")
    with pytest.raises(FileNotFoundError, match="no files match"):
        analyze(str(tmp_path / "*.tif"), segmenter=seg)
    with pytest.raises(FileNotFoundError):
        analyze(tmp_path / "nope.png", segmenter=seg)
    with pytest.raises(ValueError, match="no images"):
        analyze([], segmenter=seg)
    with pytest.raises(ValueError, match="predict"):
        analyze(disks_image(), segmenter=object())
    with pytest.raises(ValueError, match="ids"):
        analyze([disks_image()] * 2, segmenter=seg, ids=["a", "a"])


def test_missing_default_model_gives_a_clear_error(monkeypatch):
    from utilegen.segment import StarDist

    def missing(cls, name="emps"):
        raise FileNotFoundError("the pretrained model 'emps' is missing")

    monkeypatch.setattr(StarDist, "pretrained", classmethod(missing))
    with pytest.raises(FileNotFoundError, match="default segmentation model.*segmenter="):
        analyze(disks_image())


def test_overlay_outlines_measured_and_excluded_particles(seg):
    image = disks_image()
    mask = seg.predict(image)
    border = int(mask.labels[0, 150])
    measured = [i for i in mask.ids if i != border]
    rgb = overlay(image, mask, measured=measured, labels_text=False)
    assert rgb.shape == image.shape + (3,) and rgb.dtype == np.uint8
    r, c, rad = INSIDE[2]
    assert tuple(rgb[r, c - rad]) == (255, 40, 40)  # outline of a measured disk
    assert tuple(rgb[0, 150 - 9]) == (150, 150, 150)  # outline of the border particle
    assert tuple(rgb[r, c]) == (0, 0, 0)  # interior keeps the (stretched) image
    assert tuple(rgb[5, 5]) == (255, 255, 255)
    numbered = overlay(image, mask, measured=measured)
    near = numbered[r - 8:r + 8, c - 8:c + 8].astype(int)  # the id written at the centre
    assert np.any((near[..., 0] > 180) & (near[..., 1] > 160) & (near[..., 2] < 100))
    assert np.array_equal(numbered[0:20, 0:20], rgb[0:20, 0:20])  # nothing far from particles


def test_save_writes_every_file_atomically_and_refuses_to_overwrite(folder, tmp_path, seg,
                                                                    hashes):
    before = hashes(folder)
    report = analyze(folder, segmenter=seg, pixel_size=0.5)
    out = report.save(tmp_path / "report")
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == ["labels/a.tif", "labels/b.tif", "overlays/a.png", "overlays/b.png",
                     "particles.csv", "psd.png", "psd_histogram.csv", "report.json",
                     "summary.csv"]
    assert not list(out.rglob(".*"))  # no temporary files left behind
    particles = pd.read_csv(out / "particles.csv")
    assert len(particles) == 6 and particles["image_id"].tolist().count("a") == 4
    assert pd.read_csv(out / "summary.csv")["image_id"].tolist() == ["all", "a", "b"]
    assert io.read_mask(out / "labels" / "a.tif") == report.masks["a"]
    assert io.read_image(out / "overlays" / "a.png").shape == (160, 180)
    assert io.read_image(out / "psd.png").ndim == 2
    import json

    info = json.loads((out / "report.json").read_text())
    assert [i["particles"] for i in info["images"]] == [4, 2]
    assert info["column_units"]["area"] == "nm²"
    with pytest.raises(FileExistsError, match="not empty"):
        report.save(out)
    report.save(out, overwrite=True)
    assert hashes(folder) == before  # inputs untouched


def test_save_names_files_safely(tmp_path, seg):
    report = analyze([disks_image()], segmenter=seg, ids=["../../evil name?"])
    out = report.save(tmp_path / "r")
    assert [p.name for p in (out / "overlays").iterdir()] == ["evil_name.png"]
    assert pd.read_csv(out / "particles.csv")["image_id"][0] == "../../evil name?"


def test_errors_file(tmp_path, seg):
    report = analyze([disks_image(), tmp_path / "gone.png"], segmenter=seg)
    out = report.save(tmp_path / "r")
    errors = pd.read_csv(out / "errors.csv")
    assert errors["image"].tolist() == [str(tmp_path / "gone.png")]


def test_saved_stardist_folder_and_tiled_prediction(tmp_path):
    """Plumbing only: an untrained tiny StarDist, loaded from a folder, on an image larger
    than one tile. What it finds is arbitrary; the report must be consistent with it."""
    from utilegen.segment import StarDist, StarDistConfig

    config = StarDistConfig(n_rays=8, unet_depth=1, base_filters=4, feature_channels=0,
                            patch_size=32, mixed_precision=False)
    StarDist(config, seed=0).save(tmp_path / "model")
    # Wider than one 1024 px tile: predicted in tiles.
    image = disks_image(shape=(200, 1100), disks=[(100, 60, 20), (100, 1000, 25)])
    report = analyze(image, segmenter=tmp_path / "model", pixel_size=1.0)
    mask = report.masks["image_0"]
    assert mask.shape == (200, 1100)
    assert len(report.particles) == len(set(mask.ids) - set(mask.border_ids()))
    assert "StarDist" in report.settings["segmenter"]
    # the report says which scale the segmenter used, and why
    assert report.segmentation_info["image_0"] == {
        "scale": config.scale, "mode": "fixed", "passes": 1, "reason": "fixed scale",
        "tta": False}
    assert report.summary.set_index("image_id").loc["image_0", "segmentation_scale"] == \
        config.scale
    saved = json.loads((report.save(tmp_path / "report") / "report.json").read_text())
    assert saved["images"][0]["segmentation"]["mode"] == "fixed"
    # test-time augmentation, asked of the model, is used and reported
    model = StarDist.load(tmp_path / "model")
    model.predict_tta = True
    report = analyze(image, segmenter=model, pixel_size=1.0)
    assert report.segmentation_info["image_0"]["tta"] is True


def test_default_model_on_an_emps_image(emps_root):
    from utilegen.segment import StarDist

    try:
        StarDist.pretrained("emps")
    except (FileNotFoundError, OSError, ValueError) as exc:
        pytest.skip(f"no default model shipped yet: {exc}")
    # Plumbing with no model argument; the model's accuracy is tested in test_segment.
    path = emps_root / "images" / "0289bd97e6.png"
    report = analyze(path, pixel_size=1.0)
    assert report.errors == [] and report.ids == [path.stem]
    mask = report.masks[path.stem]
    assert mask.shape == (512, 687)
    assert report.count(path.stem) == len(set(mask.ids) - set(mask.border_ids()))
    # one pass at a scale chosen for this image, with the measured width as the reason
    seg = report.segmentation_info[path.stem]
    assert seg["mode"] == "auto" and 0.05 <= seg["scale"] <= 4
    assert "px wide" in seg["reason"] and seg["particle_width_px"] > 0


def test_cli_analyze(folder, tmp_path, monkeypatch, capsys):
    from utilegen import pipeline as analyze_module
    from utilegen.cli import main

    monkeypatch.setattr(analyze_module, "load_segmenter",
                        lambda s=None: ThresholdSegmenter(sigma=0, min_area=5))
    out = tmp_path / "report"
    assert main(["analyze", str(folder), "--pixel-size", "0.5", "--unit", "nm",
                 "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "6 particles in 2 image(s)" in printed
    assert len(pd.read_csv(out / "particles.csv")) == 6
    # Not empty now: refused before any work, with a message, exit status 2.
    assert main(["analyze", str(folder), "--out", str(out), "--no-progress"]) == 2
    assert "not empty" in capsys.readouterr().err
    # A bad file among good ones: reported, the rest written, exit status 3.
    (tmp_path / "bad.png").write_bytes(b"nope")
    code = main(["analyze", str(folder / "a.png"), str(tmp_path / "bad.png"),
                 "--out", str(tmp_path / "r2"), "--no-progress"])
    assert code == 3 and "skipped" in capsys.readouterr().err
    assert (tmp_path / "r2" / "errors.csv").is_file()
    # --tta asks a StarDist for test-time augmentation; another segmenter is refused
    assert main(["analyze", str(folder / "a.png"), "--out", str(tmp_path / "r3"), "--tta",
                 "--no-progress"]) == 2
    assert "--tta needs a StarDist segmenter" in capsys.readouterr().err


def test_cli_analyze_tta_is_used_and_reported(folder, tmp_path, monkeypatch):
    from utilegen import pipeline as analyze_module
    from utilegen.cli import main
    from utilegen.segment import StarDist, StarDistConfig

    tiny = StarDist(StarDistConfig(n_rays=8, unet_depth=1, base_filters=4, feature_channels=0,
                                   patch_size=32, mixed_precision=False), seed=0)
    monkeypatch.setattr(analyze_module, "load_segmenter",
                        lambda s=None: tiny if s is None else s)
    out = tmp_path / "report"
    assert main(["analyze", str(folder / "a.png"), "--out", str(out), "--tta",
                 "--pixel-size", "1", "--no-progress"]) == 0
    saved = json.loads((out / "report.json").read_text())
    assert saved["images"][0]["segmentation"]["tta"] is True


def test_cli_help_lists_commands_with_examples(capsys):
    from utilegen.cli import build_parser

    text = build_parser().format_help()
    for command in ("generate", "analyze", "serve"):
        assert command in text
    assert "utilegen analyze micrographs/" in text and "utilegen serve" in text  # examples
    sub = build_parser()._subparsers._group_actions[0].choices
    assert "--pixel-size" in sub["analyze"].format_help()
    assert "utilegen analyze micrographs/" in sub["analyze"].format_help()
    assert "--port" in sub["serve"].format_help()
    assert "utilegen serve" in sub["serve"].format_help()


def test_cli_rejects_bad_pixel_size(capsys):
    from utilegen.cli import main

    with pytest.raises(SystemExit):
        main(["analyze", "x.png", "--out", "r", "--pixel-size", "-3"])
    assert "positive number" in capsys.readouterr().err


def test_instance_mask_from_segmenter_is_validated(seg):
    class Wrong:
        def predict(self, image):
            return InstanceMask(np.zeros((5, 5), np.uint16))

    report = analyze(disks_image(), segmenter=Wrong())
    assert report.ids == [] and "shape" in report.errors[0][1]


def test_segmenter_by_shipped_name_or_clear_error():
    from utilegen.pipeline import load_segmenter

    with pytest.raises(FileNotFoundError, match="no model folder 'no_such_model'.*emps"):
        load_segmenter("no_such_model")
    with pytest.raises(FileNotFoundError, match="folder not found"):
        load_segmenter("some/missing/folder")


def test_particle_shapes_do_not_depend_on_the_pixel_size():
    # the rules read pixel areas from the mask, not calibrated areas divided back
    from utilegen.datasets import sample_pair
    from utilegen.pipeline import analyze
    from utilegen.segment import ThresholdSegmenter

    image, _ = sample_pair((256, 256), particles=15, rng=7)
    shapes = [list(analyze([image], segmenter=ThresholdSegmenter(), pixel_size=size)
                   .particles["shape_class"]) for size in (1.0, 7.3)]
    assert shapes[0] == shapes[1] and len(shapes[0]) > 0


class _Known:
    """A segmenter that returns a known mask."""

    def __init__(self, mask):
        self.mask = mask

    def predict(self, image):
        return self.mask


def test_shipped_classifier_names_every_particle(rendered_shapes):
    image, mask, truth = rendered_shapes
    report = analyze(image, segmenter=_Known(mask), pixel_size=None)
    table = report.particles.set_index("label")
    assert {"shape_class", "shape_rules"} <= set(table.columns)
    right = np.mean([table.loc[k, "shape_class"] == truth[k] for k in table.index])
    assert right >= 0.8
    assert {"fraction_sphere", "fraction_cube", "fraction_rod"} <= set(report.summary.columns)
    # the image class is the shape most of the particles have
    for major in ("sphere", "cube", "rod"):
        keep = [k for k in truth if truth[k] == major] + [
            k for k in truth if truth[k] != major][:2]
        mostly = analyze(image, segmenter=_Known(mask.keep(keep)), pixel_size=None)
        assert mostly.classes["image_0"] == major


def test_rules_when_asked_or_when_no_classifier_ships(rendered_shapes, monkeypatch):
    from utilegen.classify import ShapeRules, _registry

    image, mask, _ = rendered_shapes
    by_rules = analyze(image, segmenter=_Known(mask), pixel_size=None, classifier="rules")
    assert "shape_rules" not in by_rules.particles.columns
    assert by_rules.classes["image_0"] is None
    from utilegen.morphometry import measure

    table = measure(mask, pixel_size=1.0, unit="px")
    assert list(by_rules.particles["shape_class"]) == list(ShapeRules().classify(table))
    monkeypatch.setattr(_registry, "PRETRAINED", {})  # an install without the classifier
    fallback = analyze(image, segmenter=_Known(mask), pixel_size=None)
    pd.testing.assert_frame_equal(fallback.particles, by_rules.particles)
