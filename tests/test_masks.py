"""InstanceMask: constructors, queries, transforms and exports, on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from utilegen.io import read_mask, write_mask
from utilegen.masks import Instance, InstanceMask

# pycocotools' own decode trips a NumPy 2 deprecation inside its Cython code; not ours.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

# Three instances: 3 (an L of 3 pixels), 7 (a vertical pair on the right edge), 12 (1 pixel).
LABELS = np.array([
    [0, 0, 0, 0, 0],
    [0, 3, 3, 0, 0],
    [0, 3, 0, 0, 7],
    [0, 0, 0, 0, 7],
    [0, 12, 0, 0, 0],
    [0, 0, 0, 0, 0],
])


def grid_labels(n_rows: int, n_cols: int, *, cell: int = 4, size: int = 3) -> np.ndarray:
    """Squares of `size` px on a `cell` px grid, labelled 1..n in raster (row-major) order."""
    labels = np.zeros((n_rows * cell + 1, n_cols * cell + 1), np.int64)
    for i in range(n_rows):
        for j in range(n_cols):
            r, c = 1 + i * cell, 1 + j * cell
            labels[r:r + size, c:c + size] = i * n_cols + j + 1
    return labels


def disk(shape, centre, radius) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2


# ---------------------------------------------------------------------------- from_labels
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.int16, np.int32, np.int64])
def test_from_labels_keeps_values_and_stores_uint16(dtype):
    m = InstanceMask.from_labels(LABELS.astype(dtype))
    assert m.labels.dtype == np.uint16
    assert m.labels.tolist() == LABELS.tolist()
    assert m.shape == (6, 5)
    assert m == InstanceMask(LABELS)


def test_labels_above_65535_are_stored_as_int32():
    labels = np.array([[0, 1], [70_000, 65_535]])
    m = InstanceMask(labels)
    assert m.labels.dtype == np.int32
    assert m.labels.tolist() == labels.tolist()
    assert m.ids.tolist() == [1, 65_535, 70_000]


def test_mask_is_immutable_and_copies_its_input():
    labels = LABELS.copy()
    m = InstanceMask(labels)
    labels[1, 1] = 99  # changing the caller's array must not change the mask
    assert m.labels[1, 1] == 3
    assert not m.labels.flags.writeable
    with pytest.raises(ValueError):
        m.labels[0, 0] = 1
    with pytest.raises(AttributeError, match="immutable"):
        m.extra = 1


@pytest.mark.parametrize("bad, match", [
    (np.array([[0.0, 1.0], [2.0, 0.0]]), "integer"),
    (np.array([[0, -1], [2, 0]]), "negative"),
    (np.zeros((2, 3, 3), np.uint8), "2-D"),
    (np.zeros((4,), np.uint8), "2-D"),
    (np.zeros((0, 0), np.uint16), "empty"),
    (np.array([[True, False], [False, True]]), "from_binary"),
])
def test_invalid_label_arrays_raise_clear_value_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        InstanceMask(bad)


# ---------------------------------------------------------------------------- from_rgb
RED, GREEN, BLUE, WHITE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)


def test_from_rgb_numbers_colours_by_raster_first_appearance():
    rgb = np.array([
        [BLACK, BLUE, BLUE, BLACK],
        [RED, BLACK, GREEN, GREEN],
        [RED, WHITE, BLACK, BLUE],  # blue again: same colour, same instance
    ], np.uint8)
    expected = [
        [0, 1, 1, 0],
        [2, 0, 3, 3],
        [2, 4, 0, 1],
    ]
    m = InstanceMask.from_rgb(rgb)
    assert m.labels.tolist() == expected
    # The numbering does not depend on which colours were used.
    recoloured = rgb[..., ::-1].copy()  # RGB -> BGR: every colour changes, black stays black
    assert InstanceMask.from_rgb(recoloured).labels.tolist() == expected


def test_from_rgb_rgba_transparent_pixels_are_background():
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)
    rgba[0, 1] = (0, 255, 0, 0)      # green but fully transparent: background
    rgba[0, 2] = (0, 0, 0, 255)      # opaque black: background
    rgba[1, 0] = (0, 255, 0, 128)    # half transparent green: an instance
    rgba[1, 2] = (255, 0, 0, 10)     # red again, barely opaque: same instance as (0, 0)
    assert InstanceMask.from_rgb(rgba).labels.tolist() == [[1, 0, 0], [2, 0, 1]]


def test_from_rgb_16_bit_colours_differing_below_8_bits_are_distinct():
    rgb = np.zeros((1, 4, 3), np.uint16)
    rgb[0, 0] = (256, 0, 0)
    rgb[0, 1] = (257, 0, 0)
    rgb[0, 2] = (256, 0, 0)
    rgb[0, 3] = (0, 0, 65535)
    assert InstanceMask.from_rgb(rgb).labels.tolist() == [[1, 2, 1, 3]]


@pytest.mark.parametrize("bad", [np.zeros((3, 3), np.uint8), np.zeros((3, 3, 2), np.uint8),
                                 np.zeros((3, 3, 3), np.float32)])
def test_from_rgb_rejects_non_rgb_input(bad):
    with pytest.raises(ValueError):
        InstanceMask.from_rgb(bad)


# ---------------------------------------------------------------------------- from_binary
# Two 2x2 squares touching only at a corner.
DIAGONAL = np.array([
    [1, 1, 0, 0],
    [1, 1, 0, 0],
    [0, 0, 1, 1],
    [0, 0, 1, 1],
], bool)


def test_from_binary_connectivity_1_separates_corner_touching_squares():
    m = InstanceMask.from_binary(DIAGONAL, connectivity=1)
    assert m.count == 2
    assert m.areas().tolist() == [4, 4]
    assert m.same_instances(np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 2, 2], [0, 0, 2, 2]]))


def test_from_binary_connectivity_2_joins_corner_touching_squares():
    m = InstanceMask.from_binary(DIAGONAL, connectivity=2)
    assert m.count == 1
    assert m.areas().tolist() == [8]
    assert np.array_equal(m.labels > 0, DIAGONAL)


def test_from_binary_default_is_connectivity_1_and_accepts_0_255_images():
    m = InstanceMask.from_binary(DIAGONAL.astype(np.uint8) * 255)
    assert m.count == 2


def test_from_binary_rejects_bad_input():
    with pytest.raises(ValueError, match="connectivity"):
        InstanceMask.from_binary(DIAGONAL, connectivity=3)
    with pytest.raises(ValueError, match="2-D"):
        InstanceMask.from_binary(np.zeros((2, 2, 2), bool))


# ---------------------------------------------------------------------------- from_polygons
def test_from_polygons_square_pixel_count():
    # Corners on half-integers: exactly the pixel centres rows 2..6, cols 2..6 are inside.
    square = [(1.5, 1.5), (1.5, 6.5), (6.5, 6.5), (6.5, 1.5)]
    m = InstanceMask.from_polygons([square], (10, 10))
    assert m.areas().tolist() == [25]
    expected = np.zeros((10, 10), bool)
    expected[2:7, 2:7] = True
    assert np.array_equal(m.labels == 1, expected)


def test_from_polygons_vertices_are_row_col():
    # 2 rows (2, 3) by 7 columns (1..7).
    rect = [(1.5, 0.5), (1.5, 7.5), (3.5, 7.5), (3.5, 0.5)]
    labels = InstanceMask.from_polygons([np.array(rect)], (6, 9)).labels
    rows, cols = np.nonzero(labels)
    assert sorted(set(rows.tolist())) == [2, 3]
    assert sorted(set(cols.tolist())) == list(range(1, 8))


def test_from_polygons_later_polygons_are_on_top():
    first = [(1.5, 1.5), (1.5, 6.5), (6.5, 6.5), (6.5, 1.5)]   # rows/cols 2..6
    second = [(4.5, 4.5), (4.5, 8.5), (8.5, 8.5), (8.5, 4.5)]  # rows/cols 5..8
    m = InstanceMask.from_polygons([first, second], (10, 10))
    assert m.ids.tolist() == [1, 2]
    assert m.areas().tolist() == [25 - 4, 16]
    assert (m.labels[5:7, 5:7] == 2).all()


def test_from_polygons_rejects_bad_input():
    with pytest.raises(ValueError, match="polygon 1"):
        InstanceMask.from_polygons([[(0, 0), (0, 3), (3, 3)], [(0, 0), (1, 1)]], (5, 5))
    with pytest.raises(ValueError, match="shape"):
        InstanceMask.from_polygons([], (0, 5))
    assert InstanceMask.from_polygons([], (3, 4)).count == 0


# ---------------------------------------------------------------------------- queries
def test_count_ids_areas_len():
    m = InstanceMask(LABELS)
    assert m.count == len(m) == 3
    assert m.ids.tolist() == [3, 7, 12]
    assert m.areas().tolist() == [3, 2, 1]
    empty = InstanceMask(np.zeros((3, 3), np.uint8))
    assert empty.count == 0 and empty.areas().tolist() == [] and list(empty) == []


def test_iteration_gives_label_bbox_area_and_crop():
    instances = list(InstanceMask(LABELS))
    assert all(isinstance(i, Instance) for i in instances)
    assert [i.label for i in instances] == [3, 7, 12]
    assert [i.bbox for i in instances] == [(1, 1, 3, 3), (2, 4, 4, 5), (4, 1, 5, 2)]
    assert [i.area for i in instances] == [3, 2, 1]
    assert instances[0].mask.tolist() == [[True, True], [True, False]]
    assert instances[1].mask.tolist() == [[True], [True]]
    assert instances[2].mask.tolist() == [[True]]
    image = np.arange(LABELS.size).reshape(LABELS.shape)
    assert image[instances[1].slices].ravel().tolist() == [14, 19]


def test_huge_sparse_labels_work_without_label_sized_tables():
    # Labels up to the int32 maximum are valid; a table indexed by label value would need
    # gigabytes here, so this also guards memory use.
    top = np.iinfo(np.int32).max
    m = InstanceMask(np.array([[0, top, top], [5, 0, 0]]))
    assert m.labels.dtype == np.int32
    assert m.ids.tolist() == [5, top] and m.count == 2
    assert m.areas().tolist() == [1, 2]
    assert [(i.label, i.bbox, i.area) for i in m] == [(5, (1, 0, 2, 1), 1), (top, (0, 1, 1, 3), 2)]
    assert m.relabel().labels.tolist() == [[0, 2, 2], [1, 0, 0]]
    assert m.keep([top]).labels.tolist() == [[0, top, top], [0, 0, 0]]
    assert m.remove([top]).labels.tolist() == [[0, 0, 0], [5, 0, 0]]


# ---------------------------------------------------------------------------- transforms
def test_relabel_numbers_1_to_n_keeping_order():
    labels = np.array([[0, 50, 50], [9, 0, 70_000], [9, 2, 0]])
    m = InstanceMask(labels).relabel()
    assert m.labels.tolist() == [[0, 3, 3], [2, 0, 4], [2, 1, 0]]
    assert m.labels.dtype == np.uint16
    assert InstanceMask(np.zeros((2, 2), np.uint8)).relabel().count == 0


def test_without_border_drops_every_instance_touching_an_edge():
    labels = np.array([
        [1, 0, 0, 0, 2],
        [0, 0, 0, 0, 0],
        [0, 0, 9, 9, 0],
        [3, 0, 9, 0, 4],
        [0, 0, 0, 0, 0],
        [0, 5, 5, 0, 0],
    ])
    m = InstanceMask(labels)
    assert sorted(m.border_ids().tolist()) == [1, 2, 3, 4, 5]
    kept = m.without_border()
    assert kept.ids.tolist() == [9]
    assert np.array_equal(kept.labels, np.where(labels == 9, 9, 0))
    assert InstanceMask(labels).without_border().without_border() == kept


def squares_with_areas(areas) -> np.ndarray:
    """One horizontal bar per instance, label k+1 with areas[k] pixels, apart from each other."""
    labels = np.zeros((2 * len(areas) + 1, max(areas) + 2), np.uint16)
    for k, area in enumerate(areas):
        labels[1 + 2 * k, 1:1 + area] = k + 1
    return labels


def test_without_small_default_is_0_6_times_mean_area():
    # Areas 1, 4, 9, 10: mean 6, 0.6 x 6 = 3.6 -> the 1-pixel instance goes.
    m = InstanceMask(squares_with_areas([1, 4, 9, 10]))
    assert m.without_small().ids.tolist() == [2, 3, 4]
    assert m.without_small(1.0).ids.tolist() == [3, 4]  # threshold 6
    assert m.without_small(0.0).ids.tolist() == [1, 2, 3, 4]
    assert m.without_small(2.0).count == 0  # threshold 12: nothing is that big


def test_without_small_keeps_an_instance_exactly_at_the_threshold():
    # Areas 2 and 6: mean 4, 0.5 x 4 = 2 exactly; "smaller than" the threshold is dropped.
    m = InstanceMask(squares_with_areas([2, 6]))
    assert m.without_small(0.5).ids.tolist() == [1, 2]


def test_without_small_edge_cases():
    empty = InstanceMask(np.zeros((3, 3), np.uint8))
    assert empty.without_small().count == 0
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="fraction"):
            InstanceMask(LABELS).without_small(bad)


def test_keep_and_remove_leave_label_values_alone():
    m = InstanceMask(LABELS)
    kept = m.keep([7])
    assert kept.labels.tolist() == np.where(LABELS == 7, 7, 0).tolist()
    removed = m.remove([7])
    assert removed.labels.tolist() == np.where(LABELS == 7, 0, LABELS).tolist()
    # Absent labels, 0 and huge values are ignored; the original mask is not changed.
    assert m.keep([3, 7, 12, 0, 999, 10**9]) == m
    assert m.remove([]) == m and m.remove([999]) == m
    assert m.keep([]).count == 0
    assert m.labels.tolist() == LABELS.tolist()


def test_same_instances_ignores_label_values_only():
    m = InstanceMask(LABELS)
    permuted = np.select([LABELS == 3, LABELS == 7, LABELS == 12], [1, 60_000, 2], 0)
    assert m.same_instances(InstanceMask(permuted))
    assert m.same_instances(permuted)  # plain arrays are accepted
    merged = np.where(LABELS == 12, 3, LABELS)
    assert not m.same_instances(merged)
    split = LABELS.copy()
    split[1, 2] = 4  # instance 3 split into two
    assert not m.same_instances(split)
    moved = LABELS.copy()
    moved[0, 0] = 12  # an extra pixel for instance 12
    assert not m.same_instances(moved)
    assert not m.same_instances(np.zeros((6, 6), np.uint8))  # other shape
    # Same partition but background swapped with an instance.
    a = np.array([[0, 1], [1, 1]])
    b = np.array([[1, 0], [0, 0]])
    assert not InstanceMask(a).same_instances(b)


def test_equality_compares_labels_not_storage():
    assert InstanceMask(LABELS.astype(np.uint8)) == InstanceMask(LABELS.astype(np.int64))
    assert InstanceMask(LABELS) != InstanceMask(np.where(LABELS == 3, 4, LABELS))
    assert InstanceMask(LABELS) != InstanceMask(LABELS[:5])
    assert np.array_equal(np.asarray(InstanceMask(LABELS)), LABELS)


# ---------------------------------------------------------------------------- to_rgb
def test_to_rgb_distinct_colours_and_black_background():
    labels = grid_labels(5, 6)  # 30 instances
    rgb = InstanceMask(labels).to_rgb()
    assert rgb.shape == labels.shape + (3,) and rgb.dtype == np.uint8
    assert (rgb[labels == 0] == 0).all()
    assert (rgb[labels > 0].max(axis=1) > 0).all()  # no instance pixel is black
    colours = {}
    for label in range(1, 31):
        pixel_colours = np.unique(rgb[labels == label], axis=0)
        assert len(pixel_colours) == 1  # one colour per instance
        colours[label] = tuple(pixel_colours[0])
    assert len(set(colours.values())) == 30  # distinct
    # A label's colour does not depend on the rest of the mask.
    alone = InstanceMask(np.where(labels == 17, 17, 0)).to_rgb()
    assert tuple(alone[labels == 17][0]) == colours[17]


def test_rgb_round_trip_of_300_instances():
    labels = grid_labels(15, 20)  # 300 instances numbered in raster order
    m = InstanceMask(labels)
    assert m.count == 300
    assert InstanceMask.from_rgb(m.to_rgb()) == m
    # Shuffled label values come back as the same instances (renumbered by first appearance).
    rng = np.random.default_rng(0)
    lut = np.concatenate([[0], rng.permutation(np.arange(1, 301)) * 37])
    shuffled = InstanceMask(lut[labels])
    back = InstanceMask.from_rgb(shuffled.to_rgb())
    assert back.same_instances(shuffled) and back == m


def test_tiff_round_trip_of_300_instances(tmp_path):
    m = InstanceMask(grid_labels(15, 20))
    write_mask(tmp_path / "m.tif", m)
    back = read_mask(tmp_path / "m.tif")
    assert back == m and back.labels.dtype == np.uint16 and back.count == 300


def test_more_than_65535_instances_are_int32_and_round_trip(tmp_path):
    labels = np.arange(1, 300 * 301 + 1).reshape(300, 301)  # 90300 one-pixel instances
    labels[::7, ::5] = 0
    m = InstanceMask(labels)
    assert m.labels.dtype == np.int32
    assert m.count == int((labels > 0).sum())
    write_mask(tmp_path / "big.tif", m)
    back = read_mask(tmp_path / "big.tif")
    assert back.labels.dtype == np.int32
    assert np.array_equal(back.labels, labels)
    assert InstanceMask.from_rgb(m.to_rgb()).same_instances(m)


def test_to_rgb_refuses_labels_beyond_24_bits():
    with pytest.raises(ValueError, match="relabel"):
        InstanceMask(np.array([[0, 2**24]])).to_rgb()
    assert InstanceMask(np.array([[0, 2**24]])).relabel().to_rgb().any()


# ---------------------------------------------------------------------------- to_coco
def coco_index(dataset: dict):
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
    return coco


def coco_test_labels() -> np.ndarray:
    """Instances with awkward shapes: at pixel (0, 0), a ring with a hole, a 1-px line,
    a diagonal staircase, a single pixel in the last corner."""
    labels = np.zeros((20, 24), np.uint16)
    labels[0:3, 0:2] = 1                                   # first pixel: RLE starts with 1s
    ring = disk((20, 24), (9, 9), 5) & ~disk((20, 24), (9, 9), 2)
    labels[ring] = 2
    labels[2, 14:22] = 3                                   # 1-pixel-wide line
    labels[np.arange(8, 15), np.arange(15, 22)] = 4        # diagonal, corners touching
    labels[19, 23] = 5                                     # last pixel
    labels[16:19, 3:6] = 6
    labels[17, 4] = 0                                      # square with a 1-pixel hole
    return labels


def test_to_coco_structure():
    labels = coco_test_labels()
    d = InstanceMask(labels).to_coco(image_id=7, category_id=3, first_id=100,
                                     file_name="a.png", category_name="np")
    assert d["images"] == [{"id": 7, "height": 20, "width": 24, "file_name": "a.png"}]
    assert d["categories"] == [{"id": 3, "name": "np"}]
    anns = d["annotations"]
    assert [a["id"] for a in anns] == list(range(100, 106))
    assert all(a["image_id"] == 7 and a["category_id"] == 3 and a["iscrowd"] == 0 for a in anns)
    assert [a["area"] for a in anns] == [int((labels == k).sum()) for k in range(1, 7)]
    # COCO bbox is [x, y, width, height].
    assert anns[0]["bbox"] == [0, 0, 2, 3]
    assert anns[2]["bbox"] == [14, 2, 8, 1]
    assert anns[4]["bbox"] == [23, 19, 1, 1]
    with pytest.raises(ValueError, match="segmentation"):
        InstanceMask(labels).to_coco(segmentation="mask")


def test_to_coco_rle_decodes_to_each_instance_with_pycocotools():
    from pycocotools import mask as mask_utils

    labels = coco_test_labels()
    d = InstanceMask(labels).to_coco(segmentation="rle")
    h, w = labels.shape
    for k, ann in enumerate(d["annotations"], start=1):
        rle = mask_utils.frPyObjects(ann["segmentation"], h, w)
        decoded = mask_utils.decode(rle).astype(bool)
        assert np.array_equal(decoded, labels == k), k
        assert int(mask_utils.area(rle)) == ann["area"]
    coco = coco_index(d)
    for k, ann_id in enumerate(sorted(coco.anns), start=1):
        assert np.array_equal(coco.annToMask(coco.anns[ann_id]).astype(bool), labels == k), k


def test_to_coco_polygons_follow_pixel_edges():
    labels = coco_test_labels()
    d = InstanceMask(labels).to_coco(segmentation="polygon")
    coco = coco_index(d)
    for k, ann_id in enumerate(sorted(coco.anns), start=1):
        ann = coco.anns[ann_id]
        assert all(len(p) >= 6 and len(p) % 2 == 0 for p in ann["segmentation"])
        decoded = coco.annToMask(ann).astype(bool)
        expected = labels == k
        if k in (2, 6):  # outer contours only: holes are filled
            from scipy.ndimage import binary_fill_holes
            expected = binary_fill_holes(expected)
        assert np.array_equal(decoded, expected), k


def test_to_coco_polygon_of_a_disk():
    shape = (64, 64)
    truth = disk(shape, (30.3, 33.6), 12)
    d = InstanceMask(truth.astype(np.uint8)).to_coco(segmentation="polygon")
    coco = coco_index(d)
    (ann,) = coco.anns.values()
    decoded = coco.annToMask(ann).astype(bool)
    iou = (decoded & truth).sum() / (decoded | truth).sum()
    assert iou > 0.9
    # A 2x2 square must stay 4 pixels (a contour through pixel centres would give 1).
    square = np.zeros((6, 6), np.uint8)
    square[2:4, 2:4] = 1
    square_coco = coco_index(InstanceMask(square).to_coco(segmentation="polygon"))
    (ann,) = square_coco.anns.values()
    assert np.array_equal(square_coco.annToMask(ann), square)


def test_pickle_round_trip():
    import pickle

    mask = InstanceMask(np.array([[0, 3, 3], [70000, 0, 1]], dtype=np.int64))
    copy = pickle.loads(pickle.dumps(mask))
    assert copy == mask and copy.labels.dtype == mask.labels.dtype
    assert not copy.labels.flags.writeable


def test_rgb_mask_labels_in_bounded_memory_match_first_appearance():
    from utilegen.masks import _first_appearance_labels, _first_appearance_small

    rng = np.random.default_rng(0)
    codes = rng.integers(0, 40, (300, 200)).astype(np.uint32) * 9973  # 40 colours, 0 = background
    expected = _first_appearance_labels(codes)
    for chunk in (7, 1000, 1 << 20):  # first appearances that straddle chunk boundaries
        assert np.array_equal(_first_appearance_small(codes, chunk=chunk), expected)
    # a known answer: labels by raster order of first appearance
    small = np.array([[0, 5, 5], [7, 0, 5], [9, 7, 0]], np.uint32)
    assert _first_appearance_small(small).tolist() == [[0, 1, 1], [2, 0, 1], [3, 2, 0]]
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 1] = (255, 0, 0)
    rgb[1, 0] = (0, 0, 255)
    assert InstanceMask.from_rgb(rgb).labels.tolist() == [[0, 1], [2, 0]]
