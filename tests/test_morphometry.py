"""utilegen.morphometry: known answers on analytic shapes, Fiji's numbers, regionprops
agreement, calibration, PSD statistics and bad inputs."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from utilegen.io import write_image, write_mask
from utilegen.masks import InstanceMask
from utilegen.morphometry import COLUMNS, SizeDistribution, describe_columns, measure, measure_many

SHAPE_COLUMNS = [c for c in COLUMNS if c not in ("image_id", "intensity_mean", "intensity_std")]


# ---------------------------------------------------------------- analytic shapes
def _grid(n):
    yy, xx = np.mgrid[:n, :n].astype(float)
    return xx, yy


def disk(r, cx, cy, n):
    xx, yy = _grid(n)
    return ((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r).astype(np.uint16)


def rotated(kind, w, h, degrees, n):
    """Rectangle or ellipse of full sizes w x h, its w side at `degrees` counter-clockwise
    on screen (y down), centred at a non-integer position."""
    xx, yy = _grid(n)
    cx, cy = n / 2 + 0.31, n / 2 - 0.17
    t = math.radians(degrees)
    u = math.cos(t) * (xx - cx) - math.sin(t) * (yy - cy)
    v = math.sin(t) * (xx - cx) + math.cos(t) * (yy - cy)
    if kind == "rect":
        inside = (abs(u) <= w / 2) & (abs(v) <= h / 2)
    else:
        inside = (u / (w / 2)) ** 2 + (v / (h / 2)) ** 2 <= 1
    return inside.astype(np.uint16)


def ellipse_perimeter(a, b):  # Ramanujan II, exact to ~1e-10 for these aspect ratios
    hh = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1 + 3 * hh / (10 + math.sqrt(4 - 3 * hh)))


def rel(a, b):
    return abs(a - b) / abs(b)


def angle_diff(a, b):
    d = abs(a - b) % 180
    return min(d, 180 - d)


@pytest.mark.parametrize("r,dx,dy", [(20, 0.3, -0.2), (20, 0, 0), (20.6, 0.5, 0.5),
                                     (27.3, 0.1, -0.4), (40, 0.45, -0.3)])
def test_disk_matches_exact_values(r, dx, dy):
    n = int(2 * r + 20)
    cx, cy = n / 2 + dx, n / 2 + dy
    row = measure(disk(r, cx, cy, n)).iloc[0]
    assert not row.touches_border
    assert rel(row.area, math.pi * r * r) < 0.01
    assert rel(row.perimeter, 2 * math.pi * r) < 0.02
    assert rel(row.feret_diameter_max, 2 * r) < 0.02
    assert rel(row.feret_diameter_min, 2 * r) < 0.02
    assert rel(row.axis_major_length, 2 * r) < 0.02
    assert rel(row.axis_minor_length, 2 * r) < 0.02
    assert row.circularity > 0.97  # the original tool reports 0.91, Fiji 0.89-0.92
    assert rel(row.equivalent_diameter, 2 * r) < 0.01
    assert row.solidity > 0.98 and row.roundness > 0.97
    assert row.centroid_x == pytest.approx(cx, abs=0.1)
    assert row.centroid_y == pytest.approx(cy, abs=0.1)


@pytest.mark.parametrize("side", [40, 64])
def test_square_matches_exact_values(side):
    labels = np.zeros((side + 10, side + 10), np.uint16)
    labels[5:5 + side, 5:5 + side] = 1
    row = measure(labels).iloc[0]
    assert row.area == side * side
    assert row.bbox_width == row.bbox_height == side
    assert row.extent == 1 and row.aspect_ratio_bbox == 1
    assert rel(row.perimeter, 4 * side) < 0.02
    assert rel(row.feret_diameter_max, side * math.sqrt(2)) < 0.02
    assert row.feret_diameter_min == pytest.approx(side)
    assert angle_diff(row.feret_angle, 45) < 1 or angle_diff(row.feret_angle, 135) < 1
    # the ellipse with a square's second moments: axes 4 sqrt(side^2 / 12)
    assert row.axis_major_length == pytest.approx(4 * side / math.sqrt(12))
    assert row.aspect_ratio == pytest.approx(1)


@pytest.mark.parametrize("degrees", [20, 50, 110, 163])
def test_rotated_rectangle_matches_exact_values(degrees):
    w, h = 80, 40
    row = measure(rotated("rect", w, h, degrees, 120)).iloc[0]
    assert rel(row.area, w * h) < 0.01
    assert rel(row.perimeter, 2 * (w + h)) < 0.02
    assert rel(row.feret_diameter_max, math.hypot(w, h)) < 0.02
    assert rel(row.feret_diameter_min, h) < 0.02
    assert angle_diff(row.orientation, degrees) < 1
    # a rectangle's moment ellipse: axes 4 sqrt(w^2/12) and 4 sqrt(h^2/12)
    assert rel(row.axis_major_length, 4 * w / math.sqrt(12)) < 0.02
    assert rel(row.axis_minor_length, 4 * h / math.sqrt(12)) < 0.02
    assert rel(row.aspect_ratio, 2) < 0.02
    diag = math.degrees(math.atan2(h, w))
    assert min(angle_diff(row.feret_angle, degrees + diag),
               angle_diff(row.feret_angle, degrees - diag)) < 2
    assert row.solidity > 0.97


@pytest.mark.parametrize("degrees", [0, 35, 100])
def test_rotated_ellipse_matches_exact_values(degrees):
    w, h = 90, 44
    row = measure(rotated("ellipse", w, h, degrees, 120)).iloc[0]
    assert rel(row.area, math.pi * w * h / 4) < 0.01
    assert rel(row.perimeter, ellipse_perimeter(w / 2, h / 2)) < 0.02
    assert rel(row.axis_major_length, w) < 0.02
    assert rel(row.axis_minor_length, h) < 0.02
    assert rel(row.feret_diameter_max, w) < 0.02
    assert rel(row.feret_diameter_min, h) < 0.02
    assert angle_diff(row.orientation, degrees) < 1
    assert angle_diff(row.feret_angle, degrees) < 3
    assert rel(row.roundness, h / w) < 0.02


def test_single_pixel_and_lines_are_finite():
    labels = np.zeros((12, 12), np.uint16)
    labels[2, 2] = 1
    labels[5, 1:11] = 2          # horizontal line, 10 px
    labels[7:11, 7] = 3          # vertical line, 4 px
    t = measure(labels)
    assert t[SHAPE_COLUMNS[1:]].drop(columns="touches_border").notna().all().all()
    line = t.set_index("label").loc[2]
    assert line.feret_diameter_max == pytest.approx(10, abs=0.5)
    assert line.feret_diameter_min == pytest.approx(1)
    assert line.aspect_ratio_bbox == 10
    assert (t.circularity <= 1).all() and (t.solidity <= 1).all()
    assert (t.feret_diameter_min <= t.feret_diameter_max).all()


# ---------------------------------------------------------------- ImageJ convention
# Reference numbers printed by ImageJ 1.52i (Debian `imagej`, Analyze Particles, one
# threshold per label) on these very shapes; see benchmarks/RESULTS.md.
FIJI_DISK = {"Area": 2826, "Perim.": 196.651803616, "Circ.": 0.918303318,
             "Feret": 61.294371683, "FeretAngle": 146.309932474, "MinFeret": 60.0,
             "Major": 60.121986328, "Minor": 59.847905453, "Angle": 127.415571493,
             "AR": 1.004579624, "Round": 0.995441254, "Solidity": 0.976671851}
FIJI_RECT = {"Area": 3199, "Perim.": 254.877200360, "Circ.": 0.618816846,
             "Feret": 89.140338792, "FeretAngle": 176.784516008, "MinFeret": 41.261091927,
             "Major": 90.291512494, "Minor": 45.110478173, "Angle": 151.337639919,
             "AR": 2.001564074, "Round": 0.499609287, "Solidity": 0.958071279}
FIJI_SQUARE40 = {"Area": 1600, "Perim.": 157.656854249, "Circ.": 0.808917318,
                 "Feret": 56.568542495, "FeretAngle": 135.0, "MinFeret": 40.0,
                 "Major": 45.135166684, "Minor": 45.135166684, "Angle": 0.0,
                 "AR": 1.0, "Round": 1.0, "Solidity": 1.0}
IJ_NAMES = {"Area": "area", "Perim.": "perimeter", "Circ.": "circularity",
            "Feret": "feret_diameter_max", "FeretAngle": "feret_angle",
            "MinFeret": "feret_diameter_min", "Major": "axis_major_length",
            "Minor": "axis_minor_length", "Angle": "orientation", "AR": "aspect_ratio",
            "Round": "roundness", "Solidity": "solidity"}


def _fiji_shapes():
    xx, yy = np.mgrid[:120, :400][::-1].astype(float)
    labels = np.zeros((120, 400), np.uint16)
    labels[(yy - 50.3) ** 2 + (xx - 49.8) ** 2 <= 30 ** 2] = 1
    labels[20:60, 200:240] = 2
    t = 0.5
    u = np.cos(t) * (xx - 320) + np.sin(t) * (yy - 60)
    v = -np.sin(t) * (xx - 320) + np.cos(t) * (yy - 60)
    labels[(abs(u) <= 40) & (abs(v) <= 20)] = 3
    return labels


@pytest.mark.parametrize("label,expected", [(1, FIJI_DISK), (2, FIJI_SQUARE40), (3, FIJI_RECT)])
def test_imagej_convention_reproduces_fiji(label, expected):
    row = measure(_fiji_shapes(), convention="imagej").set_index("label").loc[label]
    for ij_name, value in expected.items():
        assert row[IJ_NAMES[ij_name]] == pytest.approx(value, rel=1e-6, abs=1e-6), ij_name


def test_imagej_perimeter_of_one_pixel_and_two_by_two():
    # ImageJ's documented examples: 4 - 2 (2 - sqrt 2) and 8 - 4 (2 - sqrt 2)
    labels = np.zeros((6, 8), np.uint16)
    labels[1, 1] = 1
    labels[2:4, 4:6] = 2
    t = measure(labels, convention="imagej").set_index("label")
    assert t.loc[1, "perimeter"] == pytest.approx(4 - 2 * (2 - math.sqrt(2)))
    assert t.loc[2, "perimeter"] == pytest.approx(8 - 4 * (2 - math.sqrt(2)))


def test_disk_circularity_default_vs_imagej():
    labels = disk(30, 40.5, 40.5, 82)
    default = measure(labels).circularity[0]
    imagej = measure(labels, convention="imagej").circularity[0]
    assert default > 0.97 and imagej < 0.95  # Fiji measures the pixel staircase


# ---------------------------------------------------------------- regionprops agreement
def _random_labels(seed=0, n=160, count=25):
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    rng = np.random.default_rng(seed)
    markers = np.zeros((n, n), np.int32)
    pos = rng.integers(5, n - 5, size=(count, 2))
    markers[pos[:, 0], pos[:, 1]] = np.arange(1, count + 1)
    fg = ndi.gaussian_filter(rng.random((n, n)), 3) > 0.48
    dist = ndi.distance_transform_edt(markers == 0)
    return watershed(dist, markers, mask=fg | (markers > 0)).astype(np.uint16)


def test_agrees_with_regionprops_where_definitions_coincide():
    from skimage.measure import regionprops_table

    labels = _random_labels()
    image = np.random.default_rng(1).normal(100, 20, labels.shape)
    ours = measure(labels, image).set_index("label")
    rp = pd.DataFrame(regionprops_table(
        labels, image, properties=("label", "area", "centroid", "bbox", "extent",
                                   "equivalent_diameter_area", "orientation",
                                   "inertia_tensor_eigvals", "intensity_mean",
                                   "intensity_std"))).set_index("label")
    assert len(ours) == len(rp) and (ours.index == rp.index).all()
    np.testing.assert_allclose(ours.area, rp.area)
    np.testing.assert_allclose(ours.centroid_y, rp["centroid-0"], atol=1e-9)
    np.testing.assert_allclose(ours.centroid_x, rp["centroid-1"], atol=1e-9)
    np.testing.assert_allclose(ours.bbox_height, rp["bbox-2"] - rp["bbox-0"])
    np.testing.assert_allclose(ours.bbox_width, rp["bbox-3"] - rp["bbox-1"])
    np.testing.assert_allclose(ours.extent, rp.extent)
    np.testing.assert_allclose(ours.equivalent_diameter, rp.equivalent_diameter_area)
    np.testing.assert_allclose(ours.intensity_mean, rp.intensity_mean)
    np.testing.assert_allclose(ours.intensity_std, rp.intensity_std)
    # Same moment ellipse, with the pixels' own variance 1/12 added on both axes.
    np.testing.assert_allclose(ours.axis_major_length,
                               4 * np.sqrt(rp["inertia_tensor_eigvals-0"] + 1 / 12))
    np.testing.assert_allclose(ours.axis_minor_length,
                               4 * np.sqrt(rp["inertia_tensor_eigvals-1"] + 1 / 12))
    # skimage: radians between the row axis and the major axis; ours: degrees from x, CCW.
    round_ones = (ours.aspect_ratio < 1.02).to_numpy()
    expected = (np.degrees(rp.orientation) - 90) % 180
    diff = np.abs(ours.orientation - expected) % 180
    diff = np.minimum(diff, 180 - diff)[~round_ones]
    assert diff.max() < 1e-6


def test_touching_instances_are_never_merged():
    labels = np.zeros((30, 50), np.uint16)
    labels[5:25, 5:25] = 7
    labels[5:25, 25:45] = 300  # touching along a whole side
    t = measure(labels)
    assert t.label.tolist() == [7, 300]
    assert t.area.tolist() == [400, 400]
    assert t.bbox_width.tolist() == [20, 20]


def test_labels_beyond_255_and_uint16_masks():
    labels = np.zeros((20, 20), np.uint16)
    labels[2:6, 2:6] = 1000
    labels[10:15, 10:15] = 40000
    t = measure(InstanceMask(labels))
    assert t.label.tolist() == [1000, 40000]
    assert t.area.tolist() == [16, 25]


# ---------------------------------------------------------------- calibration
def test_pixel_size_argument_scales_lengths_and_areas():
    labels = rotated("ellipse", 60, 30, 30, 80)
    px = measure(labels)
    nm = measure(labels, pixel_size=2.5, unit="nm")
    for col, (dim, _) in COLUMNS.items():
        if col not in nm:
            continue
        factor = {"length": 2.5, "area": 6.25}.get(dim, 1.0)
        if nm[col].dtype.kind == "f":
            np.testing.assert_allclose(nm[col], px[col] * factor, err_msg=col)
    assert nm.attrs["unit"] == "nm" and nm.attrs["pixel_size"] == 2.5
    assert nm.attrs["units"]["area"] == "nm²" and nm.attrs["units"]["feret_diameter_max"] == "nm"
    assert px.attrs["unit"] == "px"


def test_pixel_size_read_from_tiff_metadata(tmp_path):
    labels = disk(10, 15.2, 14.7, 32)
    image = (labels * 200 + 20).astype(np.uint8)
    path = write_image(tmp_path / "img.tif", image, pixel_size=0.5, unit="nm")
    t = measure(labels, path)
    assert t.attrs["pixel_size"] == pytest.approx(0.5) and t.attrs["unit"] == "nm"
    assert t.area[0] == pytest.approx(labels.sum() * 0.25)
    assert t.intensity_mean[0] == pytest.approx(220)
    # the argument wins over the metadata
    assert measure(labels, path, pixel_size=2, unit="µm").attrs["unit"] == "µm"
    # a mask path works too, and an uncalibrated one gives pixels
    mask_path = write_mask(tmp_path / "mask.tif", labels)
    assert measure(mask_path).attrs["unit"] == "px"


# ---------------------------------------------------------------- edge cases and errors
def test_empty_mask_gives_empty_table_with_all_columns():
    t = measure(np.zeros((10, 10), np.uint16))
    assert len(t) == 0 and list(t.columns) == SHAPE_COLUMNS
    t = measure(np.zeros((10, 10), np.uint16), np.ones((10, 10)))
    assert list(t.columns) == SHAPE_COLUMNS + ["intensity_mean", "intensity_std"]


def test_one_huge_particle_and_border_exclusion():
    labels = np.zeros((1200, 1200), np.uint16)
    labels[:, :1100] = 1
    labels[1150:1190, 1150:1190] = 2
    t = measure(labels)
    assert t.area.tolist() == [1200 * 1100, 1600]
    assert t.touches_border.tolist() == [True, False]
    assert rel(t.feret_diameter_max[0], math.hypot(1200, 1100)) < 0.01
    kept = measure(labels, exclude_border=True)
    assert kept.label.tolist() == [2]


def test_bad_inputs_raise_clear_errors():
    good = np.zeros((10, 10), np.uint16)
    good[2:5, 2:5] = 1
    with pytest.raises(ValueError, match="integer"):
        measure(good.astype(float))
    with pytest.raises(ValueError, match="boolean"):
        measure(good > 0)
    with pytest.raises(ValueError,
                       match=r"image shape \(10, 12\) does not match mask shape \(10, 10\)"):
        measure(good, np.zeros((10, 12)))
    with pytest.raises(ValueError, match="2-D"):
        measure(np.zeros((2, 10, 10), np.uint16))
    with pytest.raises(ValueError, match="negative"):
        measure(-good.astype(np.int32))
    with pytest.raises(ValueError, match="pixel_size"):
        measure(good, pixel_size=-1)
    with pytest.raises(ValueError, match="convention"):
        measure(good, convention="fiji")


def test_measure_many_list_and_folder(tmp_path):
    a = np.zeros((20, 20), np.uint16)
    a[2:8, 2:8] = 1
    b = np.zeros((20, 20), np.uint16)
    b[3:9, 3:9] = 1
    b[10:15, 10:15] = 2
    t = measure_many([a, b], image_ids=["a", "b"])
    assert t.image_id.tolist() == ["a", "b", "b"] and t.area.tolist() == [36, 36, 25]
    (tmp_path / "masks").mkdir()
    (tmp_path / "images").mkdir()
    for name, m in (("one", a), ("two", b)):
        write_mask(tmp_path / "masks" / f"{name}.tif", m)
        write_image(tmp_path / "images" / f"{name}.tif", (m * 100).astype(np.uint8),
                    pixel_size=2.0, unit="nm")
    t = measure_many(tmp_path / "masks", tmp_path / "images")
    assert t.image_id.tolist() == ["one", "two", "two"]
    assert t.area.tolist() == [144, 144, 100] and t.attrs["unit"] == "nm"
    assert t.intensity_mean.tolist() == [100, 100, 200]
    with pytest.raises(ValueError, match="images has 1 items but masks has 2"):
        measure_many([a, b], [a])


def test_real_emps_mask(emps_root):
    from utilegen.io import read_image, read_mask

    mask_path = emps_root / "segmaps" / "0113230c21.png"
    mask = read_mask(mask_path)
    t = measure(mask_path, emps_root / "images" / "0113230c21.png")
    assert len(t) == mask.count
    np.testing.assert_array_equal(t.area, mask.areas())
    assert t.drop(columns="touches_border").notna().all().all()
    assert ((t.circularity > 0) & (t.circularity <= 1)).all()
    assert (t.feret_diameter_min <= t.feret_diameter_max).all()
    assert read_image(emps_root / "images" / "0113230c21.png").shape == mask.shape


def test_every_column_is_documented():
    t = measure(disk(5, 8, 8, 20), np.ones((20, 20)))
    assert set(t.columns) <= set(COLUMNS)
    text = describe_columns()
    assert all(c in text for c in t.columns)


# ---------------------------------------------------------------- size distributions
def test_lognormal_fit_recovers_known_parameters():
    rng = np.random.default_rng(42)
    mu, sigma = math.log(25.0), 0.3
    psd = SizeDistribution(rng.lognormal(mu, sigma, 4000), unit="nm", name="diameter")
    fit = psd.fits["lognormal"]
    se_mu, se_sigma = sigma / math.sqrt(4000), sigma / math.sqrt(2 * 4000)
    assert abs(fit.params["mu"] - mu) < 4 * se_mu
    assert abs(fit.params["sigma"] - sigma) < 4 * se_sigma
    assert psd.best_fit.name == "lognormal" and psd.best_fit.ks_statistic < 0.03
    s = psd.summary()
    assert s["count"] == 4000
    assert rel(s["d50"], 25.0) < 0.03 and rel(s["median"], 25.0) < 0.03
    assert rel(s["geometric_mean"], 25.0) < 0.02
    assert rel(s["geometric_std"], math.exp(sigma)) < 0.02
    assert rel(s["d10"], 25 * math.exp(-1.2816 * sigma)) < 0.04
    assert rel(s["d90"], 25 * math.exp(1.2816 * sigma)) < 0.04
    assert rel(s["mean"], 25 * math.exp(sigma ** 2 / 2)) < 0.02
    assert rel(s["mode"], 25 * math.exp(-sigma ** 2)) < 0.1


def test_confidence_intervals_have_known_ranks_and_coverage():
    # the textbook case: for n = 10 the 95 % interval of the median is [x(2), x(9)]
    psd = SizeDistribution(np.arange(1.0, 11.0))
    assert psd.confidence_interval("d50") == (2.0, 9.0)
    assert psd.confidence_interval("median") == (2.0, 9.0)
    assert np.isnan(psd.confidence_interval("d10")).all()  # too few particles for D10
    # mean: Student's t, 5.5 +- 2.262 * s / sqrt(10)
    low, high = psd.confidence_interval("mean")
    assert (high - low) / 2 == pytest.approx(2.2622 * np.std(np.arange(1, 11), ddof=1)
                                             / math.sqrt(10), rel=1e-4)
    s = psd.summary()
    assert (s["d50_ci_low"], s["d50_ci_high"]) == (2.0, 9.0)
    # coverage: the true median / D90 / mean of a log-normal lie inside >= ~95 % of 400
    # intervals from samples of 60 particles
    rng = np.random.default_rng(0)
    mu, sigma = math.log(30), 0.4
    truth = {"d50": 30.0, "d90": 30 * math.exp(1.2816 * sigma),
             "mean": 30 * math.exp(sigma**2 / 2)}
    hits = {k: 0 for k in truth}
    for _ in range(400):
        sample = SizeDistribution(rng.lognormal(mu, sigma, 60))
        for k, true in truth.items():
            low, high = sample.confidence_interval(k)
            hits[k] += low <= true <= high
    assert hits["d50"] / 400 >= 0.93 and hits["d90"] / 400 >= 0.93
    assert 0.91 <= hits["mean"] / 400 <= 0.99
    with pytest.raises(ValueError, match="statistic"):
        psd.confidence_interval("d150")
    with pytest.raises(ValueError, match="level"):
        psd.confidence_interval("d50", level=95)


def test_normal_sample_prefers_normal_fit():
    psd = SizeDistribution(np.random.default_rng(3).normal(50, 4, 3000))
    assert psd.best_fit.name == "normal"
    assert psd.fits["normal"].params["mean"] == pytest.approx(50, abs=0.3)
    assert psd.fits["normal"].params["std"] == pytest.approx(4, abs=0.2)


def test_bins_kde_and_bad_values():
    v = np.random.default_rng(0).lognormal(2, 0.2, 500)
    counts, edges = SizeDistribution(v, bins=[0, 5, 10, 100]).histogram()
    assert edges.tolist() == [0, 5, 10, 100] and counts.sum() == 500
    assert len(SizeDistribution(v, bins=12).histogram()[0]) == 12
    psd = SizeDistribution(v)
    x = np.linspace(0, 40, 2001)
    assert np.trapezoid(psd.kde(x), x) == pytest.approx(1, abs=0.01)
    with pytest.raises(ValueError, match="empty"):
        SizeDistribution([])
    with pytest.raises(ValueError, match="bins"):
        SizeDistribution(v, bins=[3, 1])
    # non-positive values: no log-normal fit, the normal one still works
    assert set(SizeDistribution([-1.0, 0.5, 2.0]).fits) == {"normal"}


def test_plot_and_files(tmp_path):
    table = measure(_random_labels(), pixel_size=0.8, unit="nm")
    psd = SizeDistribution.from_table(table, "equivalent_diameter")
    assert psd.unit == "nm"
    fig = psd.plot()
    ax = fig.axes[0]
    assert "nm" in ax.get_xlabel() and "density" in ax.get_ylabel()
    assert len(ax.lines) >= 2
    png = psd.save(tmp_path / "psd.png")
    svg = psd.save(tmp_path / "psd.svg")
    assert png.read_bytes()[:4] == b"\x89PNG" and b"<svg" in svg.read_bytes()[:500]
    with pytest.raises(FileExistsError):
        psd.save(tmp_path / "psd.png")
    csv = pd.read_csv(psd.to_csv(tmp_path / "psd.csv"))
    assert csv["count"].sum() == len(table)
    assert {"bin_left", "bin_right", "density", "kde", "normal_pdf"} <= set(csv.columns)
    ratio = SizeDistribution.from_table(table, "aspect_ratio")
    assert ratio.unit == "" and ratio.summary()["count"] == len(table)


def test_import_is_light():
    code = ("import sys, utilegen.morphometry; "
            "print(any(m in sys.modules for m in ('matplotlib', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
