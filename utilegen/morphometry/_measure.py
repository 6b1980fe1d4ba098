"""`measure`: one row of size and shape per particle of an instance mask."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from ..masks import InstanceMask
from ._columns import COLUMNS, column_unit
from ._geometry import centre_hull_min_width, default_outline, polygon_area, row_extremes
from ._imagej import corner_hull, ellipse_fit, feret_values, traced_perimeter

__all__ = ["CONVENTIONS", "measure", "measure_many"]

CONVENTIONS = ("default", "imagej")

_SHAPE_COLUMNS = [c for c in COLUMNS if c not in ("image_id", "intensity_mean", "intensity_std")]
_INTENSITY_COLUMNS = ["intensity_mean", "intensity_std"]


def _load_mask(mask) -> tuple[InstanceMask, Path | None]:
    if isinstance(mask, InstanceMask):
        return mask, None
    if isinstance(mask, (str, Path)):
        from ..io import read_mask

        return read_mask(mask), Path(mask)
    arr = np.asarray(mask)
    if arr.dtype == bool:
        raise ValueError("mask is a boolean array; measure needs instance labels: use "
                         "InstanceMask.from_binary(mask) to split it into connected particles")
    try:
        return InstanceMask(arr), None
    except ValueError as exc:
        raise ValueError(f"mask: {exc}") from None


def _load_image(image, shape) -> tuple[np.ndarray | None, Path | None]:
    if image is None:
        return None, None
    path = None
    if isinstance(image, (str, Path)):
        from ..io import read_image

        path = Path(image)
        image = read_image(path)
    from ..io import as_gray

    arr = as_gray(image)
    if arr.shape != tuple(shape):
        raise ValueError(f"image shape {arr.shape} does not match mask shape {tuple(shape)}")
    return arr, path


def _resolve_calibration(pixel_size, unit, paths) -> tuple[float, str]:
    if pixel_size is not None:
        from ..io import check_pixel_size

        size = check_pixel_size(pixel_size)
        if not isinstance(unit, str) or not unit:
            raise ValueError(f"unit must be a non-empty string, got {unit!r}")
        return size, unit
    from ..calibration import read_calibration

    for path in paths:  # the files' own metadata (utilegen.io.read_calibration's reader)
        if path is not None:
            found = read_calibration(path, scale_bar=False)
            if found.pixel_size is not None:
                return float(found.pixel_size), found.unit
    return 1.0, "px"


def _empty_table(with_intensity: bool):
    import pandas as pd

    cols = _SHAPE_COLUMNS + (_INTENSITY_COLUMNS if with_intensity else [])
    dtypes = {c: ("int64" if c == "label" else "bool" if c == "touches_border" else "float64")
              for c in cols}
    return pd.DataFrame({c: pd.Series(dtype=dtypes[c]) for c in cols})


def measure(mask, image=None, *, pixel_size: float | None = None, unit: str = "nm",
            exclude_border: bool = False, convention: str = "default"):
    """Size and shape of every particle of an instance mask, one row per instance.

    Touching particles are never merged: each label is measured on its own.

    Parameters
    ----------
    mask : InstanceMask, (M, N) integer ndarray, or path to a mask file
        Instance labels (0 = background).
    image : (M, N) ndarray or path, optional
        The micrograph, for ``intensity_mean``/``intensity_std``. A path also provides
        the pixel size from its metadata when `pixel_size` is not given.
    pixel_size : float, optional
        Size of one pixel in `unit`. When None, it is read from the image's (or the mask
        file's) metadata (`utilegen.io.read_calibration` without the scale bar: ImageJ,
        OME, Zeiss, FEI TIFFs; DM3/DM4, EMD, SER, MRC); without it, results are in
        pixels (unit "px").
    unit : str
        Unit of `pixel_size` (e.g. "nm", "µm").
    exclude_border : bool
        Drop particles that touch the image border (cut by the field of view).
    convention : {"default", "imagej"}
        "default" measures the continuous shape the pixels sample (sub-pixel outline):
        a digital disk has circularity close to 1. "imagej" reproduces Fiji's Analyze
        Particles (Area, Perim., Circ., AR, Round, Solidity, Feret, MinFeret, FeretAngle,
        Major, Minor, Angle), to continue a series measured in Fiji.

    Returns
    -------
    pandas.DataFrame
        Columns as documented in `utilegen.morphometry.COLUMNS` (see
        `describe_columns()`); ``df.attrs`` holds ``pixel_size``, ``unit``, ``units``
        (per column) and ``convention``.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:100, :100]
    >>> labels = ((yy - 50.3) ** 2 + (xx - 49.8) ** 2 <= 30 ** 2).astype(np.uint16)
    >>> row = measure(labels).iloc[0]
    >>> round(row.equivalent_diameter), row.circularity > 0.97
    (60, True)
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    inst, mask_path = _load_mask(mask)
    img, image_path = _load_image(image, inst.shape)
    size, unit = _resolve_calibration(pixel_size, unit, [image_path, mask_path])
    table = _measure_labels(inst.labels, img, convention)
    if exclude_border:
        table = table[~table["touches_border"]].reset_index(drop=True)
    _calibrate(table, size)
    table.attrs.update(pixel_size=size, unit=unit, convention=convention,
                       units={c: column_unit(c, unit) for c in table.columns})
    return table


