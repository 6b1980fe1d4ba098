"""Synthetic generator: exact masks, placement rules, augmentation, determinism, export."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from utilegen import InstanceMask
from utilegen.datasets import PairedFolder, sample_pair
from utilegen.io import read_image, read_mask, write_image, write_mask
from utilegen.synth import (
    Augmenter,
    BackgroundPool,
    Compositor,
    ParticlePool,
    SyntheticDataset,
    fill_holes,
    transform_particle,
)


@pytest.fixture(scope="module")
def pair():
    return sample_pair((256, 256), particles=20, radius=(6, 14), rng=1)


@pytest.fixture(scope="module")
def pools(pair):
    return (ParticlePool.from_pairs([pair]),
            BackgroundPool.from_pairs([pair], method=("inpaint", "mean")))


def footprints(pool, record, shape):
    """Each placed particle's full footprint on the canvas, replayed from the record."""
    out = []
    for p in record["particles"]:
        if p["position"] is None:
            out.append(None)
            continue
        _, alpha = transform_particle(pool[p["particle"]], p["scale"], p["angle"], p["flip_h"],
                                      p["flip_v"])
        canvas = np.zeros(shape, bool)
        r0, c0 = p["position"]
        canvas[r0:r0 + alpha.shape[0], c0:c0 + alpha.shape[1]] = alpha
        out.append(canvas)
    return out


# ---------------------------------------------------------------- particle pool
def test_pool_filters_border_and_small_particles():
    labels = np.zeros((40, 40), np.uint16)
    labels[0:5, 10:15] = 1          # touches the top border, area 25
    labels[10:20, 10:20] = 2        # area 100
    labels[25:35, 25:35] = 3        # area 100
    labels[30:32, 5:7] = 4          # area 4 < 0.6 * mean(57.25)
    image = np.full((40, 40), 100, np.uint8)
    pool = ParticlePool.from_pairs([(image, InstanceMask(labels))])
    assert len(pool) == 4
    assert sorted(pool.areas.tolist()) == [4, 25, 100, 100]
    assert sorted(pool.without_border().areas.tolist()) == [4, 100, 100]
    # mean of all four = 57.25, threshold 34.35: drops 4 and 25
    assert sorted(pool.without_small(0.6).areas.tolist()) == [100, 100]
    assert sorted(pool.without_border().without_small(0.6).areas.tolist()) == [100, 100]
    assert len(pool) == 4  # filters return new pools
    particle = pool.without_border().without_small()[0]
    assert particle.alpha.shape == (10, 10) and particle.alpha.all()
    assert np.allclose(particle.image, 100 / 255)


def test_pool_save_load_round_trip(tmp_path, pools):
    pool, _ = pools
    path = pool.save(tmp_path / "pool.npz")
    loaded = ParticlePool.load(path)
    assert len(loaded) == len(pool) and loaded.sources == pool.sources
    for a, b in zip(pool, loaded):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.alpha, b.alpha)
        assert (a.source, a.area, a.touches_border) == (b.source, b.area, b.touches_border)
    with pytest.raises(FileExistsError):
        pool.save(path)
    (tmp_path / "junk.npz").write_bytes(b"not a pool")
    with pytest.raises(ValueError, match="junk.npz"):
        ParticlePool.load(tmp_path / "junk.npz")


