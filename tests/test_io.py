"""utilegen.io: reading images and masks faithfully, calibration, safe atomic writes."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import tifffile

from utilegen import io
from utilegen.io import (
    atomic_path,
    read_image,
    read_mask,
    read_pixel_size,
    to_grayscale,
    write_image,
    write_mask,
)
from utilegen.masks import InstanceMask


def ramp(shape, dtype) -> np.ndarray:
    """Values spanning the dtype's whole range (so clipping or scaling would show)."""
    n = shape[0] * shape[1]
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = np.linspace(info.min, info.max, n).round()
    else:
        values = np.linspace(-1e6, 1e6, n)
        values[1] = np.pi  # a value with many significant digits
    return values.reshape(shape).astype(dtype)


def write_png_rgb(path, rgb):
    """Write an RGB(A) array as PNG; OpenCV wants BGR(A) channel order."""
    code = cv2.COLOR_RGBA2BGRA if rgb.shape[-1] == 4 else cv2.COLOR_RGB2BGR
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, code))


# ---------------------------------------------------------------------------- reading images
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_read_tiff_keeps_dtype_and_values(tmp_path, hashes, dtype):
    data = ramp((7, 9), dtype)
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, data)
    before = hashes(path)
    image = read_image(path)
    assert image.dtype == dtype and image.shape == (7, 9)
    assert np.array_equal(image, data)
    assert hashes(path) == before


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64])
def test_write_image_then_read_is_exact(tmp_path, dtype):
    data = ramp((5, 6), dtype)
    write_image(tmp_path / "a.tif", data)
    image = read_image(tmp_path / "a.tif")
    assert image.dtype == dtype and np.array_equal(image, data)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_read_png_8_and_16_bit(tmp_path, hashes, dtype):
    data = ramp((6, 11), dtype)
    path = tmp_path / "a.png"
    assert cv2.imwrite(str(path), data)
    before = hashes(path)
    image = read_image(path)
    assert image.dtype == dtype and np.array_equal(image, data)
    assert hashes(path) == before


def test_read_jpeg_approximately(tmp_path):
    yy, xx = np.mgrid[:64, :64]
    data = (40 + 2 * xx + yy).astype(np.uint8)  # smooth: JPEG keeps it closely
    path = tmp_path / "a.jpg"
    assert cv2.imwrite(str(path), data, [cv2.IMWRITE_JPEG_QUALITY, 95])
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (64, 64)
    assert np.abs(image.astype(int) - data).mean() < 2


def test_rgb_with_equal_channels_reads_exactly_as_grayscale(tmp_path):
    gray = ramp((8, 8), np.uint8)
    rgb = np.stack([gray] * 3, axis=-1)
    write_png_rgb(tmp_path / "a.png", rgb)
    tifffile.imwrite(tmp_path / "a.tif", rgb, photometric="rgb")
    for name in ("a.png", "a.tif"):
        image = read_image(tmp_path / name)
        assert image.dtype == np.uint8 and np.array_equal(image, gray), name


