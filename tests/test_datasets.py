"""utilegen.datasets: PairedFolder, EMPS (local copy and download), sample_pair, get_pair."""

from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from utilegen.datasets import PairedFolder, emps, get_pair, num_pairs, sample_pair
from utilegen.io import write_image
from utilegen.masks import InstanceMask

REPO = Path(__file__).resolve().parents[1]


def known_pair(k: int, shape=(12, 16)):
    """Image k: constant 10*k+3 plus a ramp; mask k: k+1 squares of 2x2 with labels 1..k+1."""
    image = (np.arange(shape[0] * shape[1]).reshape(shape) % 50 + 10 * k + 3).astype(np.uint8)
    labels = np.zeros(shape, np.uint16)
    for j in range(k + 1):
        labels[1:3, 1 + 3 * j:3 + 3 * j] = j + 1
    return image, labels


def make_folder(root, stems, *, mask_dir="masks", image_suffix=".tif", mask_suffix=".tif"):
    """A paired folder the way the original tool writes it: images/*.tif and masks/*.tif."""
    (root / "images").mkdir(parents=True)
    (root / mask_dir).mkdir()
    for k, stem in enumerate(stems):
        image, labels = known_pair(k)
        for folder, data, suffix in (("images", image, image_suffix),
                                     (mask_dir, labels, mask_suffix)):
            path = root / folder / f"{stem}{suffix}"
            if suffix == ".tif":
                tifffile.imwrite(path, data)
            else:
                assert cv2.imwrite(str(path), data)
    return root


# ---------------------------------------------------------------------------- PairedFolder
def test_paired_folder_pairs_by_stem(tmp_path, hashes):
    root = make_folder(tmp_path / "data", ["b", "a", "c"])
    before = hashes(root)
    ds = PairedFolder(root)
    assert len(ds) == num_pairs(ds) == 3
    assert ds.ids == ["a", "b", "c"]  # sorted by stem
    written = {"b": 0, "a": 1, "c": 2}  # stem -> k used by make_folder
    for index, stem in enumerate(ds.ids):
        image, mask = ds[index]
        expected_image, expected_labels = known_pair(written[stem])
        assert image.dtype == np.uint8 and np.array_equal(image, expected_image)
        assert isinstance(mask, InstanceMask) and mask.count == written[stem] + 1
        assert np.array_equal(mask.labels, expected_labels)
        assert ds.image_paths[index].stem == ds.mask_paths[index].stem == stem
    assert [m.count for _, m in ds] == [2, 1, 3]
    assert ds[-1][1].count == 3
    with pytest.raises(IndexError):
        ds[3]
    assert hashes(root) == before


def test_paired_folder_matches_stems_across_suffixes_and_skips_hidden_files(tmp_path):
    root = make_folder(tmp_path / "d", ["x", "y"], mask_suffix=".png")
    (root / "images" / ".x.tif.abc.part.tif").write_bytes(b"temporary")  # an unfinished write
    (root / "images" / "notes.txt").write_text("not an image")
    ds = PairedFolder(root)
    assert ds.ids == ["x", "y"]
    assert np.array_equal(ds[1][1].labels, known_pair(1)[1])


def test_paired_folder_ids_and_subset(tmp_path):
    root = make_folder(tmp_path / "d", ["a", "b", "c"])
    ds = PairedFolder(root, ids=["c", "a"])
    assert ds.ids == ["c", "a"]
    assert np.array_equal(ds[0][0], known_pair(2)[0])
    sub = PairedFolder(root).subset(["b"])
    assert len(sub) == 1 and np.array_equal(sub[0][0], known_pair(1)[0])
    with pytest.raises(ValueError, match="zzz"):
        PairedFolder(root, ids=["a", "zzz"])


def test_mismatched_folder_names_both_unmatched_files(tmp_path):
    root = make_folder(tmp_path / "d", ["a", "b"])
    tifffile.imwrite(root / "images" / "lonely_image.tif", np.zeros((4, 4), np.uint8))
    tifffile.imwrite(root / "masks" / "lonely_mask.tif", np.zeros((4, 4), np.uint16))
    with pytest.raises(ValueError) as info:
        PairedFolder(root)
    assert "lonely_image.tif" in str(info.value) and "lonely_mask.tif" in str(info.value)
    relaxed = PairedFolder(root, strict=False)  # unmatched files ignored on request
    assert relaxed.ids == ["a", "b"]


def test_shape_mismatch_names_both_files(tmp_path):
    root = make_folder(tmp_path / "d", ["a"])
    tifffile.imwrite(root / "masks" / "a.tif", np.zeros((5, 5), np.uint16))
    ds = PairedFolder(root)
    with pytest.raises(ValueError) as info:
        ds[0]
    message = str(info.value)
    assert str(root / "images" / "a.tif") in message and str(root / "masks" / "a.tif") in message


def test_paired_folder_missing_or_empty_folders(tmp_path):
    with pytest.raises(FileNotFoundError):
        PairedFolder(tmp_path / "nothing")
    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match="masks"):
        PairedFolder(tmp_path)
    (tmp_path / "masks").mkdir()
    with pytest.raises(ValueError, match="no image/mask pairs"):
        PairedFolder(tmp_path)


