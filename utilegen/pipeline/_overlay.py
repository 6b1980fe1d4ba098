"""Drawing: the micrograph with its instance outlines and ids, for the report and the app."""

from __future__ import annotations

import numpy as np

from .._image import to_display_uint8
from ..masks import InstanceMask


def overlay(image, mask: InstanceMask, *, measured=None, labels_text: bool = True,
            boxes=()) -> np.ndarray:
    """The micrograph in gray with instance outlines and ids drawn on it.

    Parameters
    ----------
    image : (M, N) array
        The micrograph (any dtype; contrast-stretched for display).
    mask : InstanceMask
        Its instances.
    measured : sequence of int, optional
        Labels that are in the particle table (outlined in colour and numbered); other
        instances (e.g. excluded for touching the border) are outlined in gray.
        Default: all.
    labels_text : bool
        Write each measured instance's label at its centroid.
    boxes : sequence of ((row0, col0, row1, col1), text)
        Regions to frame in cyan with a caption, e.g. the scale bar that calibrated the
        image and an instrument data bar (kept out of the particle table).

    Returns
    -------
    (M, N, 3) uint8 RGB array
    """
    import cv2
    from skimage.segmentation import find_boundaries

    gray = to_display_uint8(image)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    labels = np.asarray(mask.labels)
    if labels.shape != gray.shape:
        raise ValueError(f"image shape {gray.shape} does not match mask shape {labels.shape}")
    ids = mask.ids
    if len(ids) == 0:
        return _frame(rgb, boxes)
    measured_set = {int(i) for i in (ids if measured is None else measured)}
    thickness = max(1, round(max(labels.shape) / 700))
    edges = find_boundaries(labels, mode="inner")
    if thickness > 1:
        edges = cv2.dilate(edges.astype(np.uint8), np.ones((thickness, thickness), np.uint8)) > 0
    is_measured = np.isin(labels, np.fromiter(measured_set, dtype=np.int64,
                                              count=len(measured_set)))
    # Outlines of excluded instances are found on the dilated edges, by the nearest label.
    rgb[edges & is_measured] = (255, 40, 40)
    rgb[edges & (labels > 0) & ~is_measured] = (150, 150, 150)
    if labels_text:
        from scipy import ndimage as ndi

        keep = [i for i in ids if int(i) in measured_set]
        centres = ndi.center_of_mass(np.ones_like(labels, np.uint8), labels, keep)
        scale = max(0.3, max(labels.shape) / 1500)
        font = cv2.FONT_HERSHEY_SIMPLEX
        for label, (cy, cx) in zip(keep, centres):
            text = str(int(label))
            (w, h), _ = cv2.getTextSize(text, font, scale, 1)
            org = (round(cx - w / 2), round(cy + h / 2))
            cv2.putText(rgb, text, org, font, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
            cv2.putText(rgb, text, org, font, scale, (255, 230, 0), thickness, cv2.LINE_AA)
    return _frame(rgb, boxes)


def _frame(rgb: np.ndarray, boxes) -> np.ndarray:
    """`rgb` with each ``(box, caption)`` framed in cyan, the caption above the box."""
    import cv2

    h, w = rgb.shape[:2]
    thickness = max(1, round(max(h, w) / 700))
    scale = max(0.35, max(h, w) / 1800)
    for (r0, c0, r1, c1), text in boxes:
        cv2.rectangle(rgb, (int(c0), int(r0)), (int(c1) - 1, int(r1) - 1), (0, 220, 255),
                      thickness)
        if text:
            (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
            x = int(min(max(0, c0), max(0, w - tw)))
            y = int(r0) - 4 if r0 - 4 - th >= 0 else int(r1) + th + 4
            cv2.putText(rgb, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                        thickness + 2, cv2.LINE_AA)
            cv2.putText(rgb, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 220, 255),
                        thickness, cv2.LINE_AA)
    return rgb
