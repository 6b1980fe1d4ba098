"""`Compositor`: where particles go on a background (count, overlap or not, scale,
rotation, flips) and the exact instance mask of the result."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from .._config import known_fields
from ._backgrounds import BackgroundPool
from ._particles import Particle, ParticlePool


def _pair(value, name: str, *, integer: bool = False) -> tuple:
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair, got {value!r}") from None
    try:
        finite = bool(np.isfinite(lo) and np.isfinite(hi))
    except TypeError:
        finite = False
    if not finite:
        raise ValueError(f"{name} must be a (low, high) pair of finite numbers, got {value!r}")
    if integer and not (float(lo).is_integer() and float(hi).is_integer()):
        raise ValueError(f"{name} must be integers, got {value!r}")
    if lo > hi:
        raise ValueError(f"{name}: low {lo} is greater than high {hi}")
    return (int(lo), int(hi)) if integer else (float(lo), float(hi))


@dataclass(frozen=True)
class Compositor:
    """How particles are placed on a background (the paper's Table 1 parameters).

    Parameters
    ----------
    particles_per_image : (low, high)
        Number of particles requested per image, drawn uniformly (both ends included).
    overlap : bool
        True: particles may overlap, later ones on top. False: particles never overlap or
        touch; the check uses their real footprints. If the requested number does not fit,
        those that fit are placed and the shortfall is recorded (``placed`` < ``requested``).
    max_overlap : float in [0, 1]
        With overlap, the largest fraction of any particle's area that later particles may
        cover (1 allows full occlusion; fully hidden particles are then left out).
    scale : (low, high)
        Particle scale factor, drawn uniformly.
    rotation : (low, high)
        Rotation angle in degrees, drawn uniformly.
    flip : bool
        Random horizontal and vertical flips of particles and backgrounds.
    image_size : int or (height, width)
        Output size in pixels.
    gap : int
        Without overlap, the minimum number of background pixels between particles.
    same_source : bool
        Take all particles of an image from the background's source image (keeps contrast
        and magnification consistent); False mixes sources, as the paper does.
    attempts : int
        Placement attempts per particle before it is skipped.
    source_density : sequence of float, optional
        Particles per megapixel of each source image (index = the particles' and
        backgrounds' ``source``); needs `same_source`. The number of particles of an image
        is then its source's density times the canvas area times a factor drawn from
        `density_factor`, clipped to `particles_per_image`: a pool whose images differ in
        magnification gives each synthetic image the crowding of its own source, where one
        count for all would crowd the large particles and thin out the small ones.
    density_factor : (low, high)
        With `source_density`, the factor on the source's density, drawn uniformly.
    packed : bool
        Place each particle where it touches the particles already placed, as in a dense
        powder or a close-packed layer, rather than anywhere it fits: of up to
        `PACK_CANDIDATES` positions that fit, the one with the most neighbouring particle
        pixels around its outline (less the pixels it would cover) wins. Random placement
        leaves ground showing between particles where a dense micrograph has none.
    """

    particles_per_image: tuple[int, int] = (10, 30)
    overlap: bool = True
    max_overlap: float = 0.5
    scale: tuple[float, float] = (0.3, 2.0)
    rotation: tuple[float, float] = (0.0, 360.0)
    flip: bool = True
    image_size: int | tuple[int, int] = 1024
    gap: int = 1
    same_source: bool = False
    attempts: int = 50
    source_density: tuple[float, ...] | None = None
    density_factor: tuple[float, float] = (0.7, 1.3)
    packed: bool = False

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)
        lo, hi = _pair(self.particles_per_image, "particles_per_image", integer=True)
        if lo < 0:
            raise ValueError(f"particles_per_image must be >= 0, got {self.particles_per_image}")
        set_("particles_per_image", (lo, hi))
        lo, hi = _pair(self.scale, "scale")
        if lo <= 0:
            raise ValueError(f"scale must be positive, got {self.scale}")
        set_("scale", (lo, hi))
        set_("rotation", _pair(self.rotation, "rotation"))
        if not 0 <= self.max_overlap <= 1:
            raise ValueError(f"max_overlap must be in [0, 1], got {self.max_overlap}")
        size = self.image_size
        size = (size, size) if np.isscalar(size) else tuple(size)
        if len(size) != 2 or not all(float(s).is_integer() and s >= 8 for s in size):
            raise ValueError(
                f"image_size must be an int >= 8 or (height, width), got {self.image_size!r}")
        set_("image_size", (int(size[0]), int(size[1])))
        if self.gap < 0 or self.attempts < 1:
            raise ValueError("gap must be >= 0 and attempts >= 1")
        lo, hi = _pair(self.density_factor, "density_factor")
        if lo < 0:
            raise ValueError(f"density_factor must be >= 0, got {self.density_factor}")
        set_("density_factor", (lo, hi))
        if self.source_density is not None:
            try:
                density = tuple(float(d) for d in self.source_density)
            except (TypeError, ValueError):
                density = ()
            if not density or not all(np.isfinite(d) and d >= 0 for d in density):
                raise ValueError("source_density must be a non-empty sequence of finite "
                                 f"densities >= 0 (particles per megapixel), got "
                                 f"{self.source_density!r}")
            if not self.same_source:
                raise ValueError("source_density needs same_source=True (the density is "
                                 "that of the background's source image)")
            set_("source_density", density)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> Compositor:
        d = known_fields(cls, d)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    # ------------------------------------------------------------------ composition
    def compose(self, particles: ParticlePool, backgrounds: BackgroundPool, rng=None):
        """Compose one image.

        Returns
        -------
        image : (H, W) float32 in [0, 1]
        labels : (H, W) uint16 or int32, sequential 1..N in pasting order
        record : dict
            Background choice and, per requested particle, its pool index, scale, angle,
            flips, position (top-left of its transformed box), and final label (0 if it was
            not placed or ended fully hidden).
        """
        if len(particles) == 0:
            raise ValueError("the particle pool is empty")
        if len(backgrounds) == 0:
            raise ValueError("the background pool is empty")
        rng = np.random.default_rng(rng)
        H, W = self.image_size
        b_index = int(rng.integers(len(backgrounds)))
        background = backgrounds[b_index]
        canvas, bg_record = _background_canvas(background.image, (H, W), rng, self.flip)
        bg_record["index"] = b_index

        if self.same_source:
            choices = np.array([i for i, p in enumerate(particles)
                                if p.source == background.source])
            if choices.size == 0:
                choices = np.arange(len(particles))
        else:
            choices = None
        if self.source_density is not None:
            density = (self.source_density[background.source]
                       if 0 <= background.source < len(self.source_density)
                       else float(np.mean(self.source_density)))
            expected = density * H * W / 1e6 * rng.uniform(*self.density_factor)
            n = int(np.clip(round(expected), *self.particles_per_image))
        else:
            n = int(rng.integers(self.particles_per_image[0], self.particles_per_image[1] + 1))
        labels = np.zeros((H, W), np.uint16 if n < 65535 else np.int32)
        occupied = None if self.overlap else np.zeros((H, W), bool)
        full_area: list[int] = [0]     # by provisional label (1-based)
        visible: list[int] = [0]
        centres: list[tuple[float, float, float]] = []  # of placed particles: row, col, radius
        records = []
        for k in range(n):
            index = (int(rng.choice(choices)) if choices is not None
                     else int(rng.integers(len(particles))))
            params = {
                "particle": index,
                "source": particles[index].source,
                "scale": float(rng.uniform(*self.scale)),
                "angle": float(rng.uniform(*self.rotation)),
                "flip_h": bool(self.flip and rng.random() < 0.5),
                "flip_v": bool(self.flip and rng.random() < 0.5),
            }
            p_img, p_alpha = transform_particle(particles[index], params["scale"], params["angle"],
                                                params["flip_h"], params["flip_v"])
            h, w = p_alpha.shape
            if h > H or w > W:
                raise ValueError(
                    f"particle {index} is {h}x{w} px after scaling by {params['scale']:.2f}, "
                    "larger "
                    f"than the {H}x{W} canvas; lower `scale` or raise `image_size`")
            area = int(p_alpha.sum())
            position = self._place(labels, occupied, p_alpha, full_area, visible, rng, centres)
            params["position"] = list(position) if position is not None else None
            params["area"] = area
            records.append(params)
            if position is None or area == 0:
                params["label"] = 0
                continue
            r0, c0 = position
            region = (slice(r0, r0 + h), slice(c0, c0 + w))
            new_label = len(full_area)
            covered = labels[region][p_alpha]
            if covered.size:
                lost = np.bincount(covered, minlength=len(visible))
                for j in np.flatnonzero(lost[1:]) + 1:
                    visible[j] -= int(lost[j])
            labels[region][p_alpha] = new_label
            full_area.append(area)
            centres.append((r0 + h / 2, c0 + w / 2, np.sqrt(area / np.pi)))
            visible.append(area)
            params["label"] = new_label
            canvas[region][p_alpha] = p_img[p_alpha]
            if occupied is not None:
                _mark_occupied(occupied, p_alpha, r0, c0, self.gap)

        # Sequential labels in pasting order; fully hidden particles disappear.
        final = np.zeros(len(full_area), np.int64)
        alive = [j for j in range(1, len(full_area)) if visible[j] > 0]
        final[alive] = np.arange(1, len(alive) + 1)
        if len(alive) < len(full_area) - 1:
            labels = final[labels].astype(labels.dtype)
        for params in records:
            provisional = params["label"]
            params["label"] = int(final[provisional])
            params["visible_area"] = int(visible[provisional]) if params["label"] else 0
        record = {"background": bg_record, "requested": n,
                  "placed": int(sum(1 for r in records if r["position"] is not None)),
                  "visible": len(alive), "particles": records}
        return canvas, labels, record

    def _place(self, labels, occupied, alpha, full_area, visible, rng, centres):
        """Top-left corner for a particle of footprint `alpha`, or None if none fits.

        Packed, most tries put the particle against one already placed (at the sum of the
        two radii, in a random direction), so that clusters grow as in a dense layer.
        """
        H, W = labels.shape
        h, w = alpha.shape
        best, best_score, fits = None, -np.inf, 0
        ring, radius = None, np.sqrt(alpha.sum() / np.pi)
        for _ in range(self.attempts):
            # Top-left corner such that the particle's box lies on the canvas.
            if self.packed and centres and rng.random() < 0.8:
                row, col, r = centres[int(rng.integers(len(centres)))]
                angle = rng.uniform(0, 2 * np.pi)
                # kept apart, a particle must clear the gap: aim one pixel beyond it
                reach = r + radius + self.gap + (0 if self.overlap else 1)
                r0 = int(np.clip(round(row + reach * np.sin(angle) - h / 2), 0, H - h))
                c0 = int(np.clip(round(col + reach * np.cos(angle) - w / 2), 0, W - w))
            else:
                r0 = int(rng.integers(0, H - h + 1))
                c0 = int(rng.integers(0, W - w + 1))
            if not self._fits(labels, occupied, alpha, r0, c0, full_area, visible):
                continue
            if not self.packed:
                return r0, c0
            if ring is None:  # the pixels just outside the outline, 2 px wide
                ring = _grown(alpha, 2) & ~np.pad(alpha, 2)
            score = _contact(labels, ring, r0 - 2, c0 - 2) - 2 * int(
                np.count_nonzero(labels[r0:r0 + h, c0:c0 + w][alpha]))
            if score > best_score:
                best, best_score = (r0, c0), score
            fits += 1
            if fits >= PACK_CANDIDATES:
                break
        return best

    def _fits(self, labels, occupied, alpha, r0, c0, full_area, visible) -> bool:
        h, w = alpha.shape
        region = (slice(r0, r0 + h), slice(c0, c0 + w))
        if occupied is not None:
            return not occupied[region][alpha].any()
        if self.max_overlap >= 1:
            return True
        covered = labels[region][alpha]
        covered = covered[covered > 0]
        if covered.size == 0:
            return True
        lost = np.bincount(covered)
        for j in np.flatnonzero(lost):
            if visible[j] - lost[j] < (1 - self.max_overlap) * full_area[j]:
                return False
        return True


#: Positions that fit, of which `Compositor(packed=True)` takes the one with most contact.
PACK_CANDIDATES = 8


def _grown(alpha, by: int) -> np.ndarray:
    """`alpha` padded by `by` pixels on every side and dilated by as many (a square)."""
    return cv2.dilate(np.pad(alpha, by).astype(np.uint8), np.ones((2 * by + 1,) * 2, np.uint8)) > 0


def _overlay(shape, box, r0, c0):
    """Slices of a canvas of `shape` and of an array of shape `box` placed with its
    top-left at (r0, c0), which may lie partly off the canvas, where the two overlap."""
    H, W = shape
    h, w = box
    top, left = max(r0, 0), max(c0, 0)
    bottom, right = min(r0 + h, H), min(c0 + w, W)
    return ((slice(top, bottom), slice(left, right)),
            (slice(top - r0, bottom - r0), slice(left - c0, right - c0)))


def _contact(labels, ring, r0, c0) -> int:
    """Particle pixels of `labels` under `ring` placed with its top-left at (r0, c0), which
    may lie partly off the canvas."""
    canvas, own = _overlay(labels.shape, ring.shape, r0, c0)
    return int(np.count_nonzero(labels[canvas][ring[own]]))


def _mark_occupied(occupied, alpha, r0, c0, gap):
    """Mark a placed particle's footprint, grown by `gap` pixels, as taken."""
    grown = _grown(alpha, gap) if gap else alpha
    canvas, own = _overlay(occupied.shape, grown.shape, r0 - gap, c0 - gap)
    occupied[canvas] |= grown[own]


def transform_particle(particle: Particle, scale: float, angle: float, flip_h: bool = False,
                       flip_v: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Flip, scale and rotate a particle: (image float32, alpha bool) in a tight new box.

    The image is resampled bilinearly (area-averaged when shrinking), the alpha with
    nearest neighbour, so the mask stays binary. Angles are in degrees, counter-clockwise.
    """
    image, alpha = particle.image, particle.alpha
    if flip_h:
        image, alpha = image[:, ::-1], alpha[:, ::-1]
    if flip_v:
        image, alpha = image[::-1], alpha[::-1]
    alpha8 = np.ascontiguousarray(alpha, dtype=np.uint8)
    image = np.ascontiguousarray(image)
    if scale < 1:  # shrink first with area averaging to avoid aliasing
        h, w = alpha8.shape
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        alpha8 = cv2.resize(alpha8, size, interpolation=cv2.INTER_NEAREST)
        scale = 1.0
    h, w = alpha8.shape
    theta = np.deg2rad(angle)
    cos, sin = abs(np.cos(theta)) * scale, abs(np.sin(theta)) * scale
    out_w = int(np.ceil(w * cos + h * sin)) + 2
    out_h = int(np.ceil(w * sin + h * cos)) + 2
    M = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, scale)
    M[0, 2] += (out_w - 1) / 2 - (w - 1) / 2
    M[1, 2] += (out_h - 1) / 2 - (h - 1) / 2
    if angle % 360 == 0 and scale == 1:
        out_img = np.pad(image, 1, mode="edge")
        out_alpha = np.pad(alpha8, 1)
    else:
        out_img = cv2.warpAffine(image, M, (out_w, out_h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
        out_alpha = cv2.warpAffine(alpha8, M, (out_w, out_h), flags=cv2.INTER_NEAREST,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # Trim to the alpha's bounding box.
    rows = np.flatnonzero(out_alpha.any(1))
    cols = np.flatnonzero(out_alpha.any(0))
    if rows.size == 0:
        return out_img[:1, :1], out_alpha[:1, :1].astype(bool)
    sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    return np.ascontiguousarray(out_img[sl]), out_alpha[sl].astype(bool)


def _mirror_segments(start: int, length: int, size: int):
    """Runs of [start, start + length) on an axis tiled by mirroring an axis of `size` pixels.

    Yields (source slice, target slice, flipped): odd tiles are mirrored, so the tiling is
    seamless and has period 2 * size.
    """
    runs, pos = [], 0
    while pos < length:
        tile, within = divmod(start + pos, size)
        n = min(size - within, length - pos)
        runs.append((slice(within, within + n), slice(pos, pos + n), tile % 2 == 1))
        pos += n
    return runs


def _background_canvas(image: np.ndarray, size: tuple[int, int], rng, flip: bool):
    """Reflect-tile and crop a background to `size` at its own pixel scale (never stretched)."""
    H, W = size
    k = int(rng.integers(4)) if flip else 0
    if k:
        image = np.rot90(image, k)
    h, w = image.shape
    if h >= H and w >= W:
        r0 = int(rng.integers(0, h - H + 1))
        c0 = int(rng.integers(0, w - W + 1))
        canvas = np.array(image[r0:r0 + H, c0:c0 + W], dtype=np.float32, copy=True)
    else:
        r0, c0 = int(rng.integers(0, 2 * h)), int(rng.integers(0, 2 * w))
        views = {(fr, fc): image[::-1 if fr else 1, ::-1 if fc else 1]
                 for fr in (False, True) for fc in (False, True)}
        canvas = np.empty((H, W), np.float32)
        cols = _mirror_segments(c0, W, w)
        for src_r, dst_r, flip_r in _mirror_segments(r0, H, h):
            for src_c, dst_c, flip_c in cols:
                canvas[dst_r, dst_c] = views[flip_r, flip_c][src_r, src_c]
    return canvas, {"rot90": k, "offset": [r0, c0]}
