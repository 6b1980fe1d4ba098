"""Fault and abuse cases: degenerate images never take the process down, and a native crash
in one image fails that image alone (issue: robustness).

The critical case: a flat image with one small feature has equal 1st and 99.8th
percentiles. Percentile normalization used to divide by ~1e-20, the network then
predicted distances of ~1e23, and stardist's Clipper NMS aborted the whole process (a C++
exception no Python ``try`` can catch). A regression here kills the test worker, which
pytest-xdist reports as a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from utilegen import InstanceMask
from utilegen.segment import normalize

torch = pytest.importorskip("torch")


def flat_with_feature(dtype, shape=(96, 96)) -> np.ndarray:
    """A flat background with one 4x4 feature: under 1 % of the area, so p1 == p99.8."""
    if np.issubdtype(dtype, np.floating):
        img = np.full(shape, 0.25, dtype)
        img[40:44, 40:44] = 0.75
    else:
        top = np.iinfo(dtype).max
        img = np.full(shape, top // 3, dtype)
        img[40:44, 40:44] = top // 3 * 2
    return img


def degenerate_images() -> dict[str, np.ndarray]:
    nan = np.full((64, 64), np.nan, np.float32)
    some_inf = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    some_inf[10:20, 10:20] = np.inf
    some_inf[30:32, 30:32] = -np.inf
    some_nan = some_inf.copy()
    some_nan[50:60, 50:60] = np.nan
    return {
        "flat uint8": flat_with_feature(np.uint8), "flat uint16": flat_with_feature(np.uint16),
        "flat float32": flat_with_feature(np.float32),
        "flat float64": flat_with_feature(np.float64) * 1e-30,  # tiny but real contrast
        "constant": np.full((64, 64), 7, np.uint8), "all nan": nan,
        "inf pixels": some_inf, "nan and inf pixels": some_nan,
        "huge floats": np.where(flat_with_feature(np.float64) > 0.5, 1e300, -1e300),
        "2x2": np.array([[0, 255], [255, 0]], np.uint8),
    }


# -------------------------------------------------------------------- normalization
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_normalize_flat_image_with_small_feature_uses_min_max(dtype):
    x = normalize(flat_with_feature(dtype))
    assert x.dtype == np.float32 and np.isfinite(x).all()
    # percentiles coincide: the full range maps background to 0 and the feature to 1
    assert x[0, 0] == pytest.approx(0) and x[41, 41] == pytest.approx(1)


def test_normalize_constant_and_non_finite_images_are_finite_and_bounded():
    assert (normalize(np.full((10, 10), 3.5)) == 0).all()
    assert (normalize(np.full((10, 10), np.nan)) == 0).all()
    img = np.arange(100, dtype=np.float64).reshape(10, 10)
    img[0, 0], img[0, 1], img[0, 2] = np.nan, np.inf, -np.inf
    x = normalize(img)
    assert np.isfinite(x).all() and np.abs(x).max() <= 1000
    # the finite pixels keep their order and the usual percentile scaling
    assert x[9, 9] > x[5, 5] > x[1, 1]
    for value in degenerate_images().values():
        y = normalize(value)
        assert np.isfinite(y).all() and np.abs(y).max() <= 1000


def test_normal_images_normalize_as_before():
    rng = np.random.default_rng(0)
    img = rng.normal(100, 20, (50, 60))
    lo, hi = np.percentile(img, (1, 99.8))
    np.testing.assert_allclose(normalize(img), ((img - lo) / (hi - lo)).astype(np.float32),
                               rtol=1e-5, atol=1e-6)


def test_candidates_are_finite_and_bounded_before_nms():
    from utilegen.segment._predict import bounded

    pts = np.array([[1, 1], [2, 2], [3, 3], [4, 4]])
    probs = np.array([0.9, np.nan, 0.8, 0.7], np.float32)
    dists = np.ones((4, 8), np.float32)
    dists[0] = 1e23
    dists[3, 2] = np.inf
    p, _, d = bounded(pts, probs, dists, (30, 40))
    assert p.tolist() == [[1, 1], [3, 3]]  # NaN prob and inf distance dropped
    assert d.max() == pytest.approx(50.0) and d.min() >= 1e-3  # clipped to the diagonal


# ------------------------------------------------------------------------ predict
@pytest.fixture(scope="module")
def default_model():
    from utilegen.segment import StarDist

    try:
        return StarDist.pretrained("emps")
    except FileNotFoundError:
        pytest.skip("the shipped model is not installed")


@pytest.mark.parametrize("name", list(degenerate_images()))
def test_predict_survives_degenerate_images(default_model, name):
    image = degenerate_images()[name]
    for scale in (1.0, "auto"):
        mask = default_model.predict(image, scale=scale)
        assert isinstance(mask, InstanceMask) and mask.shape == image.shape


def test_predict_rejects_1x1_with_a_clear_error(default_model):
    with pytest.raises(ValueError, match="too small"):
        default_model.predict(np.zeros((1, 1), np.uint8))


def test_flat_image_in_a_fresh_process_does_not_abort():
    """The exact report: the shipped model on a flat uint8 image with one small particle."""
    code = ("import numpy as np; from utilegen.segment import StarDist\n"
            "img = np.full((256, 256), 100, np.uint8); img[120:126, 120:126] = 200\n"
            "m = StarDist.pretrained('emps')\n"
            "print(m.predict(img, scale=1.0).count, m.predict(img, scale='auto').count)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       check=False)
    assert r.returncode == 0, r.stderr[-2000:]


# ------------------------------------------------------------------------ analyze
def good_image() -> np.ndarray:
    yy, xx = np.mgrid[:96, :96]
    img = np.full((96, 96), 200, np.uint8)
    img[(yy - 40) ** 2 + (xx - 40) ** 2 <= 100] = 40
    return img


def test_analyze_reports_every_image_of_a_degenerate_batch(default_model):
    from utilegen import analyze

    bad = degenerate_images()
    images = [good_image(), *bad.values(), np.zeros((1, 1), np.uint8), good_image()]
    ids = ["good-1", *[n.replace(" ", "-") for n in bad], "1x1", "good-2"]
    report = analyze(images, segmenter=default_model, ids=ids)
    failed = {i for i, _ in report.errors}
    assert failed == {"1x1"}, report.errors  # a clear per-image error, not a crash
    assert "too small" in dict(report.errors)["1x1"]
    assert set(report.ids) == set(ids) - {"1x1"}
    assert {"good-1", "good-2"} <= set(report.ids)


class AbortOnMarker:
    """A segmenter that crashes its process natively on images whose first pixel is 13."""

    def predict(self, image):
        if int(np.asarray(image).flat[0]) == 13:
            os.abort()  # what a C++ exception escaping NMS does
        from scipy import ndimage

        return InstanceMask(ndimage.label(np.asarray(image) < 100)[0].astype(np.uint16))


def test_isolated_analyze_survives_a_native_crash_on_one_image():
    from utilegen.pipeline import IsolatedWorker, analyze

    crash = good_image()
    crash[0, 0] = 13
    with IsolatedWorker() as worker:
        report = analyze([good_image(), crash, good_image()], segmenter=AbortOnMarker(),
                         ids=["a", "crash", "b"], isolate=worker)
        assert report.ids == ["a", "b"]
        assert [i for i, _ in report.errors] == ["crash"]
        assert "crashed" in report.errors[0][1]
        assert report.count("a") == report.count("b") == 1
        # the restarted worker keeps serving later calls
        again = analyze([good_image()], segmenter=AbortOnMarker(), isolate=worker)
        assert again.count(again.ids[0]) == 1


def test_cli_analyze_writes_a_report_despite_degenerate_images(tmp_path):
    import tifffile

    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "good.tif", good_image())
    tifffile.imwrite(folder / "flat8.tif", flat_with_feature(np.uint8))
    tifffile.imwrite(folder / "flat16.tif", flat_with_feature(np.uint16))
    tifffile.imwrite(folder / "allnan.tif", np.full((64, 64), np.nan, np.float32))
    tifffile.imwrite(folder / "tiny.tif", np.zeros((1, 1), np.uint8))
    out = tmp_path / "report"
    r = subprocess.run([sys.executable, "-m", "utilegen", "analyze", str(folder),
                        "--out", str(out)],
                       capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 3, r.stderr[-2000:]  # 3: some images were skipped (documented)
    assert "tiny.tif: image is too small" in r.stderr
    import pandas as pd

    summary = pd.read_csv(out / "summary.csv")
    assert {"good", "flat8", "flat16", "allnan"} <= set(summary["image_id"].astype(str))
    assert "tiny" in (out / "errors.csv").read_text()


# ------------------------------------------------------------- segment predict CLI
def _run_segment(argv):
    import argparse

    from utilegen.segment._cli import add_cli

    parser = argparse.ArgumentParser(prog="utilegen")
    add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_segment_predict_never_loses_a_result_to_a_shared_stem(tmp_path, default_model):
    import tifffile

    from utilegen.io import read_mask

    for sub, value in (("a", 40), ("b", 90)):
        (tmp_path / sub).mkdir()
        img = np.full((64, 64), 200, np.uint8)
        img[20:40, 20:40] = value
        tifffile.imwrite(tmp_path / sub / "x.tif", img)
    out = tmp_path / "labels"
    argv = ["segment", "predict", str(tmp_path / "a" / "x.tif"), str(tmp_path / "b" / "x.tif"),
            "--out", str(out), "--overwrite"]
    assert _run_segment(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["x-2.tif", "x.tif"]
    assert read_mask(out / "x.tif").shape == (64, 64)
    # without --overwrite, nothing is replaced and nothing is predicted
    with pytest.raises(FileExistsError, match="exist"):
        _run_segment(argv[:-1])


def test_segment_predict_skips_unreadable_files_and_goes_on(tmp_path, default_model, capsys):
    import tifffile

    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "a.tif", np.full((64, 64), 100, np.uint8))
    (tmp_path / "in" / "b.png").write_bytes(b"not an image at all")
    tifffile.imwrite(tmp_path / "in" / "c.tif", np.zeros((1, 1), np.uint8))
    tifffile.imwrite(tmp_path / "in" / "d.tif", flat_with_feature(np.uint16))
    assert _run_segment(["segment", "predict", str(tmp_path / "in"), "--out",
                         str(tmp_path / "out")]) == 3
    err = capsys.readouterr().err
    assert "b.png" in err and "c.tif" in err and "2 of 4 file(s) skipped" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.tif", "d.tif"]


def test_unique_names():
    from utilegen.io import unique_names

    assert unique_names(["x", "x", "y", "x", "x-2"]) == ["x", "x-2", "y", "x-3", "x-2-2"]


# ------------------------------------------------------------------ files and arguments
def test_palette_tiff_and_png_are_read_as_their_grey_values(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    from utilegen.io import read_image

    idx = (np.arange(64 * 64).reshape(64, 64) % 29).astype(np.uint8)
    palette = np.zeros((256, 3), np.uint8)
    palette[:29] = np.arange(29)[:, None] * 8 + 10  # grey levels 10..234, not 0..28
    im = Image.fromarray(idx, mode="P")
    im.putpalette(palette.ravel().tolist())
    expected = np.asarray(im.convert("L"))
    for suffix in (".tif", ".png"):
        im.save(tmp_path / f"p{suffix}")
        got = read_image(tmp_path / f"p{suffix}")
        assert np.array_equal(got, expected), suffix
        assert got.max() == 234


def test_pixel_count_is_checked_from_the_header_before_decoding(tmp_path, monkeypatch):
    import struct
    import zlib

    import cv2
    import tifffile

    from utilegen import io

    # a tiny PNG whose header claims 30000 x 30000: refused without decoding
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    png = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
           + struct.pack(">I", zlib.crc32(chunk)) + b"\x00" * 100)
    (tmp_path / "bomb.png").write_bytes(png)
    for reader in (io.read_image, io.read_mask):
        with pytest.raises(ValueError, match="MAX_PIXELS"):
            reader(tmp_path / "bomb.png")
    # every format, with a lowered limit
    img = np.zeros((64, 64), np.uint8)
    for suffix in (".png", ".jpg", ".bmp"):
        cv2.imwrite(str(tmp_path / f"a{suffix}"), img)
    tifffile.imwrite(tmp_path / "a.tif", img)
    monkeypatch.setattr(io, "MAX_PIXELS", 1000)
    for suffix in (".png", ".jpg", ".bmp", ".tif"):
        with pytest.raises(ValueError, match="64 x 64 = 4,096 pixels"):
            io.read_image(tmp_path / f"a{suffix}")
    monkeypatch.setattr(io, "MAX_PIXELS", 4096)
    assert io.read_image(tmp_path / "a.jpg").shape == (64, 64)


def test_generate_rejects_bad_arguments_clearly(tmp_path, capsys):
    from utilegen.cli import main

    (tmp_path / "file").write_text("x")
    assert main(["generate", "--sample", "--out", str(tmp_path / "file"), "--n", "2"]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["generate", "--sample", "--out", str(tmp_path / "o"), "--n", "0"]) == 2
    assert "--n must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_negative_ranges_parse_as_the_help_says(tmp_path):
    from utilegen.cli import _join_negative_ranges, build_parser

    argv = ["generate", "--sample", "--out", str(tmp_path / "o"), "--rotation", "-30-30"]
    args = build_parser().parse_args(_join_negative_ranges(argv))
    assert args.rotation == (-30.0, 30.0)


def test_compositor_rejects_non_finite_ranges():
    from utilegen.synth import Compositor

    for bad in ((float("nan"), 2.0), (0.3, float("inf"))):
        with pytest.raises(ValueError, match="finite"):
            Compositor(scale=bad)


def test_absurd_pixel_sizes_are_refused_up_front():
    from utilegen import analyze
    from utilegen.morphometry import measure
    from utilegen.segment import ThresholdSegmenter

    for bad in (1e-300, 1e300, 0, -1, float("nan")):
        with pytest.raises(ValueError, match="pixel_size must be a positive number in"):
            analyze([good_image()], segmenter=ThresholdSegmenter(), pixel_size=bad)
        with pytest.raises(ValueError, match="pixel_size"):
            measure(InstanceMask(np.ones((4, 4), np.uint16)), pixel_size=bad)


# ------------------------------------------------------------ kill and resume an export
_EXPORT = """
import sys
from utilegen.datasets import sample_pair
from utilegen.synth import BackgroundPool, Compositor, ParticlePool, SyntheticDataset
pairs = [sample_pair((256, 256), particles=12, rng=0)]
ds = SyntheticDataset(ParticlePool.from_pairs(pairs), BackgroundPool.from_pairs(pairs),
                      compositor=Compositor(image_size=256, scale=(0.8, 1.2)),
                      length=int(sys.argv[2]),
                      seed=0)
ds.export(sys.argv[1], workers=2, progress=False)
"""


def test_killed_export_workers_stop_and_a_resume_completes_it(tmp_path):
    import signal
    import time

    out = tmp_path / "export"
    proc = subprocess.Popen([sys.executable, "-c", _EXPORT, str(out), "800"])
    records = out / "records"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not records.is_dir()
                                           or len(list(records.iterdir())) < 20):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(2)  # the workers notice within a second
    count = len(list((out / "images").iterdir()))
    time.sleep(2)
    assert len(list((out / "images").iterdir())) == count, "workers went on writing"
    assert count < 800
    # plant a temporary file like the ones a kill leaves: the resume removes it
    (out / "images" / ".00007.tif.deadbeef.part").write_bytes(b"half")
    r = subprocess.run([sys.executable, "-c", _EXPORT, str(out), "800"], capture_output=True,
                       text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    names = sorted(p.name for p in (out / "images").iterdir())
    assert len(names) == 800 and not any(".part" in n for n in names)
    import json

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and len(manifest["items"]) == 800
