"""ImageJ's (Fiji's) Analyze Particles definitions, re-implemented for one particle.

Followed from ImageJ 1.54 sources (public domain): `ij.gui.Wand` (8-connected outline
tracing in legacy threshold mode, started from the particle's first pixel in raster
order, as `ParticleAnalyzer` does), `PolygonRoi.getTracedPerimeter`,
`FloatPolygon.getConvexHull` (gift wrap, starting at the top-left vertex),
`Roi.getFeretValues` (Feret over the hull of pixel corners, exact rotating-calipers
MinFeret) and `EllipseFitter` (Major, Minor, Angle).
"""

from __future__ import annotations

import math

import numpy as np

from ._geometry import chord_angle, polygon_area, row_extremes

__all__ = ["corner_hull", "ellipse_fit", "feret_values", "traced_perimeter"]

_SQRT2 = math.sqrt(2.0)


def _trace(crop: np.ndarray) -> tuple[list[int], list[int]]:
    """Vertices of ImageJ's Wand outline (legacy mode on a thresholded particle).

    Vertex (x, y) is the pixel corner between pixels (x-1, y-1) and (x, y).
    """
    h, w = crop.shape
    inside_img = np.zeros((h + 2, w + 2), dtype=bool)
    inside_img[1:-1, 1:-1] = crop

    def inside(x, y):  # pixel (x, y) of the crop; outside the crop is background
        return inside_img[y + 1, x + 1]

    y0 = 0
    x0 = int(np.argmax(crop[0]))
    x = x0
    while x < w and inside(x, y0):  # Wand: from an inside pixel, walk right to the border
        x += 1
    start_x, start_y = x, y0 + 1  # pixel (x, y0) is outside: start going down
    direction = 3
    xs: list[int] = []
    ys: list[int] = []
    px, py = start_x, start_y
    # Pixel looked at from vertex (x, y) in each direction: 0:(x,y) 1:(x,y-1) 2:(x-1,y-1) 3:(x-1,y)
    offsets = ((0, 0), (0, -1), (-1, -1), (-1, 0))
    while True:
        new = direction + 1
        while True:  # 8-connected: turn left as much as possible
            dx, dy = offsets[new & 3]
            if inside(px + dx, py + dy):
                break
            new -= 1
            if new < direction:
                break
        if new != direction:
            xs.append(px)
            ys.append(py)
        d = new & 3
        if d == 0:
            px += 1
        elif d == 1:
            py -= 1
        elif d == 2:
            px -= 1
        else:
            py += 1
        direction = new
        if px == start_x and py == start_y and (direction & 3) == 3:
            break
    if xs[0] != px:
        xs.append(px)
        ys.append(py)
    return xs, ys


def traced_perimeter(crop: np.ndarray) -> float:
    """ImageJ's perimeter of a traced particle ('Perim.'), in pixels."""
    xs, ys = _trace(crop)
    n = len(xs)
    if n < 4:
        return 0.0
    sumdx = sumdy = corners = 0
    dx1 = xs[0] - xs[n - 1]
    dy1 = ys[0] - ys[n - 1]
    side1 = abs(dx1) + abs(dy1)
    corner = False
    for i in range(n):
        nxt = i + 1 if i + 1 < n else 0
        dx2 = xs[nxt] - xs[i]
        dy2 = ys[nxt] - ys[i]
        sumdx += abs(dx1)
        sumdy += abs(dy1)
        side2 = abs(dx2) + abs(dy2)
        if side1 > 1 or not corner:
            corner = True
            corners += 1
        else:
            corner = False
        dx1, dy1, side1 = dx2, dy2, side2
    return sumdx + sumdy - corners * (2.0 - _SQRT2)