def test_coloured_rgb_uses_luma_weights_in_rgb_order(tmp_path):
    rgb = np.zeros((1, 4, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)      # 0.299 * 255 = 76.2
    rgb[0, 1] = (0, 255, 0)      # 0.587 * 255 = 149.7
    rgb[0, 2] = (0, 0, 255)      # 0.114 * 255 = 29.1
    rgb[0, 3] = (100, 100, 100)  # grey stays grey
    expected = [[76, 150, 29, 100]]
    write_png_rgb(tmp_path / "a.png", rgb)
    tifffile.imwrite(tmp_path / "a.tif", rgb, photometric="rgb")
    for name in ("a.png", "a.tif"):
        assert read_image(tmp_path / name).tolist() == expected, name
    rgba = np.concatenate([rgb, np.full((1, 4, 1), 7, np.uint8)], axis=-1)
    write_png_rgb(tmp_path / "b.png", rgba)
    assert read_image(tmp_path / "b.png").tolist() == expected  # alpha is ignored


def test_to_grayscale_keeps_dtype():
    rgb16 = np.zeros((1, 2, 3), np.uint16)
    rgb16[0, 0] = (65535, 0, 0)
    rgb16[0, 1] = (1000, 1000, 1000)
    gray = to_grayscale(rgb16)
    assert gray.dtype == np.uint16 and gray.tolist() == [[round(0.299 * 65535), 1000]]
    rgbf = np.array([[[1.0, 0.0, 0.0]]], np.float32)
    assert to_grayscale(rgbf).dtype == np.float32
    assert to_grayscale(rgbf)[0, 0] == pytest.approx(0.299)
    assert to_grayscale(np.ones((2, 2), np.uint8)).shape == (2, 2)
    with pytest.raises(ValueError):
        to_grayscale(np.zeros((2, 2, 5), np.uint8))


# ---------------------------------------------------------------------------- reading masks
def test_read_label_masks_tiff_and_png(tmp_path):
    labels = np.array([[0, 1, 1], [0, 300, 2]], np.uint16)
    tifffile.imwrite(tmp_path / "m.tif", labels)
    assert cv2.imwrite(str(tmp_path / "m.png"), labels)
    assert cv2.imwrite(str(tmp_path / "m8.png"), np.array([[0, 5], [5, 9]], np.uint8))
    for name in ("m.tif", "m.png"):
        assert read_mask(tmp_path / name).labels.tolist() == labels.tolist(), name
    assert read_mask(tmp_path / "m8.png").labels.tolist() == [[0, 5], [5, 9]]


def test_rgb_colour_mask_is_read_as_instances(tmp_path, hashes):
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[0, 1:3] = (0, 0, 255)    # blue first in raster order -> 1
    rgb[1, 0] = (255, 0, 0)      # red -> 2
    rgb[2, 0] = (255, 0, 0)
    rgb[2, 3] = (0, 0, 255)      # blue again -> 1
    rgb[1, 3] = (10, 200, 30)    # -> 3
    write_png_rgb(tmp_path / "m.png", rgb)
    before = hashes(tmp_path)
    m = read_mask(tmp_path / "m.png")
    assert m.labels.tolist() == [[0, 1, 1, 0], [2, 0, 0, 3], [2, 0, 0, 1]]
    assert hashes(tmp_path) == before


def test_rgba_mask_transparent_is_background(tmp_path):
    rgba = np.zeros((1, 3, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)
    rgba[0, 1] = (0, 255, 0, 0)
    rgba[0, 2] = (0, 255, 0, 255)
    write_png_rgb(tmp_path / "m.png", rgba)
    assert read_mask(tmp_path / "m.png").labels.tolist() == [[1, 0, 2]]


def test_rgb_mask_file_of_300_instances_round_trips(tmp_path):
    labels = np.zeros((61, 81), np.int64)
    for k in range(300):
        r, c = 1 + 4 * (k // 20), 1 + 4 * (k % 20)
        labels[r:r + 3, c:c + 3] = k + 1
    m = InstanceMask(labels)
    write_png_rgb(tmp_path / "m.png", m.to_rgb())
    tifffile.imwrite(tmp_path / "m.tif", m.to_rgb(), photometric="rgb")
    assert read_mask(tmp_path / "m.png") == m
    assert read_mask(tmp_path / "m.tif") == m


def test_grey_saved_as_rgb_is_read_as_labels(tmp_path):
    labels = np.array([[0, 3], [7, 7]], np.uint8)
    write_png_rgb(tmp_path / "m.png", np.stack([labels] * 3, axis=-1))
    assert read_mask(tmp_path / "m.png").labels.tolist() == labels.tolist()


def test_float_mask_file_is_rejected_naming_the_file(tmp_path):
    tifffile.imwrite(tmp_path / "floaty.tif", np.array([[0.0, 1.5]], np.float32))
    with pytest.raises(ValueError, match="floaty.tif"):
        read_mask(tmp_path / "floaty.tif")


# ---------------------------------------------------------------------------- calibration
def test_pixel_size_written_by_write_image(tmp_path):
    write_image(tmp_path / "a.tif", np.zeros((4, 5), np.uint16), pixel_size=0.5, unit="nm")
    assert read_pixel_size(tmp_path / "a.tif") == (0.5, "nm")
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:  # a real ImageJ file
        assert tif.is_imagej and tif.imagej_metadata["unit"] == "nm"


@pytest.mark.parametrize("unit", ["micron", "\\u00B5m", "um"])  # ImageJ's spellings of µm
def test_pixel_size_from_imagej_metadata_written_by_tifffile(tmp_path, unit):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((4, 4), np.uint8), imagej=True,
                     resolution=(4.0, 4.0), metadata={"unit": unit})
    size, read_unit = read_pixel_size(tmp_path / "a.tif")
    assert size == pytest.approx(0.25) and read_unit == "µm"


@pytest.mark.parametrize("unit", ["µm", "μm"])  # micro sign and Greek mu
def test_write_image_with_micrometre_unit(tmp_path, unit):
    write_image(tmp_path / "a.tif", np.zeros((3, 3), np.float32), pixel_size=0.125, unit=unit)
    assert read_pixel_size(tmp_path / "a.tif") == (0.125, "µm")


def test_pixel_size_from_centimetre_resolution(tmp_path):
    # 20000 pixels per cm = 0.5 µm per pixel.
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((3, 3), np.uint8),
                     resolution=(20000.0, 20000.0), resolutionunit="CENTIMETER")
    size, unit = read_pixel_size(tmp_path / "a.tif")
    assert size == pytest.approx(0.5) and unit == "µm"


def test_uncalibrated_files_have_no_pixel_size(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((3, 3), np.uint8))
    tifffile.imwrite(tmp_path / "dpi.tif", np.zeros((3, 3), np.uint8),
                     resolution=(72.0, 72.0), resolutionunit="INCH")  # print size, not a scale
    tifffile.imwrite(tmp_path / "px.tif", np.zeros((3, 3), np.uint8), imagej=True,
                     resolution=(2.0, 2.0), metadata={"unit": "pixel"})
    write_image(tmp_path / "ours.tif", np.zeros((3, 3), np.uint8))
    assert cv2.imwrite(str(tmp_path / "a.png"), np.zeros((3, 3), np.uint8))
    for name in ("plain.tif", "dpi.tif", "px.tif", "ours.tif", "a.png"):
        assert read_pixel_size(tmp_path / name) is None, name


def test_calibration_needs_an_imagej_dtype(tmp_path):
    # ImageJ TIFFs cannot hold int32/float64; silently dropping the scale would be worse.
    for dtype in (np.int32, np.float64):
        with pytest.raises(ValueError, match="ImageJ"):
            write_image(tmp_path / "a.tif", np.zeros((3, 3), dtype), pixel_size=1.0)
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="pixel_size"):
            write_image(tmp_path / "a.tif", np.zeros((3, 3), np.uint8), pixel_size=bad)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- writing