# ---------------------------------------------------------------- backgrounds
def test_inpainting_recovers_a_smooth_background():
    yy, xx = np.mgrid[0:200, 0:300]
    truth = (0.3 + 0.4 * xx / 300 + 0.1 * yy / 200).astype(np.float32)
    image = truth.copy()
    labels = np.zeros((200, 300), np.uint16)
    for k, (r, c, rad) in enumerate([(50, 60, 25), (120, 200, 40), (150, 80, 15)], 1):
        disk = (yy - r) ** 2 + (xx - c) ** 2 <= rad ** 2
        labels[disk] = k
        image[disk] = 0.05
    bg = BackgroundPool.from_pairs([((image * 255).astype(np.uint8), InstanceMask(labels))],
                                   method=("inpaint", "mean"))
    inpainted, mean = bg[0].image, bg[1].image
    holes = labels > 0
    # Within the filled holes the ramp is recovered to a few grey levels.
    assert np.abs(inpainted[holes] - truth[holes]).mean() < 0.02
    assert inpainted[holes].min() > 0.2  # no trace of the dark particles
    # The flat background is the mean of the true background (within 8-bit quantization).
    assert np.ptp(mean) == 0 and abs(mean[0, 0] - truth[~holes].mean()) < 0.005


def test_fill_holes_keeps_known_pixels():
    rng = np.random.default_rng(0)
    image = rng.random((64, 64)).astype(np.float32)
    holes = np.zeros((64, 64), bool)
    holes[20:40, 10:50] = True
    out = fill_holes(image, holes)
    assert np.array_equal(out[~holes], image[~holes])
    assert np.isfinite(out).all()
    with pytest.raises(ValueError, match="no known pixels"):
        fill_holes(image, np.ones((64, 64), bool))


def test_backgrounds_are_cropped_at_their_own_scale():
    rng = np.random.default_rng(3)
    bg = rng.random((300, 280)).astype(np.float32)
    pool = BackgroundPool.from_images([bg])
    pp = ParticlePool.from_pairs([sample_pair((64, 64), particles=1, radius=(5, 5), rng=0)])
    comp = Compositor(particles_per_image=(0, 0), image_size=128)
    canvas, labels, record = comp.compose(pp, pool, rng=5)
    k = record["background"]["rot90"]
    r0, c0 = record["background"]["offset"]
    assert np.array_equal(canvas, np.rot90(bg, k)[r0:r0 + 128, c0:c0 + 128])
    assert labels.max() == 0
    # A background smaller than the canvas is mirror-tiled, not stretched: every canvas
    # value is one of the background's values, and a full copy of it appears unscaled.
    small = rng.random((50, 40)).astype(np.float32)
    for seed in range(5):
        canvas, _, record = Compositor(particles_per_image=(0, 0), image_size=128,
                                       flip=False).compose(
            pp, BackgroundPool.from_images([small]), rng=seed)
        assert np.isin(canvas, small).all()
        r0, c0 = record["background"]["offset"]
        mirrored = np.pad(small, ((0, 300), (0, 300)), mode="symmetric")
        assert np.array_equal(canvas, mirrored[r0:r0 + 128, c0:c0 + 128])


# ---------------------------------------------------------------- compositor
def test_source_density_gives_each_image_the_crowding_of_its_source():
    # two sources at different magnifications: many small particles, few large ones
    crowded = sample_pair((200, 200), particles=40, radius=(4, 5), rng=1)
    sparse = sample_pair((200, 200), particles=3, radius=(18, 20), rng=2)
    pairs = [crowded, sparse]
    density = [m.count / 0.04 for _, m in pairs]      # per megapixel (200 x 200 px)
    particles, backgrounds = ParticlePool.from_pairs(pairs), BackgroundPool.from_pairs(pairs)
    comp = Compositor(particles_per_image=(1, 200), same_source=True, overlap=True,
                      image_size=200, scale=(1, 1), source_density=density,
                      density_factor=(1, 1))
    for seed in range(6):
        _, _, record = comp.compose(particles, backgrounds, rng=seed)
        source = backgrounds[record["background"]["index"]].source
        assert record["requested"] == pairs[source][1].count
    clipped = Compositor(particles_per_image=(1, 5), same_source=True, image_size=200,
                         source_density=density)
    assert all(clipped.compose(particles, backgrounds, rng=s)[2]["requested"] <= 5
               for s in range(4))
    assert Compositor.from_dict(comp.to_dict()) == comp


