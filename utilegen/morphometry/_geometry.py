"""Per-particle outline geometry: sub-pixel outlines, convex hulls, Feret diameters.

Everything here works on one particle's boolean crop and returns plain floats in pixel
units; `_measure` calls it once per particle and scales to physical units.

Coordinates are ``x`` = column, ``y`` = row (downwards), and angles are reported
counter-clockwise as seen on screen, i.e. with ``-dy``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "centre_hull_min_width",
    "chord_angle",
    "default_outline",
    "outer_contours",
    "polygon_area",
    "row_extremes",
]

_SMOOTH_PERIMETER = (1 / 3, 1 / 3, 1 / 3)  # one pass of a 3-point moving average
_SMOOTH_HULL = (0.2, 0.6, 0.2)             # lighter: keeps sharp corners for Feret/hull


def row_extremes(crop: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of `crop` that have pixels, with their first and last pixel column.

    The convex hull of a pixel set is the hull of these 2 x rows points.
    """
    rows = np.flatnonzero(crop.any(axis=1))
    sub = crop[rows]
    first = sub.argmax(axis=1)
    last = crop.shape[1] - 1 - sub[:, ::-1].argmax(axis=1)
    return rows, first, last


def polygon_area(x: np.ndarray, y: np.ndarray) -> float:
    """Signed shoelace area (positive for the orientation of `outer_contours`)."""
    return 0.5 * float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1])
                       + x[-1] * y[0] - x[0] * y[-1])


def outer_contours(crop: np.ndarray) -> list[np.ndarray]:
    """Outer sub-pixel outlines of a particle, each an open (K, 2) array of (x, y).

    Marching squares at level 0.5 on the zero-padded crop: vertices lie halfway between an
    inside and an outside pixel centre. Diagonal neighbours are joined (8-connectivity, as
    in ImageJ). Hole outlines are dropped (they wind the other way).
    """
    from skimage.measure import find_contours

    padded = np.zeros((crop.shape[0] + 2, crop.shape[1] + 2), np.float32)
    padded[1:-1, 1:-1] = crop
    out = []
    for c in find_contours(padded, 0.5, fully_connected="high"):
        if len(c) > 1 and c[0, 0] == c[-1, 0] and c[0, 1] == c[-1, 1]:
            c = c[:-1]
        xy = c[:, ::-1] - 1.0
        if len(xy) >= 3 and polygon_area(xy[:, 0], xy[:, 1]) > 0:
            out.append(xy)
    return out


def _smooth(xy: np.ndarray, weights) -> np.ndarray:
    """Weighted 3-point moving average along a closed outline."""
    a, b, c = weights
    out = b * xy
    out[1:] += a * xy[:-1]
    out[0] += a * xy[-1]
    out[:-1] += c * xy[1:]
    out[-1] += c * xy[0]
    return out


def _closed_length(xy: np.ndarray) -> float:
    d = np.diff(xy, axis=0, append=xy[:1])
    return float(np.sqrt(np.einsum("ij,ij->i", d, d)).sum())


def chord_angle(x1, y1, x2, y2) -> float:
    """ImageJ's FeretAngle of the chord between two points: degrees in [0, 180)."""
    if x1 > x2:
        x1, y1, x2, y2 = x2, y2, x1, y1
    angle = math.degrees(math.atan2(y1 - y2, x2 - x1))
    if angle < 0:
        angle += 180.0
    return 0.0 if angle >= 180.0 else angle


def _hull(points: np.ndarray) -> np.ndarray:
    """Convex hull vertices (no collinear points) of (K, 2) points, as float64."""
    import cv2

    if len(points) < 3:
        return np.asarray(points, dtype=np.float64)
    pts = np.ascontiguousarray(points, dtype=np.float32)
    return cv2.convexHull(pts)[:, 0, :].astype(np.float64)


def _diameter(hull: np.ndarray) -> tuple[float, int, int]:
    """Largest vertex distance of a hull and the first pair (i < j) that reaches it."""
    n = len(hull)
    if n < 2:
        return 0.0, 0, 0
    dx = hull[:, 0, None] - hull[None, :, 0]
    dy = hull[:, 1, None] - hull[None, :, 1]
    d2 = dx * dx + dy * dy
    k = int(np.argmax(d2))
    return math.sqrt(float(d2.flat[k])), k // n, k % n


def default_outline(crop: np.ndarray) -> tuple[float, float, float, float]:
    """Perimeter, convex area, Feret diameter and Feret angle of a particle's sub-pixel outline.

    Returns
    -------
    perimeter, area_convex, feret_max, feret_angle : float
        In pixels (pixel^2, degrees).
    """
    contours = outer_contours(crop)
    if not contours:  # cannot happen for a non-empty crop; keep a safe fallback
        return 0.0, 0.0, 0.0, 0.0
    perimeter = sum(_closed_length(_smooth(c, _SMOOTH_PERIMETER)) for c in contours)
    pts = np.concatenate([_smooth(c, _SMOOTH_HULL) for c in contours])
    hull = _hull(pts)
    area_convex = abs(polygon_area(hull[:, 0], hull[:, 1])) if len(hull) >= 3 else 0.0
    feret, i, j = _diameter(hull)
    angle = chord_angle(hull[i, 0], hull[i, 1], hull[j, 0], hull[j, 1]) if feret > 0 else 0.0
    return perimeter, area_convex, feret, angle


def centre_hull_min_width(rows: np.ndarray, first: np.ndarray, last: np.ndarray) -> float:
    """Minimum caliper width of the shape sampled by the pixel centres, in pixels.

    Rotating calipers over the edges of the hull of the pixel centres; each width is
    increased by the spacing of the lattice lines parallel to the edge, ``1/|e|`` for the
    primitive integer edge vector ``e`` -- on average the sampled edge lies half a spacing
    beyond the outermost centres on each side (1 for axis-aligned edges, almost 0 for
    edges at irregular angles, whose lattice lines are dense).
    """
    k = len(rows)
    pts = np.empty((2 * k, 2), np.int64)
    pts[:k, 0], pts[k:, 0] = first, last
    pts[:k, 1] = pts[k:, 1] = rows
    if k == 1 and first[0] == last[0]:
        return 1.0
    import cv2

    hull = cv2.convexHull(pts.astype(np.int32))[:, 0, :].astype(np.int64)
    if len(hull) >= 3 and polygon_area(hull[:, 0], hull[:, 1]) == 0:
        hull = hull[[0, -1]]
    if len(hull) < 3:  # all centres on one line
        ends = pts[np.lexsort((pts[:, 1], pts[:, 0]))[[0, -1]]]
        e = ends[1] - ends[0]
        g = math.gcd(int(e[0]), int(e[1]))
        return g / math.hypot(int(e[0]), int(e[1]))
    e = np.diff(hull, axis=0, append=hull[:1])
    length = np.hypot(e[:, 0], e[:, 1])
    keep = length > 0
    e, length, start = e[keep], length[keep], hull[keep]
    g = np.gcd(e[:, 0], e[:, 1])
    normal = np.column_stack([-e[:, 1], e[:, 0]]) / length[:, None]
    proj = (hull @ normal.T) - (start * normal).sum(axis=1)[None, :]
    width = np.abs(proj).max(axis=0) + g / length
    return float(width.min())
