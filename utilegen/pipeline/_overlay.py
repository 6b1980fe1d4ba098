"""Drawing: the micrograph with its instance outlines and ids, for the report and the app."""

from __future__ import annotations

import numpy as np

from .._image import to_display_uint8
from ..masks import InstanceMask


def overlay(image, mask: InstanceMask, *, measured=None, labels_text: bool = True) -> np.ndarray:
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
        return rgb
    measured_set = {int(i) for i in (ids if measured is None else measured)}
    thickness = max(1, round(max(labels.shape) / 700))
    edges = find_boundaries(labels, mode="inner")
    if thickness > 1:
        edges = cv2.dilate(edges.astype(np.uint8), np.ones((thickness, thickness), np.uint8)) > 0
    is_measured = np.isin(labels, np.fromiter(measured_set, dtype=np.int64, count=len(measured_set)))
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
    return rgb