@pytest.mark.parametrize("overlap,packed", [(True, False), (False, False), (True, True)])
def test_masks_are_exact(pools, overlap, packed):
    particles, backgrounds = pools
    comp = Compositor(particles_per_image=(15, 25), overlap=overlap, max_overlap=1.0,
                      scale=(0.5, 2.0), image_size=160, packed=packed)
    for seed in range(4):
        _canvas, labels, record = comp.compose(particles, backgrounds, rng=seed)
        fps = footprints(particles, record, labels.shape)
        placed = [(p, fp) for p, fp in zip(record["particles"], fps) if fp is not None]
        union = np.zeros(labels.shape, bool)
        # Walk from the top particle down: what it shows is its footprint minus all later ones.
        for p, fp in reversed(placed):
            visible = fp & ~union
            if p["label"]:
                assert np.array_equal(labels == p["label"], visible)
            else:
                assert not visible.any()  # fully hidden particles are absent
            union |= fp
        assert np.array_equal(labels > 0, union)
        ids = np.unique(labels[labels > 0])
        assert np.array_equal(ids, np.arange(1, len(ids) + 1))  # sequential
        shown = [p["label"] for p, _ in placed if p["label"]]
        assert shown == sorted(shown)  # labels follow pasting order


def test_unrotated_particle_is_pasted_pixel_for_pixel(pools):
    particles, backgrounds = pools
    comp = Compositor(particles_per_image=(1, 1), scale=(1, 1), rotation=(0, 0), flip=False,
                      image_size=128)
    ds = SyntheticDataset(particles, backgrounds, compositor=comp, augmenter=None, length=3,
                          dtype="float32")
    for i in range(3):
        s = ds.sample(i)
        p = s.params["particles"][0]
        source = particles[p["particle"]]
        r0, c0 = p["position"]
        h, w = source.alpha.shape
        assert np.array_equal(s.mask.labels[r0:r0 + h, c0:c0 + w] == 1, source.alpha)
        assert np.array_equal(s.image[r0:r0 + h, c0:c0 + w][source.alpha],
                              source.image[source.alpha])
        assert s.mask.count == 1 and s.mask.areas()[0] == source.area


@pytest.mark.parametrize("packed", [False, True])
def test_no_overlap_means_no_contact(pools, packed):
    particles, backgrounds = pools
    comp = Compositor(particles_per_image=(60, 60), overlap=False, scale=(0.8, 1.5), image_size=160,
                      packed=packed)
    for seed in range(3):
        _, labels, record = comp.compose(particles, backgrounds, rng=seed)
        grown_max = ndi.maximum_filter(labels, size=3)
        grown_min = ndi.minimum_filter(np.where(labels == 0, np.iinfo(labels.dtype).max, labels),
                                       size=3)
        fg = labels > 0
        # In every 3x3 neighbourhood of a particle pixel there is no other label.
        assert (grown_max[fg] == labels[fg]).all() and (grown_min[fg] == labels[fg]).all()
        # 60 do not fit on 160x160: the shortfall is reported, never hidden by overlapping.
        assert record["placed"] < record["requested"] == 60
        assert record["visible"] == record["placed"] == labels.max()
        areas = np.bincount(labels.ravel())
        for p in record["particles"]:
            if p["label"]:
                assert areas[p["label"]] == p["area"]  # nothing covered


def _touching(labels) -> float:
    """Fraction of the particles of `labels` that touch another one (8-neighbourhood)."""
    high = ndi.maximum_filter(labels, size=3)
    low = ndi.minimum_filter(np.where(labels > 0, labels, np.iinfo(labels.dtype).max), size=3)
    fg = labels > 0
    contact = fg & ((high != labels) | (low != labels))
    return len(np.unique(labels[contact])) / max(labels.max(), 1)