def test_write_refuses_to_overwrite_unless_asked(tmp_path, hashes):
    path = tmp_path / "a.tif"
    write_image(path, np.full((3, 3), 1, np.uint8))
    before = hashes(path)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_image(path, np.full((3, 3), 2, np.uint8))
    with pytest.raises(FileExistsError):
        write_mask(path, InstanceMask(np.ones((3, 3), np.uint8)))
    assert hashes(path) == before
    write_image(path, np.full((3, 3), 2, np.uint8), overwrite=True)
    assert (read_image(path) == 2).all()
    write_mask(path, np.full((3, 3), 5, np.uint8), overwrite=True)
    assert (read_mask(path).labels == 5).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif"]  # no temporary files


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch, hashes):
    def broken_imwrite(path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"II*\x00partial")
        raise RuntimeError("disk full")

    write_image(tmp_path / "old.tif", np.full((3, 3), 9, np.uint8))
    before = hashes(tmp_path)
    monkeypatch.setattr(tifffile, "imwrite", broken_imwrite)
    with pytest.raises(RuntimeError, match="disk full"):
        write_image(tmp_path / "new.tif", np.zeros((3, 3), np.uint8))
    with pytest.raises(RuntimeError, match="disk full"):
        write_mask(tmp_path / "old.tif", np.zeros((3, 3), np.uint8), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.tif"]
    assert hashes(tmp_path) == before


def test_atomic_path_renames_on_success_and_cleans_up_on_error(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target and not target.exists()
        tmp.write_text("done")
    assert target.read_text() == "done"
    with pytest.raises(KeyError), atomic_path(tmp_path / "other.txt") as tmp:
        tmp.write_text("half")
        raise KeyError("boom")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["out.txt", "sub"]


def test_written_files_get_normal_permissions(tmp_path):
    # Same mode as any new file in the folder (not private 0600 from a temp-file helper).
    with open(tmp_path / "plain", "w"):
        pass
    write_image(tmp_path / "a.tif", np.zeros((2, 2), np.uint8))
    mode = os.stat(tmp_path / "plain").st_mode & 0o777
    assert os.stat(tmp_path / "a.tif").st_mode & 0o777 == mode


def test_write_rejects_bad_targets(tmp_path):
    with pytest.raises(ValueError, match=".tif"):
        write_image(tmp_path / "a.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="2-D"):
        write_image(tmp_path / "a.tif", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="integer"):
        write_mask(tmp_path / "m.tif", np.zeros((2, 2), np.float32))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- bad files
@pytest.mark.parametrize("name", ["corrupt.tif", "corrupt.png", "corrupt.jpg"])
def test_corrupt_file_raises_value_error_naming_it(tmp_path, hashes, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8).tobytes())
    before = hashes(path)
    with pytest.raises(ValueError, match=name):
        read_image(path)
    with pytest.raises(ValueError, match=name):
        read_mask(path)
    if name.endswith(".tif"):
        with pytest.raises(ValueError, match=name):
            read_pixel_size(path)
    assert hashes(path) == before


def test_empty_file_raises_value_error(tmp_path):
    for name in ("empty.tif", "empty.png"):
        (tmp_path / name).touch()
        with pytest.raises(ValueError, match=name):
            read_image(tmp_path / name)


def test_unsupported_suffix_raises_value_error(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    for reader in (read_image, read_mask, read_pixel_size):
        with pytest.raises(ValueError, match="unsupported"):
            reader(path)
    with pytest.raises(ValueError, match="not a file"):
        read_image(tmp_path)


def test_missing_file_raises_file_not_found(tmp_path):
    for reader in (read_image, read_mask, read_pixel_size):
        with pytest.raises(FileNotFoundError, match="missing.tif"):
            reader(tmp_path / "missing.tif")


def test_image_suffixes_are_lower_case_with_dot():
    assert all(s.startswith(".") and s == s.lower() for s in io.IMAGE_SUFFIXES)
    assert {".tif", ".tiff", ".png", ".jpg"} <= set(io.IMAGE_SUFFIXES)


def test_black_and_white_mask_is_split_into_particles(tmp_path):
    import cv2

    from utilegen.io import read_mask

    bw = np.zeros((20, 30), np.uint8)
    bw[2:6, 2:6] = 255
    bw[10:15, 20:28] = 255
    path = tmp_path / "bw.png"
    cv2.imwrite(str(path), bw)
    mask = read_mask(path)
    assert mask.count == 2 and sorted(mask.areas().tolist()) == [16, 40]
    one = np.zeros((20, 30), np.uint8)
    one[2:6, 2:6] = 7  # a label image with one particle stays as it is
    cv2.imwrite(str(tmp_path / "one.png"), one)
    assert read_mask(tmp_path / "one.png").ids.tolist() == [7]