def _calibrate(table, size: float) -> None:
    if size == 1.0:
        return
    for col in table.columns:
        dim = COLUMNS.get(col, ("", ""))[0]
        if dim == "length":
            table[col] = table[col] * size
        elif dim == "area":
            table[col] = table[col] * (size * size)


def _measure_labels(labels: np.ndarray, image: np.ndarray | None, convention: str):
    import pandas as pd

    flat = labels.ravel()
    fg = np.flatnonzero(flat)
    if fg.size == 0:
        return _empty_table(image is not None)
    lab = flat[fg].astype(np.intp)
    nbins = int(lab.max()) + 1
    count = np.bincount(lab, minlength=nbins)
    ids = np.flatnonzero(count)
    ids = ids[ids > 0]
    n = count[ids].astype(np.float64)
    width = labels.shape[1]
    objects = ndi.find_objects(labels)
    # Coordinates relative to each particle's bounding box (as ImageJ): the sums are exact
    # integers, and small.
    r0 = np.zeros(nbins, np.int64)
    c0 = np.zeros(nbins, np.int64)
    for label in ids:
        sl = objects[label - 1]
        r0[label], c0[label] = sl[0].start, sl[1].start
    rows_all, cols_all = np.divmod(fg, width)
    r = (rows_all - r0[lab]).astype(np.float64)
    c = (cols_all - c0[lab]).astype(np.float64)
    sr = np.bincount(lab, r, nbins)[ids]
    sc = np.bincount(lab, c, nbins)[ids]
    srr = np.bincount(lab, r * r, nbins)[ids]
    scc = np.bincount(lab, c * c, nbins)[ids]
    src = np.bincount(lab, r * c, nbins)[ids]
    mean_r, mean_c = sr / n, sc / n
    mu_rr = srr / n - mean_r ** 2
    mu_cc = scc / n - mean_c ** 2
    mu_rc = src / n - mean_r * mean_c
    centroid_y = mean_r + r0[ids]
    centroid_x = mean_c + c0[ids]

    # Ellipse of the same second moments; pixels are unit squares (+1/12 variance).
    vxx, vyy = mu_cc + 1 / 12, mu_rr + 1 / 12
    vxy_up = -mu_rc  # y upwards, so that angles are counter-clockwise on screen
    half_diff = np.sqrt(((vxx - vyy) / 2) ** 2 + vxy_up ** 2)
    lam1 = (vxx + vyy) / 2 + half_diff
    lam2 = np.maximum((vxx + vyy) / 2 - half_diff, 0)
    major = 4 * np.sqrt(lam1)
    minor = 4 * np.sqrt(lam2)
    orientation = np.degrees(0.5 * np.arctan2(2 * vxy_up, vxx - vyy)) % 180.0

    k = len(ids)
    bw = np.empty(k)
    bh = np.empty(k)
    perimeter = np.empty(k)
    area_convex = np.empty(k)
    feret_max = np.empty(k)
    feret_min = np.empty(k)
    feret_angle = np.empty(k)
    for i, label in enumerate(ids):
        sl = objects[label - 1]
        crop = labels[sl] == label
        bh[i] = sl[0].stop - sl[0].start
        bw[i] = sl[1].stop - sl[1].start
        if convention == "default":
            p, ac, fmax, fang = default_outline(crop)
            fmin = min(centre_hull_min_width(*row_extremes(crop)), fmax)
        else:
            p = traced_perimeter(crop)
            hull = corner_hull(crop)
            ac = abs(polygon_area(hull[:, 0].astype(float), hull[:, 1].astype(float)))
            fmax, fang, fmin = feret_values(hull)
            mj, mn, ang = ellipse_fit(n[i], sc[i], sr[i], scc[i], srr[i], src[i])
            major[i], minor[i], orientation[i] = mj, mn, ang
        perimeter[i], area_convex[i] = p, ac
        feret_max[i], feret_min[i], feret_angle[i] = fmax, fmin, fang

    area = n
    with np.errstate(divide="ignore", invalid="ignore"):
        circularity = np.where(perimeter > 0, 4 * np.pi * area / perimeter ** 2, 0.0)
        aspect_ratio = major / minor
        roundness = 4 * area / (np.pi * major ** 2)
        solidity = np.where(area_convex > 0, area / area_convex, 1.0)
    circularity = np.minimum(circularity, 1.0)
    solidity = np.minimum(solidity, 1.0)

    border = np.zeros(nbins, dtype=bool)
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    border[edge] = True
    border[0] = False

    table = pd.DataFrame({
        "label": ids.astype(np.int64),
        "centroid_x": centroid_x,
        "centroid_y": centroid_y,
        "area": area,
        "equivalent_diameter": np.sqrt(4 * area / np.pi),
        "bbox_width": bw,
        "bbox_height": bh,
        "perimeter": perimeter,
        "area_convex": area_convex,
        "solidity": solidity,
        "extent": area / (bw * bh),
        "orientation": orientation,
        "axis_major_length": major,
        "axis_minor_length": minor,
        "feret_diameter_max": feret_max,
        "feret_diameter_min": feret_min,
        "feret_angle": feret_angle,
        "aspect_ratio": aspect_ratio,
        "aspect_ratio_bbox": bw / bh,
        "circularity": circularity,
        "roundness": roundness,
        "touches_border": border[ids],
    })
    if image is not None:
        values = image.ravel()[fg].astype(np.float64)
        s1 = np.bincount(lab, values, nbins)[ids]
        mean = s1 / n
        dev = values - (np.bincount(lab, values, nbins) / np.maximum(count, 1))[lab]
        var = np.bincount(lab, dev * dev, nbins)[ids] / n
        table["intensity_mean"] = mean
        table["intensity_std"] = np.sqrt(var)
    return table