@pytest.mark.parametrize("max_overlap", [0.0, 0.3])
def test_packed_particles_touch_their_neighbours(pools, max_overlap):
    # 12 particles on a 256² canvas: placed anywhere, few touch; packed, clusters grow
    particles, backgrounds = pools
    kw = {"particles_per_image": (12, 12), "overlap": True, "max_overlap": max_overlap,
          "scale": (1, 1), "image_size": 256}
    loose, packed = Compositor(**kw), Compositor(**kw, packed=True)
    t_loose = np.mean([_touching(loose.compose(particles, backgrounds, rng=s)[1])
                       for s in range(6)])
    t_packed = np.mean([_touching(packed.compose(particles, backgrounds, rng=s)[1])
                        for s in range(6)])
    assert t_packed > 0.8 and t_loose < 0.5
    assert Compositor.from_dict(packed.to_dict()) == packed


def test_contact_counts_only_what_lies_on_the_canvas():
    from utilegen.synth._compositor import _contact

    labels = np.zeros((10, 10), np.uint16)
    labels[0, :] = 1                      # a particle along the top edge
    ring = np.ones((4, 4), bool)
    assert _contact(labels, ring, -2, -2) == 2      # rows -2..1, cols -2..1: (0, 0), (0, 1)
    assert _contact(labels, ring, -1, 8) == 2       # (0, 8), (0, 9); the rest is off the canvas
    assert _contact(labels, ring, 4, 4) == 0


def test_max_overlap_bounds_coverage(pools):
    particles, backgrounds = pools
    comp = Compositor(particles_per_image=(40, 40), overlap=True, max_overlap=0.25, image_size=128)
    covered_some = False
    for seed in range(3):
        _, _labels, record = comp.compose(particles, backgrounds, rng=seed)
        for p in record["particles"]:
            if p["label"]:
                assert p["visible_area"] >= 0.75 * p["area"] - 1e-9
                covered_some |= p["visible_area"] < p["area"]
    assert covered_some


def test_more_than_255_instances():
    pair = sample_pair((128, 128), particles=30, radius=(4, 5), rng=0)
    particles = ParticlePool.from_pairs([pair])
    comp = Compositor(particles_per_image=(400, 400), overlap=False, gap=0, scale=(0.5, 0.6),
                      image_size=(256, 384))
    ds = SyntheticDataset(particles, BackgroundPool.from_pairs([pair], method="mean"),
                          compositor=comp, augmenter=None, length=1)
    s = ds.sample(0)
    assert s.mask.count > 255 and s.mask.labels.dtype == np.uint16
    assert np.array_equal(s.mask.ids, np.arange(1, s.mask.count + 1))
    _, labels = ds[0]
    assert int(labels.max()) == s.mask.count


# ---------------------------------------------------------------- augmenter
def test_salt_and_pepper_fraction_and_extremes():
    aug = Augmenter(salt_pepper_max=0.2, blur_max=0.0)
    image = np.full((100, 120), 0.5, np.float32)
    drawn = []
    for seed in range(40):
        params = aug.draw(seed)
        out = aug.apply(image, params)
        # Binomial counts: within 5 standard deviations of fraction/2 of the pixels each.
        half = params["salt_pepper"] / 2 * image.size
        tol = 5 * np.sqrt(half) + 1
        assert abs((out == 0).sum() - half) <= tol and abs((out == 1).sum() - half) <= tol
        assert ((out == 0.5) | (out == 0) | (out == 1)).all()
        drawn.append(params["salt_pepper"])
    assert 0 <= min(drawn) and max(drawn) <= 0.2 and max(drawn) > 0.15 and min(drawn) < 0.05
    # replayable
    assert np.array_equal(aug.apply(image, aug.draw(7)), aug.apply(image, aug.draw(7)))