def test_paired_folder_pixel_size(tmp_path):
    root = make_folder(tmp_path / "d", ["a", "b"])
    write_image(root / "images" / "a.tif", known_pair(0)[0], pixel_size=0.8, unit="nm",
                overwrite=True)
    ds = PairedFolder(root)
    assert ds.pixel_size(0) == (pytest.approx(0.8), "nm")
    assert ds.pixel_size(1) is None


def test_to_torch_gives_float_image_in_0_1_and_int64_labels(tmp_path):
    root = make_folder(tmp_path / "d", ["a", "b"])
    tifffile.imwrite(root / "images" / "b.tif", np.array([[0, 65535]] * 12 * 8, np.uint16)
                     .reshape(12, 16))
    tds = PairedFolder(root).to_torch()
    assert len(tds) == 2
    image, labels = tds[0]
    assert image.dtype.is_floating_point and str(image.dtype) == "torch.float32"
    assert tuple(image.shape) == (1, 12, 16)
    assert str(labels.dtype) == "torch.int64" and tuple(labels.shape) == (12, 16)
    expected_image, expected_labels = known_pair(0)
    assert np.allclose(image[0].numpy(), expected_image / 255.0)
    assert np.array_equal(labels.numpy(), expected_labels)
    image16, _ = tds[1]  # 16-bit: scaled by 65535, so the extremes are 0 and 1
    assert float(image16.min()) == 0.0 and float(image16.max()) == 1.0
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0


# ---------------------------------------------------------------------------- get_pair
def test_get_pair_on_every_kind_of_dataset(tmp_path):
    from torch.utils.data import ConcatDataset, Subset

    first = PairedFolder(make_folder(tmp_path / "one", ["a", "b"]))    # known_pair 0, 1
    second = PairedFolder(make_folder(tmp_path / "two", ["p", "q", "r"]))  # 0, 1, 2

    def check(pair, k):
        image, mask = pair
        expected_image, expected_labels = known_pair(k)
        assert isinstance(mask, InstanceMask)
        assert np.array_equal(image, expected_image)
        assert np.array_equal(mask.labels, expected_labels)

    check(get_pair(first, 1), 1)
    tuples = [known_pair(0), (known_pair(2)[0], InstanceMask(known_pair(2)[1]))]
    check(get_pair(tuples, 0), 0)
    check(get_pair(tuples, 1), 2)
    concat = ConcatDataset([first, second])
    assert num_pairs(concat) == 5
    for index, k in enumerate([0, 1, 0, 1, 2]):
        check(get_pair(concat, index), k)
    check(get_pair(concat, -1), 2)
    subset = Subset(second, [2, 0])
    check(get_pair(subset, 0), 2)
    check(get_pair(subset, 1), 0)
    check(get_pair(Subset(concat, [3]), 0), 1)
    check(get_pair(first.to_torch(), 0), 0)
    check(get_pair(ConcatDataset([first.to_torch(), second.to_torch()]), 4), 2)


def test_get_pair_rejects_items_that_are_not_pairs():
    with pytest.raises(TypeError):
        get_pair([np.zeros((2, 2))], 0)
    with pytest.raises(ValueError, match="shape"):
        get_pair([(np.zeros((2, 2)), np.zeros((3, 3), np.uint8))], 0)


# ---------------------------------------------------------------------------- EMPS
def test_emps_reads_every_training_pair(emps_root, hashes, monkeypatch):
    before = hashes(emps_root)
    monkeypatch.chdir(REPO)
    ds = emps("../shared/data/emps", split="train")
    assert len(ds) == 366
    assert sorted(ds.ids) == sorted(emps("../shared/data/emps").ids)
    for index in range(len(ds)):
        image, mask = ds[index]
        assert image.ndim == 2, ds.ids[index]
        assert mask.shape == image.shape, ds.ids[index]
        assert mask.count >= 1, ds.ids[index]
    assert hashes(emps_root) == before


def test_emps_shapes(emps_root):
    ds = emps(emps_root)
    assert len(set(ds.shapes.values())) == 4
    assert {"sphere", "rod", "cube"} <= set(ds.shapes.values())
    spheres = ds.with_shape("sphere")
    assert len(spheres) == 166
    assert set(spheres.ids) <= set(ds.ids)
    assert all(ds.shapes[i] == "sphere" for i in spheres.ids)
    cubes = ds.with_shape("cube")
    assert len(ds.with_shape("sphere", "cube")) == 166 + len(cubes)


def test_emps_without_download_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        emps(tmp_path / "nothing")
    assert list(tmp_path.iterdir()) == []


def make_emps_zip(path):
    """A tiny EMPS-like archive: a top folder holding images/, segmaps/ and shapes.csv."""
    image, labels = known_pair(2)
    ok, png_image = cv2.imencode(".png", image)
    ok2, png_mask = cv2.imencode(".png", labels)
    assert ok and ok2
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("emps-main/README.md", "tiny")
        zf.writestr("emps-main/images/a1.png", png_image.tobytes())
        zf.writestr("emps-main/segmaps/a1.png", png_mask.tobytes())
        zf.writestr("emps-main/shapes.csv", "filename,shape\na1.png,sphere\n")
        zf.writestr("emps-main/train.csv", "a1\n")
    return path