def _stem(item, index: int) -> str:
    if isinstance(item, (str, Path)):
        return Path(item).stem
    return str(index)


def measure_many(masks, images=None, *, pixel_size: float | None = None, unit: str = "nm",
                 exclude_border: bool = False, convention: str = "default",
                 image_ids: Iterable[str] | None = None):
    """Measure many masks into one table with an ``image_id`` column.

    Parameters
    ----------
    masks : folder path, or sequence of masks (InstanceMask, arrays or paths)
        A folder is read in sorted order (files with image suffixes).
    images : folder path, sequence, or None
        Matching images: a folder is matched to the masks by file stem; a sequence must
        have the same length as `masks`.
    image_ids : sequence of str, optional
        Ids for the table; default: file stems for paths, else positions "0", "1", ...
    Other parameters are as in `measure` (the same pixel size for all when given;
    otherwise each image's own TIFF calibration).
    """
    import pandas as pd

    from ..io import list_images

    if isinstance(masks, (str, Path)):
        folder = Path(masks)
        if not folder.is_dir():
            raise ValueError(f"masks must be a folder or a sequence of masks; {folder} is not "
                             "a folder (use measure() for a single mask)")
        masks = list_images(folder)
    masks = list(masks)
    if images is None:
        images = [None] * len(masks)
    elif isinstance(images, (str, Path)):
        folder = Path(images)
        if not folder.is_dir():
            raise ValueError(f"images must be a folder or a sequence; {folder} is not a folder")
        by_stem = {p.stem: p for p in list_images(folder)}
        matched = []
        for i, m in enumerate(masks):
            stem = _stem(m, i)
            if stem not in by_stem:
                raise ValueError(f"no image named {stem}.* in {folder} for mask {m}")
            matched.append(by_stem[stem])
        images = matched
    else:
        images = list(images)
        if len(images) != len(masks):
            raise ValueError(f"images has {len(images)} items but masks has {len(masks)}")
    ids = [_stem(m, i) for i, m in enumerate(masks)] if image_ids is None else list(image_ids)
    if len(ids) != len(masks):
        raise ValueError(f"image_ids has {len(ids)} items but masks has {len(masks)}")
    tables = []
    units = set()
    for image_id, m, img in zip(ids, masks, images):
        t = measure(m, img, pixel_size=pixel_size, unit=unit, exclude_border=exclude_border,
                    convention=convention)
        units.add(t.attrs["unit"])
        t.insert(0, "image_id", image_id)
        tables.append(t)
    if len(units) > 1:
        raise ValueError(f"the images have different units {sorted(units)}; pass pixel_size "
                         "and unit to measure them on one scale")
    if tables:
        attrs = dict(tables[0].attrs)
        table = pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]
    else:
        table = _empty_table(False)
        table.insert(0, "image_id", pd.Series(dtype=object))
        attrs = {"pixel_size": pixel_size or 1.0, "unit": unit if pixel_size else "px",
                 "convention": convention}
    table = table.copy()
    attrs["pixel_size"] = None if len({t.attrs["pixel_size"] for t in tables}) > 1 \
        else attrs["pixel_size"]
    attrs["units"] = {c: column_unit(c, attrs["unit"]) for c in table.columns}
    table.attrs.update(attrs)
    return table