def test_blur_and_noise_ranges():
    aug = Augmenter(salt_pepper_max=0, blur_max=2.0, brightness=0.1, contrast=0.2, gamma=0.3,
                    gaussian_noise_max=0.05, poisson_peak=(50, 500))
    for seed in range(20):
        p = aug.draw(seed)
        assert 0 <= p["blur_sigma"] <= 2 and abs(p["brightness"]) <= 0.1
        assert 0.8 <= p["contrast"] <= 1.2 and 0.7 <= p["gamma"] <= 1 / 0.7
        assert 50 <= p["poisson_peak"] <= 500
    step = np.zeros((32, 32), np.float32)
    step[:, 16:] = 1
    blurred = Augmenter(salt_pepper_max=0, blur_max=0).apply(step, {**aug.draw(0), "salt_pepper": 0,
        "brightness": 0, "contrast": 1, "gamma": 1, "gaussian_noise": 0, "poisson_peak": None,
        "blur_sigma": 1.5})
    assert 0 < blurred[0, 15] < 0.5 < blurred[0, 16] < 1


def test_off_augmenter_is_identity():
    image = np.random.default_rng(0).random((20, 20)).astype(np.float32)
    aug = Augmenter(salt_pepper_max=0, blur_max=0)
    assert np.array_equal(aug.apply(image, aug.draw(1)), image)


# ---------------------------------------------------------------- dataset
def test_items_depend_only_on_seed_and_index(pools):
    particles, backgrounds = pools
    kw = {"compositor": Compositor(image_size=96, particles_per_image=(3, 8)), "length": 6,
          "seed": 11}
    a = SyntheticDataset(particles, backgrounds, **kw)
    b = SyntheticDataset(particles, backgrounds, **kw)
    forward = [a.sample(i) for i in range(6)]
    backward = [b.sample(i) for i in reversed(range(6))][::-1]
    for x, y in zip(forward, backward):
        assert np.array_equal(x.image, y.image) and x.mask == y.mask
        assert json.dumps(x.params) == json.dumps(y.params)
    other_seed = SyntheticDataset(particles, backgrounds, **{**kw, "seed": 12})
    assert not np.array_equal(other_seed.sample(0).image, forward[0].image)

    import torch
    from torch.utils.data import DataLoader

    loader = DataLoader(a, batch_size=2, num_workers=2, shuffle=False)
    for batch_index, (images, labels) in enumerate(loader):
        for j in range(2):
            i = 2 * batch_index + j
            assert images.dtype == torch.float32 and images.shape[1:] == (1, 96, 96)
            assert labels.dtype == torch.int64
            assert np.array_equal(labels[j].numpy(), forward[i].mask.labels)
            assert np.allclose(images[j, 0].numpy(), forward[i].image / 255.0)


def test_from_pairs_is_the_pools_and_dataset_assembled_by_hand(pair):
    particles = ParticlePool.from_pairs([pair]).without_border().without_small(0.6)
    hand = SyntheticDataset(particles.without_larger_than(60),
                            BackgroundPool.from_pairs([pair], method=("inpaint", "mean")),
                            compositor=Compositor(image_size=96), length=3, seed=5)
    made = SyntheticDataset.from_pairs([pair], max_extent=60, background=("inpaint", "mean"),
                                       compositor=Compositor(image_size=96), length=3, seed=5)
    assert len(made.particles) == len(hand.particles) < len(ParticlePool.from_pairs([pair]))
    for i in range(3):
        assert np.array_equal(made.sample(i).image, hand.sample(i).image)
        assert made.sample(i).mask == hand.sample(i).mask
    kept = SyntheticDataset.from_pairs([pair], keep_border=True, min_size=0,
                                       compositor=Compositor(image_size=96))
    assert len(kept.particles) == len(ParticlePool.from_pairs([pair]))
    with pytest.raises(ValueError, match="no particle"):
        SyntheticDataset.from_pairs([pair], max_extent=1)

