"""`InstanceMask`: the one instance-mask type every part of utilegen speaks.

An instance mask is a 2-D integer label image: 0 is background, every other value is one
particle. It is immutable; every method returns a new mask. Labels are stored as
``uint16`` while they fit and as ``int32`` beyond, so there is no 255-instance limit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

# scipy.ndimage is imported where used: it would triple the time of `import utilegen`.

__all__ = ["Instance", "InstanceMask"]

# Colour of label l in `to_rgb`: l times an odd constant modulo 2**24 is a bijection on
# 24-bit integers, so distinct labels get distinct, non-black, well-spread colours.
_COLOUR_MULTIPLIER = 0x9E3779 | 1
_MAX_RGB_LABEL = 2**24 - 1


@dataclass(frozen=True)
class Instance:
    """One instance of an `InstanceMask`.

    Attributes
    ----------
    label : int
        The instance's label value.
    bbox : tuple of int
        ``(row_start, col_start, row_stop, col_stop)``, half-open, in image pixels.
    area : int
        Number of pixels.
    mask : (h, w) ndarray of bool
        The instance's pixels inside `bbox`.
    """

    label: int
    bbox: tuple[int, int, int, int]
    area: int
    mask: np.ndarray

    @property
    def slices(self) -> tuple[slice, slice]:
        """The bbox as a pair of slices, for ``image[instance.slices]``."""
        r0, c0, r1, c1 = self.bbox
        return slice(r0, r1), slice(c0, c1)


def _as_label_array(labels, name: str = "labels") -> np.ndarray:
    """Validate a label image and return a read-only uint16/int32 copy."""
    if isinstance(labels, InstanceMask):
        return labels.labels
    arr = np.asarray(labels)
    if arr.dtype == bool:
        raise ValueError(
            f"{name} is a boolean array; use InstanceMask.from_binary() to split a binary "
            "mask into connected components"
        )
    if not (np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(
            f"{name} must be an integer label image, got dtype {arr.dtype}"
            + (" (a float mask: round it and cast to an integer type if its values are labels)"
               if np.issubdtype(arr.dtype, np.floating) else "")
        )
    if arr.ndim != 2:
        hint = (" (an RGB colour mask? use InstanceMask.from_rgb)"
                if arr.ndim == 3 and arr.shape[-1] in (3, 4) else "")
        raise ValueError(f"{name} must be 2-D, got shape {arr.shape}{hint}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} has negative labels (minimum {arr.min()}); labels must be >= 0")
    top = int(arr.max())
    if top > np.iinfo(np.int32).max:
        raise ValueError(f"{name} has label {top}, larger than the int32 maximum; relabel first")
    dtype = np.uint16 if top <= np.iinfo(np.uint16).max else np.int32
    out = np.array(arr, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out


class InstanceMask:
    """An immutable 2-D instance label image (0 = background, 1..N = instances).

    Parameters
    ----------
    labels : (M, N) array of int
        Label image. Any non-negative integer dtype; stored as uint16 (or int32 when a
        label exceeds 65535). Labels need not be sequential: see `relabel`.

    Examples
    --------
    >>> m = InstanceMask([[0, 1, 1], [0, 0, 2], [3, 0, 2]])
    >>> m.count, m.areas().tolist()
    (3, [2, 2, 1])
    >>> m.without_border().count
    0
    """

    __slots__ = ("_ids", "_labels", "_objects")

    def __init__(self, labels):
        object.__setattr__(self, "_labels", _as_label_array(labels))
        object.__setattr__(self, "_ids", None)
        object.__setattr__(self, "_objects", None)

    def __setattr__(self, name, value):
        raise AttributeError("InstanceMask is immutable; its methods return new masks")

    def __reduce__(self):
        # Pickle (multiprocessing, Dask) through the constructor: slots plus the immutable
        # __setattr__ would defeat pickle's default state restore.
        return (InstanceMask, (self._labels,))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_labels(cls, labels) -> InstanceMask:
        """Wrap an integer label image (same as ``InstanceMask(labels)``)."""
        return cls(labels)

    @classmethod
    def from_rgb(cls, rgb) -> InstanceMask:
        """Build from an RGB(A) mask in which every instance has its own colour.

        Black (0, 0, 0) is background; with RGBA, fully transparent pixels are background
        too. Labels are numbered 1..N in raster order of each colour's first pixel, so the
        result does not depend on which colours were used.
        """
        arr = np.asarray(rgb)
        if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
            raise ValueError(f"RGB mask must have shape (M, N, 3) or (M, N, 4), got {arr.shape}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"RGB mask must be an integer image, got dtype {arr.dtype}")
        if arr.dtype.itemsize > 1 and int(arr.max()) > 255:
            # 16-bit colour: keep full precision per channel.
            packed = (arr[..., 0].astype(np.uint64) << 32) | (arr[..., 1].astype(np.uint64) << 16) \
                | arr[..., 2].astype(np.uint64)
        else:  # one channel at a time: no (M, N, 3) uint32 temporary
            packed = arr[..., 0].astype(np.uint32) << 16
            packed |= arr[..., 1].astype(np.uint32) << 8
            packed |= arr[..., 2]
        if arr.shape[-1] == 4:
            packed[arr[..., 3] == 0] = 0
        if int(packed.max()) < 1 << 24:
            return cls(_first_appearance_small(packed))
        return cls(_first_appearance_labels(packed))

    @classmethod
    def from_binary(cls, binary, *, connectivity: int = 1) -> InstanceMask:
        """Split a binary (foreground/background) mask into connected components.

        Parameters
        ----------
        binary : (M, N) array
            Nonzero pixels are foreground.
        connectivity : {1, 2}
            1: pixels touching by an edge are connected (4-neighbourhood, which separates
            particles that only touch at a corner); 2: edges or corners (8-neighbourhood).
        """
        arr = np.asarray(binary)
        if arr.ndim != 2:
            raise ValueError(f"binary mask must be 2-D, got shape {arr.shape}")
        if connectivity not in (1, 2):
            raise ValueError(f"connectivity must be 1 or 2, got {connectivity!r}")
        from scipy import ndimage as ndi

        structure = ndi.generate_binary_structure(2, connectivity)
        labels, _ = ndi.label(arr != 0, structure=structure)
        return cls(labels)

    @classmethod
    def from_polygons(cls, polygons: Sequence, shape: tuple[int, int]) -> InstanceMask:
        """Rasterize polygons; polygon *i* becomes label *i + 1* (later ones on top).

        Parameters
        ----------
        polygons : sequence of (K, 2) arrays
            Vertices as ``(row, col)`` pairs, the convention of scikit-image and stardist.
        shape : (M, N)
            Output image shape.
        """
        from skimage.draw import polygon as draw_polygon

        shape = tuple(int(s) for s in shape)
        if len(shape) != 2 or min(shape) <= 0:
            raise ValueError(f"shape must be two positive integers, got {shape}")
        dtype = np.uint16 if len(polygons) <= np.iinfo(np.uint16).max else np.int32
        labels = np.zeros(shape, dtype)
        for i, poly in enumerate(polygons):
            poly = np.asarray(poly, dtype=float)
            if poly.ndim != 2 or poly.shape[1] != 2 or len(poly) < 3:
                raise ValueError(
                    f"polygon {i} must be a (K, 2) array with K >= 3, got {poly.shape}")
            rr, cc = draw_polygon(poly[:, 0], poly[:, 1], shape=shape)
            labels[rr, cc] = i + 1
        return cls(labels)

    # ------------------------------------------------------------------ basic facts
    @property
    def labels(self) -> np.ndarray:
        """The read-only label image, (M, N) uint16 or int32."""
        return self._labels

    @property
    def shape(self) -> tuple[int, int]:
        return self._labels.shape

    def _dense(self) -> bool:
        # Tables indexed by label value (bincount, look-up tables) stay small while the largest
        # label is not far above the pixel count; huge sparse labels (up to 2**31 - 1) would
        # need gigabytes, so they go through np.unique / searchsorted instead.
        return int(self._labels.max()) <= self._labels.size + 65536

    @property
    def ids(self) -> np.ndarray:
        """Sorted array of the labels present (background excluded)."""
        if self._ids is None:
            if self._dense():
                present = np.flatnonzero(np.bincount(self._labels.ravel()))
            else:
                present = np.unique(self._labels)
            object.__setattr__(self, "_ids", present[present > 0])
        return self._ids

    @property
    def count(self) -> int:
        """Number of instances."""
        return len(self.ids)

    def __len__(self) -> int:
        return self.count

    def __array__(self, dtype=None, copy=None):
        return self._labels if dtype is None else self._labels.astype(dtype)

    def __eq__(self, other) -> bool:
        if not isinstance(other, InstanceMask):
            return NotImplemented
        return self.shape == other.shape and bool(np.array_equal(self._labels, other._labels))

    __hash__ = None

    def __repr__(self) -> str:
        return f"InstanceMask(shape={self.shape}, count={self.count})"

    def areas(self) -> np.ndarray:
        """Pixel areas of the instances, in the order of `ids`."""
        if self._dense():
            return np.bincount(self._labels.ravel())[self.ids]
        values, counts = np.unique(self._labels, return_counts=True)
        return counts[values > 0]

    def _sequential(self) -> np.ndarray:
        """The labels renumbered 1..N in the order of `ids` (0 stays 0)."""
        if self._dense():
            lut = np.zeros(int(self._labels.max()) + 1, dtype=np.int32)
            lut[self.ids] = np.arange(1, self.count + 1)
            return lut[self._labels]
        return np.where(self._labels > 0, np.searchsorted(self.ids, self._labels) + 1, 0)

    def _find_objects(self):
        """Bounding slices of the instances, in the order of `ids`."""
        if self._objects is None:
            from scipy import ndimage as ndi

            object.__setattr__(self, "_objects", ndi.find_objects(self._sequential()))
        return self._objects

    def __iter__(self) -> Iterator[Instance]:
        objects = self._find_objects()
        for sl, label in zip(objects, self.ids):
            crop = self._labels[sl] == label
            yield Instance(
                label=int(label),
                bbox=(sl[0].start, sl[1].start, sl[0].stop, sl[1].stop),
                area=int(crop.sum()),
                mask=crop,
            )

    def same_instances(self, other: InstanceMask) -> bool:
        """True when both masks describe the same pixel sets, whatever the label values."""
        if not isinstance(other, InstanceMask):
            other = InstanceMask(other)
        if self.shape != other.shape or self.count != other.count:
            return False
        a, b = self._labels.ravel(), other._labels.ravel()
        if not np.array_equal(a == 0, b == 0):
            return False
        pairs = np.unique(np.stack([a, b]).astype(np.int64), axis=1)
        return pairs.shape[1] == self.count + (1 if (a == 0).any() else 0)

    # ------------------------------------------------------------------ transforms
    def relabel(self) -> InstanceMask:
        """Number the instances 1..N, keeping their order."""
        return InstanceMask(self._sequential())

    def keep(self, labels) -> InstanceMask:
        """Keep only the given labels (others become background); labels are unchanged."""
        labels = np.asarray(labels, dtype=np.int64).ravel()
        keep = np.isin(self._labels, labels[labels > 0])
        return InstanceMask(np.where(keep, self._labels, 0))

    def remove(self, labels) -> InstanceMask:
        """Drop the given labels (they become background); other labels are unchanged."""
        return self.keep(np.setdiff1d(self.ids, np.asarray(labels).ravel()))

    def border_ids(self) -> np.ndarray:
        """Labels of the instances that touch the image border."""
        lab = self._labels
        edge = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
        edge = np.unique(edge)
        return edge[edge > 0]

    def without_border(self) -> InstanceMask:
        """Drop the instances that touch the image border (cut particles)."""
        return self.remove(self.border_ids())

    def without_small(self, fraction: float = 0.6) -> InstanceMask:
        """Drop instances smaller than ``fraction`` x the mean instance area.

        0.6 is the UTILE-Gen paper's value for building its particle pool.
        """
        if not (np.isfinite(fraction) and fraction >= 0):
            raise ValueError(f"fraction must be a non-negative number, got {fraction!r}")
        if self.count == 0:
            return self
        areas = self.areas()
        return self.keep(self.ids[areas >= fraction * areas.mean()])

    # ------------------------------------------------------------------ export
    def to_rgb(self) -> np.ndarray:
        """(M, N, 3) uint8 image with a distinct colour per label and black background.

        Colours are a fixed bijection of the label value, so the same label always gets the
        same colour and `from_rgb` recovers the instances exactly.
        """
        if int(self._labels.max()) > _MAX_RGB_LABEL:
            raise ValueError(f"to_rgb supports labels up to {_MAX_RGB_LABEL}; relabel() first")
        code = (self._labels.astype(np.uint32) * _COLOUR_MULTIPLIER) & 0xFFFFFF
        code[self._labels == 0] = 0
        rgb = np.empty(self.shape + (3,), np.uint8)
        rgb[..., 0] = code >> 16
        rgb[..., 1] = (code >> 8) & 0xFF
        rgb[..., 2] = code & 0xFF
        return rgb

    def to_coco(self, *, image_id: int = 1, category_id: int = 1, first_id: int = 1,
                segmentation: str = "rle", file_name: str | None = None,
                category_name: str = "particle") -> dict:
        """COCO instance annotations for this mask.

        Parameters
        ----------
        image_id, category_id, first_id : int
            Ids written into the annotations (``first_id`` is the first annotation id).
        segmentation : {"rle", "polygon"}
            ``"rle"``: uncompressed run-length encoding in column-major order
            (``{"counts": [...], "size": [M, N]}``), exact for any shape.
            ``"polygon"``: outer contours as ``[x0, y0, x1, y1, ...]`` (holes are lost).

        Returns
        -------
        dict with ``images``, ``annotations`` and ``categories``, as in a COCO file.
        """
        if segmentation not in ("rle", "polygon"):
            raise ValueError(f"segmentation must be 'rle' or 'polygon', got {segmentation!r}")
        h, w = self.shape
        annotations = []
        for k, inst in enumerate(self):
            r0, c0, r1, c1 = inst.bbox
            if segmentation == "rle":
                seg = {"counts": _rle_counts(self._labels == inst.label), "size": [h, w]}
            else:
                seg = _polygons(inst)
            annotations.append({
                "id": first_id + k, "image_id": image_id, "category_id": category_id,
                "segmentation": seg, "area": inst.area,
                "bbox": [c0, r0, c1 - c0, r1 - r0], "iscrowd": 0,
            })
        image = {"id": image_id, "height": h, "width": w}
        if file_name is not None:
            image["file_name"] = file_name
        return {"images": [image], "annotations": annotations,
                "categories": [{"id": category_id, "name": category_name}]}


def _first_appearance_labels(values: np.ndarray) -> np.ndarray:
    """Map arbitrary non-negative codes to 1..N by raster order of first appearance (0 stays 0)."""
    flat = values.ravel()
    uniq, first, inverse = np.unique(flat, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(uniq), np.int64)
    rank[order] = np.arange(len(uniq))
    # Background keeps 0; others become 1..N in order of appearance, skipping background's slot.
    if uniq[0] == 0:
        bg_rank = rank[0]
        rank = np.where(rank > bg_rank, rank, rank + 1)
        rank[0] = 0
    else:
        rank = rank + 1
    return rank[inverse].reshape(values.shape)


def _first_appearance_small(codes: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """`_first_appearance_labels` for codes below 2**24 (8-bit colours) in bounded memory.

    The image is scanned in chunks of `chunk` pixels to find each code's first appearance
    (int64 temporaries only per chunk), then mapped through a 2**24 lookup table: no
    per-pixel int64 array, which for a large colour mask cost gigabytes.
    """
    flat = codes.ravel()
    seen = np.zeros(1 << 24, bool)
    seen[0] = True  # background stays 0
    order = []
    for start in range(0, flat.size, chunk):
        part = flat[start:start + chunk]
        uniq, first = np.unique(part, return_index=True)
        new = ~seen[uniq]
        if new.any():
            fresh = uniq[new][np.argsort(first[new], kind="stable")]
            order.append(fresh)
            seen[fresh] = True
    lut = np.zeros(1 << 24, np.uint32)
    if order:
        ordered = np.concatenate(order)
        lut[ordered] = np.arange(1, len(ordered) + 1, dtype=np.uint32)
    return lut[flat].reshape(codes.shape)


def _rle_counts(binary: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE counts: alternating run lengths, column-major, starting with 0s."""
    flat = binary.ravel(order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0] == 1:
        runs = [0] + runs
    return runs


def _polygons(inst: Instance) -> list[list[float]]:
    import cv2

    # COCO pixel (x, y) covers [x, x+1) x [y, y+1). Contours through the centres of the rim
    # pixels would drop half the rim (a 2x2 square became one pixel), so trace the outline
    # on a 4x upsampled crop: it then runs 1/8 pixel inside the pixel edges. Every component
    # is at least 4x4 there, so every contour has >= 4 vertices as COCO needs.
    k = 4
    padded = np.pad(inst.mask.astype(np.uint8), 1).repeat(k, axis=0).repeat(k, axis=1)
    contours, _ = cv2.findContours(padded, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    r0, c0 = inst.bbox[:2]
    return [((contour[:, 0, :] + 0.5) / k + [c0 - 1, r0 - 1]).ravel().tolist()  # (x, y)
            for contour in contours]