def corner_hull(crop: np.ndarray) -> np.ndarray:
    """Convex hull of the particle's pixel corners in ImageJ's vertex order, (K, 2) int (x, y).

    Counter-clockwise in ImageJ's sense (negative shoelace area in x-right/y-down
    coordinates), starting at the vertex with the smallest y, then smallest x; no
    collinear vertices.
    """
    import cv2

    rows, first, last = row_extremes(crop)
    x = np.concatenate([first, first, last + 1, last + 1])
    y = np.concatenate([rows, rows + 1, rows, rows + 1])
    pts = np.column_stack([x, y]).astype(np.int32)
    hull = cv2.convexHull(pts, clockwise=True)[:, 0, :].astype(np.int64)
    if polygon_area(hull[:, 0].astype(float), hull[:, 1].astype(float)) > 0:
        hull = hull[::-1]
    start = np.lexsort((hull[:, 0], hull[:, 1]))[0]
    return np.roll(hull, -start, axis=0)


def feret_values(hull: np.ndarray) -> tuple[float, float, float]:
    """ImageJ's Feret, FeretAngle and MinFeret of a hull from `corner_hull` (pixels, degrees)."""
    n = len(hull)
    d = hull[:, None, :] - hull[None, :, :]
    d2 = np.triu((d * d).sum(axis=2), 1)
    k = int(np.argmax(d2))  # first (i, j) in row-major order, as ImageJ's strict '>' loop
    i, j = k // n, k % n
    feret = math.sqrt(float(d2.flat[k]))
    angle = chord_angle(float(hull[i, 0]), float(hull[i, 1]), float(hull[j, 0]), float(hull[j, 1]))
    prev = np.roll(hull, 1, axis=0).astype(np.float64)
    cur = hull.astype(np.float64)
    xnorm = cur[:, 1] - prev[:, 1]
    ynorm = prev[:, 0] - cur[:, 0]
    norm = np.hypot(xnorm, ynorm)
    xnorm, ynorm = xnorm / norm, ynorm / norm
    dist = (cur[:, 0][None, :] - cur[:, 0][:, None]) * xnorm[:, None] \
        + (cur[:, 1][None, :] - cur[:, 1][:, None]) * ynorm[:, None]
    min_feret = float(np.maximum(dist, 0).max(axis=1).min())
    return feret, angle, min_feret


def ellipse_fit(n: float, xsum: float, ysum: float, x2sum: float, y2sum: float,
                xysum: float) -> tuple[float, float, float]:
    """ImageJ's EllipseFitter: (major, minor, angle in degrees) from pixel-centre sums.

    The sums run over the particle's pixels with x = column and y = row relative to its
    bounding box, as in ImageJ; they are exact integers, and the arithmetic follows
    ImageJ's operation by operation so that ties (``u11 == 0``) resolve the same way.
    """
    half_pi = 1.5707963267949
    x2sum = x2sum + 0.08333333 * n  # the pixels' own extent, with ImageJ's constant
    y2sum = y2sum + 0.08333333 * n
    x1 = xsum / n
    y1 = ysum / n
    u20 = x2sum / n - x1 * x1
    u02 = y2sum / n - y1 * y1
    u11 = xysum / n - x1 * y1
    m4 = 4.0 * abs(u02 * u20 - u11 * u11)
    m4 = max(m4, 0.000001)
    a11 = u02 / m4
    a12 = u11 / m4
    a22 = u20 / m4
    tmp = a11 - a22
    if tmp == 0.0:
        tmp = 0.000001
    theta = 0.5 * math.atan(2.0 * a12 / tmp)
    if theta < 0.0:
        theta += half_pi
    if a12 > 0.0:
        theta += half_pi
    elif a12 == 0.0:
        if a22 > a11:
            theta = 0.0
            a11, a22 = a22, a11
        elif a11 != a22:
            theta = half_pi
    tmp = math.sin(theta)
    if tmp == 0.0:
        tmp = 0.000001
    z = a12 * math.cos(theta) / tmp
    major = math.sqrt(1.0 / abs(a22 + z))
    minor = math.sqrt(1.0 / abs(a11 - z))
    scale = math.sqrt(n / (math.pi * major * minor))  # equal areas
    major, minor = major * scale * 2.0, minor * scale * 2.0
    angle = 180.0 * theta / math.pi
    if angle == 180.0:
        angle = 0.0
    if major < minor:
        major, minor = minor, major
    return major, minor, angle