def test_real_and_synthetic_concatenate(tmp_path, pools):
    import torch
    from torch.utils.data import ConcatDataset

    from utilegen.datasets import get_pair

    particles, backgrounds = pools
    root = _write_folder(tmp_path / "real", 2)
    real = PairedFolder(root)
    synth = SyntheticDataset(particles, backgrounds,
                             compositor=Compositor(image_size=64, scale=(0.5, 1.5)),
                             length=3)
    mixed = ConcatDataset([real.to_torch(), synth])
    assert len(mixed) == 5
    for i in range(5):
        image, labels = mixed[i]
        assert image.dtype == torch.float32 and image.ndim == 3 and labels.dtype == torch.int64
        img, mask = get_pair(mixed, i)
        assert isinstance(mask, InstanceMask) and img.shape == mask.shape


def _write_folder(root: Path, n: int) -> Path:
    for i in range(n):
        image, mask = sample_pair((96, 96), particles=6, radius=(6, 10), rng=i)
        write_image(root / "images" / f"img{i}.tif", image)
        write_mask(root / "masks" / f"img{i}.tif", mask)
    return root


def _digest(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_export_layout_resume_and_inputs_untouched(tmp_path):
    root = _write_folder(tmp_path / "real", 2)
    inputs_before = _digest(root)
    pairs = PairedFolder(root)
    particles = ParticlePool.from_pairs(pairs).without_border().without_small()
    backgrounds = BackgroundPool.from_pairs(pairs, method=("inpaint", "mean"))
    ds = SyntheticDataset(particles, backgrounds,
                          compositor=Compositor(image_size=80, particles_per_image=(2, 5)),
                          length=6, seed=3)
    out = tmp_path / "synthetic"
    ds.export(out, coco=True, progress=False)
    assert _digest(root) == inputs_before
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["config"]["seed"] == 3 and len(manifest["items"]) == 6
    for i, item in enumerate(manifest["items"]):
        s = ds.sample(i)
        assert np.array_equal(read_image(out / item["image"]), s.image)
        assert read_mask(out / item["mask"]) == s.mask
        assert read_mask(out / item["mask"]).labels.dtype == np.uint16
        assert item["requested"] == s.params["requested"]
    coco = json.loads((out / "annotations.json").read_text())
    assert len(coco["images"]) == 6
    assert len(coco["annotations"]) == sum(ds.sample(i).mask.count for i in range(6))

    finished = _digest(out)
    # Simulate an interrupted run: item 4 lost its mask and record, item 5 everything.
    for rel in ["masks/00004.tif", "records/00004.json", "images/00005.tif", "masks/00005.tif",
                "records/00005.json"]:
        (out / rel).unlink()
    kept = (out / "images/00001.tif").stat().st_mtime_ns
    ds.export(out, coco=True, progress=False)
    assert _digest(out) == finished
    assert (out / "images/00001.tif").stat().st_mtime_ns == kept  # finished items not redone

    # Two workers write the same bytes.
    out2 = tmp_path / "synthetic2"
    ds.export(out2, workers=2, coco=True, progress=False)
    assert {k: v for k, v in _digest(out2).items() if k != "manifest.json"} == \
        {k: v for k, v in finished.items() if k != "manifest.json"}

    # A folder holding another dataset is refused, not mixed.
    other = SyntheticDataset(particles, backgrounds, compositor=Compositor(image_size=80),
                             length=6, seed=4)
    with pytest.raises(ValueError, match="different dataset"):
        other.export(out, progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        ds.export(tmp_path / "busy", progress=False)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------- bad input
def test_bad_inputs(pools):
    particles, backgrounds = pools
    with pytest.raises(ValueError, match="particles_per_image"):
        Compositor(particles_per_image=(5, 2))
    with pytest.raises(ValueError, match="scale"):
        Compositor(scale=(0, 1))
    with pytest.raises(ValueError, match="max_overlap"):
        Compositor(max_overlap=1.5)
    with pytest.raises(ValueError, match="image_size"):
        Compositor(image_size=0)
    with pytest.raises(ValueError, match="same_source"):
        Compositor(source_density=(10.0,))
    with pytest.raises(ValueError, match="source_density"):
        Compositor(source_density=(10.0, float("nan")), same_source=True)
    with pytest.raises(ValueError, match="density_factor"):
        Compositor(source_density=(10.0,), same_source=True, density_factor=(-1, 1))
    with pytest.raises(ValueError, match="salt_pepper_max"):
        Augmenter(salt_pepper_max=2)
    with pytest.raises(ValueError, match="empty"):
        SyntheticDataset(ParticlePool([]), backgrounds)
    with pytest.raises(ValueError, match="length"):
        SyntheticDataset(particles, backgrounds, length=-1)
    big = Compositor(scale=(5, 5), image_size=32)
    with pytest.raises(ValueError, match="larger than the 32x32 canvas"):
        big.compose(particles, backgrounds, rng=0)
    with pytest.raises(ValueError, match="method"):
        BackgroundPool.from_pairs([sample_pair((64, 64), particles=2, rng=0)], method="telea")
    with pytest.raises(ValueError, match="no image/mask pairs"):
        ParticlePool.from_pairs([])
    with pytest.raises(IndexError):
        SyntheticDataset(particles, backgrounds, length=2).sample(5)


def test_config_round_trip():
    comp = Compositor(particles_per_image=(3, 9), overlap=False, scale=(0.5, 1.5),
                      image_size=(100, 200))
    assert Compositor.from_dict(json.loads(json.dumps(comp.to_dict()))) == comp
    aug = Augmenter(poisson_peak=(10, 100), gamma=0.2)
    assert Augmenter.from_dict(json.loads(json.dumps(aug.to_dict()))) == aug


def test_cli_generate(tmp_path, capsys):
    from utilegen.cli import main

    root = _write_folder(tmp_path / "data", 2)
    before = _digest(root)
    code = main(["generate", "--images", str(root / "images"), "--masks", str(root / "masks"),
                 "--out", str(tmp_path / "out"), "--n", "3", "--particles", "2-4", "--size", "64",
                 "--no-overlap", "--seed", "5", "--salt-pepper", "0.05"])
    assert code == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["config"]["compositor"]["overlap"] is False
    assert manifest["config"]["compositor"]["particles_per_image"] == [2, 4]
    assert manifest["config"]["augmenter"]["salt_pepper_max"] == 0.05
    assert len(list((tmp_path / "out" / "images").glob("*.tif"))) == 3
    assert _digest(root) == before
    assert main(["generate", "--out", str(tmp_path / "x")]) == 2
    assert "--images and --masks" in capsys.readouterr().err


def test_particles_too_large_for_the_canvas_are_refused_up_front(pools):
    particles, backgrounds = pools
    comp = Compositor(image_size=48, scale=(1.0, 2.0))
    with pytest.raises(ValueError, match="without_larger_than"):
        SyntheticDataset(particles, backgrounds, compositor=comp)
    limit = 48 / 2.0 - 3
    small = particles.without_larger_than(limit)
    assert 0 < len(small) < len(particles) and (small.extents() <= limit).all()
    ds = SyntheticDataset(small, backgrounds, compositor=comp, length=4)
    for i in range(4):  # every rotation and scale fits: no error mid-way
        ds.sample(i)


def test_wide_integer_images_use_their_own_range():
    from utilegen.io import to_unit_float

    twelve_bit = np.array([[0, 1024, 4095]], np.uint16)
    assert np.allclose(to_unit_float(twelve_bit), [[0, 1024 / 4095, 1]])
    assert np.allclose(to_unit_float(np.array([[0, 51, 255]], np.uint8)), [[0, 0.2, 1]])
    pool = ParticlePool.from_pairs([(np.where(np.eye(8, dtype=bool), 4000, 100).astype(np.uint16),
                                     InstanceMask(np.pad(np.ones((4, 4), np.uint16), 2)))])
    assert pool[0].image.max() <= 1 and pool[0].image.max() > 0.9