def test_emps_download_from_a_local_zip(tmp_path, hashes):
    archive = make_emps_zip(tmp_path / "emps.zip")
    before = hashes(archive)
    ds = emps(root=tmp_path / "x", download=True, url=archive.as_uri())
    assert ds.ids == ["a1"]
    image, mask = ds[0]
    expected_image, expected_labels = known_pair(2)
    assert np.array_equal(image, expected_image) and np.array_equal(mask.labels, expected_labels)
    assert ds.shapes == {"a1": "sphere"}
    assert (tmp_path / "x" / "images").is_dir() and (tmp_path / "x" / "segmaps").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emps.zip", "x"]  # no temp folders
    assert hashes(archive) == before
    # A second call finds the copy and does not download again.
    again = emps(root=tmp_path / "x", download=True, url=(tmp_path / "gone.zip").as_uri())
    assert again.ids == ["a1"] and len(emps(tmp_path / "x", split="train")) == 1


def test_emps_download_into_an_existing_empty_folder(tmp_path):
    archive = make_emps_zip(tmp_path / "emps.zip")
    (tmp_path / "x").mkdir()
    assert emps(root=tmp_path / "x", download=True, url=archive.as_uri()).ids == ["a1"]


def test_emps_download_refuses_a_non_empty_folder_and_bad_archives(tmp_path, hashes):
    archive = make_emps_zip(tmp_path / "emps.zip")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="busy"):
        emps(root=tmp_path / "busy", download=True, url=archive.as_uri())
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    with zipfile.ZipFile(tmp_path / "wrong.zip", "w") as zf:
        zf.writestr("top/pictures/a.png", b"x")
    with pytest.raises(RuntimeError, match="segmaps"):
        emps(root=tmp_path / "y", download=True, url=(tmp_path / "wrong.zip").as_uri())
    with pytest.raises(RuntimeError, match="download"):
        emps(root=tmp_path / "z", download=True, url=(tmp_path / "missing.zip").as_uri())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "emps.zip", "wrong.zip"]


# ---------------------------------------------------------------------------- sample_pair
def test_sample_pair_is_deterministic_per_rng():
    kwargs = {"shape": (96, 128), "particles": 8, "radius": (5.0, 10.0)}
    image_a, mask_a = sample_pair(**kwargs, rng=3)
    image_b, mask_b = sample_pair(**kwargs, rng=np.random.default_rng(3))
    assert np.array_equal(image_a, image_b) and mask_a == mask_b
    image_c, mask_c = sample_pair(**kwargs, rng=4)
    assert not np.array_equal(image_a, image_c) and mask_a != mask_c
    assert image_a.dtype == np.uint8 and image_a.shape == mask_a.shape == (96, 128)


def test_sample_pair_instances_are_the_drawn_discs():
    r_lo, r_hi = 7.0, 14.0
    image, mask = sample_pair((200, 240), particles=25, radius=(r_lo, r_hi), touching=0.0, rng=11)
    assert image.dtype == np.uint8 and image.shape == mask.shape == (200, 240)
    assert 5 <= mask.count <= 25 and mask.ids.max() <= 25
    # Without touching, particles are apart: the instances are exactly the connected blobs.
    assert InstanceMask.from_binary(mask.labels > 0, connectivity=2).same_instances(mask)
    for inst in mask:
        r0, c0, r1, c1 = inst.bbox
        height, width = r1 - r0, c1 - c0
        assert abs(height - width) <= 1, inst.label                  # round, not elongated
        radius = (height + width) / 4
        assert r_lo - 1 <= radius <= r_hi + 1, inst.label             # within the radius range
        assert inst.area == pytest.approx(np.pi * radius**2, rel=0.12), inst.label
    # Particles are dark on a bright background (bright-field TEM).
    inside = image[mask.labels > 0].mean()
    outside = image[ndi.binary_dilation(mask.labels > 0, iterations=4) == 0].mean()
    assert outside - inside > 40


def test_sample_pair_with_touching_particles():
    _, mask = sample_pair((160, 160), particles=20, radius=(6.0, 12.0), touching=1.0, rng=5)
    assert mask.count >= 2
    # Occlusion only removes pixels: no instance is bigger than the largest disc.
    assert mask.areas().max() <= np.pi * (12 + 1) ** 2
    # Touching particles: some instances are adjacent, so the foreground has fewer blobs.
    assert InstanceMask.from_binary(mask.labels > 0).count < mask.count


def test_sample_pair_rejects_bad_arguments():
    with pytest.raises(ValueError, match="16"):
        sample_pair((8, 64))
    with pytest.raises(ValueError, match="radius"):
        sample_pair((64, 64), radius=(5.0, 2.0))
    with pytest.raises(ValueError, match="touching"):
        sample_pair((64, 64), touching=1.5)
