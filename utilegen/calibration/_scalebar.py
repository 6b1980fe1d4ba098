"""Reading a burned-in scale bar: find the bar, read its label, return nm per pixel.

The bar is found by geometry alone (a solid horizontal bar, or a line with end ticks, light
on dark or dark on light); its label is read by Tesseract, the system's OCR engine
(``apt-get install tesseract-ocr``; offline, nothing downloaded at run time, run as a
subprocess), on cleaned, enlarged crops of the text lines near the bar: each line is
binarized several ways, all crops of an image are read in one Tesseract run (its model
loaded once), and the readings of a line vote (`_score_line`). Why Tesseract: it is
packaged by every Linux distribution, Homebrew and conda, ships its English model with the
package, and reads the few glyphs a label uses (digits, ".", ",", "nm", "µm") reliably
once the crop is binarized and enlarged; a recognizer of our own would need training data
for the fonts of every journal and microscope vendor.

Honesty rules: a reading is accepted only when a number and a length unit are read next
to exactly one bar; every candidate that is not clear-cut lowers the ``confidence``, and
`read_calibration` uses a scale bar only above `MIN_CONFIDENCE`.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np

from .._image import to_uint8_full_range

#: Label ink must stand out from its local background by this share of the bar's contrast.
LOCAL_CONTRAST = 0.45
#: The second reading of a label binarizes at this multiple of the first's threshold.
SECOND_THRESHOLD = 1.25
#: Below this confidence a scale-bar reading is reported but not used as the calibration.
MIN_CONFIDENCE = 0.6

# number, optional space, unit; OCR spellings of µ (u, µ, μ, p, j, y, ju, pu) all mean micro
# a lone "m" is a µ the OCR dropped (no micrograph has a scale bar in metres); a lone "n"
# or "nn" ending the text is an "nm" whose "m" was dropped or split (no other unit starts
# with n). Both are "inferred" units, worth less than spelled ones (`_score_line`); an nm
# inferred in every reading is not trusted.
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_LABEL = re.compile(rf"({_NUMBER.pattern})\s*(nm|[uµμpjy]{{1,2}}m|mm|Å|m|nn?(?=\s*$))(?![a-z])",
                    re.IGNORECASE)
_UNIT_NM = {"nm": 1.0, "µm": 1e3, "mm": 1e6, "Å": 0.1}


@dataclass(frozen=True)
class ScaleBar:
    """A scale bar found in an image.

    ``box`` is (row0, col0, row1, col1), end-exclusive, around the bar and its label (what
    must be kept out of segmentation); ``bar`` is (row0, col0, row1, col1) of the bar
    alone; ``length_px`` its length; ``label`` the text read; ``value``/``unit`` the length
    it stands for; ``nm_per_px``; ``confidence`` in [0, 1].
    """

    box: tuple[int, int, int, int]
    bar: tuple[int, int, int, int]
    length_px: float
    label: str | None
    value: float | None
    unit: str | None
    nm_per_px: float | None
    confidence: float


def tesseract_available() -> bool:
    """Whether the ``tesseract`` program is installed (scale-bar labels need it)."""
    return _tesseract() is not None


@functools.cache
def _tesseract() -> str | None:
    return shutil.which("tesseract")


def _runs(mask: np.ndarray, min_len: int, max_len: int):
    """Per row, the runs of True at least `min_len` and at most `max_len` long:
    ``(row, col0, col1)`` (end-exclusive) arrays."""
    d = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    sr, sc = np.nonzero(d == 1)
    _, ec = np.nonzero(d == -1)  # same row order as the starts
    length = ec - sc
    keep = (length >= min_len) & (length <= max_len)
    return sr[keep], sc[keep], ec[keep]


def _bar_candidates(g: np.ndarray, light: bool, level: int | None = None) -> list[dict]:
    """Horizontal bars of one polarity: rectangles of rows whose runs start and end at the
    same columns (solid bars 1-8 % of the image high, and the lines of tick-ended bars),
    with no ink of the same polarity over most of their length right above and below
    (which tells a bar from a blank strip of a label box). Letters touching a bar do not
    hide it, as they would in a connected-component test."""
    h, w = g.shape
    if light:
        level = max(200, int(np.percentile(g, 99.9)) - 25) if level is None else level
        mask = g >= level
    else:
        level = min(55, int(np.percentile(g, 0.1)) + 25) if level is None else level
        mask = g <= level
    rows, c0s, c1s = _runs(mask, max(12, int(0.03 * w)), int(0.9 * w))
    groups: list[list[int]] = []  # [row0, row1 (last), col0, col1]
    open_by_row: dict[int, list[list[int]]] = {}
    for r, c0, c1 in zip(rows.tolist(), c0s.tolist(), c1s.tolist()):
        for grp in open_by_row.get(r - 1, []):
            if abs(grp[2] - c0) <= 2 and abs(grp[3] - c1) <= 2:
                grp[1] = r
                open_by_row.setdefault(r, []).append(grp)
                break
        else:
            grp = [r, r, c0, c1]
            groups.append(grp)
            open_by_row.setdefault(r, []).append(grp)
    out = []
    for r0, r1, c0, c1 in groups:
        thick, length = r1 - r0 + 1, c1 - c0
        if thick > max(3, 0.08 * h) or length < 2.5 * thick:
            continue
        if r0 == 0 or r1 == h - 1 or c0 == 0 or c1 == w:
            continue  # a frame or panel edge along the image border, not a bar
        # a bar stands free: above and below it, mostly not ink of its polarity
        above = mask[max(0, r0 - 2), c0:c1].mean() if r0 >= 2 else 0.0
        below = mask[min(h - 1, r1 + 2), c0:c1].mean() if r1 + 2 < h else 0.0
        if above > 0.5 or below > 0.5:
            continue
        # end ticks: ink right above or below both ends, not along the middle
        ends = [mask[max(0, r0 - 4):r0, c].any() or mask[r1 + 1:r1 + 5, c].any()
                for c in (c0, c1 - 1)]
        ticks = bool(all(ends))
        bc0, bc1 = _half_maximum_ends(g, r0, r1 + 1, c0, c1, light)
        tr0, tr1 = _extent_rows(r0, r1 + 1, ticks, h)
        out.append({"bar": (r0, bc0, r1 + 1, bc1), "extent": (tr0, bc0, tr1, bc1),
                    "length": float(bc1 - bc0), "thick": thick, "light": light,
                    "ticks": ticks, "level": level, "end_ticks": (bool(ends[0]), bool(ends[1])),
                    "blank": [(tr0, bc0, tr1, bc1)]})
    split = _split_bars(out, h)
    used = {id(seg) for bar in split for seg in bar.pop("segments")}
    return [c for c in out if id(c) not in used] + split


def _extent_rows(r0: int, r1: int, ticks: bool, h: int) -> tuple[int, int]:
    """The rows (end-exclusive) a bar in rows `r0`:`r1` takes with its end ticks, which
    reach up to 8 px above and below it."""
    return (max(0, r0 - 8), min(h, r1 + 8)) if ticks else (r0, r1)


def _split_bars(segments: list[dict], h: int) -> list[dict]:
    """Bars whose label sits inside the line ("|---- 200 nm ----|", the FEI data bar): two
    collinear segments of about the same length with a tick at each outer end (or, without
    ticks, of the same length within 10 %), the gap between them shorter than either. Only
    the segments are blanked as "not text"."""
    out = []
    for a in segments:
        if a["end_ticks"][1] or a["thick"] > 3:
            continue
        for b in segments:
            if b is a or b["light"] != a["light"] or b["end_ticks"][0]:
                continue
            if abs(a["bar"][0] - b["bar"][0]) > 1 or abs(a["bar"][2] - b["bar"][2]) > 1:
                continue
            gap = b["bar"][1] - a["bar"][3]
            la, lb = a["length"], b["length"]
            # outer ticks, or (where blur hides them) two halves of the same length
            ticked = a["end_ticks"][0] and b["end_ticks"][1]
            if not (0 < gap <= min(la, lb)
                    and (0.7 if ticked else 0.9) <= la / lb <= (1.4 if ticked else 1.1)):
                continue
            r0, c0 = min(a["bar"][0], b["bar"][0]), a["bar"][1]
            r1, c1 = max(a["bar"][2], b["bar"][2]), b["bar"][3]
            tr0, tr1 = _extent_rows(r0, r1, True, h)
            out.append({"bar": (r0, c0, r1, c1), "extent": (tr0, c0, tr1, c1),
                        "length": float(c1 - c0), "thick": max(a["thick"], b["thick"]),
                        "light": a["light"], "ticks": True, "level": a["level"],
                        "end_ticks": (True, True),
                        "blank": [(tr0, c0, tr1, a["bar"][3] + 1),
                                  (tr0, b["bar"][1] - 1, tr1, c1)], "segments": (a, b)})
    return out


def _half_maximum_ends(g: np.ndarray, r0: int, r1: int, c0: int, c1: int,
                       light: bool) -> tuple[int, int]:
    """The ends of the bar in rows `r0`:`r1`, on its middle row, where its edge crosses
    halfway between bar and background (anti-aliased and blurred edges otherwise shorten
    a thresholded bar by a pixel or two); see also `_outline_ends`."""
    line = g[(r0 + r1 - 1) // 2].astype(np.float64)
    inner = float(np.median(line[c0:c1]))
    outside = np.concatenate([line[max(0, c0 - 6):max(0, c0 - 2)], line[c1 + 2:c1 + 6]])
    if len(outside) == 0:
        return c0, c1
    half = (inner + float(np.median(outside))) / 2
    # a gray one-pixel line that a threshold cut short (the shaft of a gray double-headed
    # arrow, cut where it meets the heads) goes on at its own level: follow it, up to 30 %
    # of its length on each side; its contrast is against the rows above and below it.
    # (Not a thicker bar: a strip of ground between a label and its bar goes on, too.)
    ground = _local_ground(g, {"bar": (r0, c0, r1, c1)})
    same = np.abs(line - inner) <= 0.25 * abs(inner - ground)
    reach = int(0.3 * (c1 - c0)) if r1 - r0 == 1 else 0
    a, b = c0, c1
    while a > 0 and same[a - 1] and c0 - a < reach:
        a -= 1
    while b < len(line) and same[b] and b - c1 < reach:
        b += 1
    if (a, b) != (c0, c1):
        half = (inner + ground) / 2
    on = (line >= half) if light else (line <= half)
    a0, b0 = a, b
    while a > 0 and on[a - 1] and a0 - a < 3:
        a -= 1
    while b < len(line) and on[b] and b - b0 < 3:
        b += 1
    return _outline_ends(line, a, b, inner)


def _outline_ends(line: np.ndarray, a: int, b: int, inner: float) -> tuple[int, int]:
    """The ends of a bar drawn with an outline of the other polarity (a white bar framed in
    black on a gray ground): the outline's outer edges, where it comes back halfway to
    the ground, when both ends have one 1-4 px wide; else `a`, `b` unchanged. The bar's
    length is then its outer length, as a reader measures a framed bar."""
    n = len(line)
    if a < 9 or b + 9 > n:
        return a, b
    ends = []
    for side in (-1, 1):
        near = line[a - 5:a][::-1] if side < 0 else line[b:b + 5]
        far = line[a - 9:a - 5] if side < 0 else line[b + 5:b + 9]
        ground = float(np.median(far))
        # the outline: the pixel most unlike the bar next to its end
        k = int(np.argmin(near) if inner > ground else np.argmax(near))
        edge = float(near[k])
        # a drawn outline is near black (white), most of the way from the ground to the
        # extreme; the light fringe that sharpening leaves around a black bar is not
        extreme = 0.0 if inner > ground else 255.0
        if ((edge - ground) * (inner - ground) > 0
                or abs(edge - ground) < max(20.0, 0.6 * abs(extreme - ground))):
            return a, b  # no outline of the other polarity at this end
        half = (edge + ground) / 2
        m = k
        while m + 1 < len(near) and (near[m + 1] - half) * (edge - half) > 0:
            m += 1
        if m >= 4:
            return a, b  # wider than an outline: a particle or a box
        ends.append(m + 1)
    return a - ends[0], b + ends[1]


# "p": Tesseract reads many a µ as "p" when it may ("1pm"), and drops it when it may not
# ("1m"); no micrograph is labelled in picometres, so "pm" means µm (see `_LABEL`)
# "l" and "I" are in: Tesseract reads a serif "1" as "l" and, when it may not, drops it
# ("1 µm" read "pm"); `_clean` turns them back into "1" where a number stands
_WHITELIST = "0123456789.,nmuµμplI "
_BORDER = 30  # white margin around a line image for OCR, px


def _ocr_batch(images: list[np.ndarray], psm: int = 7) -> list[tuple[str, float, tuple]]:
    """Text, confidence (0-1) and the columns its words span (x0, x1) Tesseract reads in
    each of `images` (label lines, black ink on white), all in one run: Tesseract reads a
    list of files with its model loaded once, about five times faster than one run per
    image.

    Tesseract 5 with a character whitelist dies now and then on one image (SIGFPE), and
    the pages after it are lost: after a run killed by a signal, the next goes on from
    the first page missing (pages are written whole, in order), and an image that kills a
    run on its own is left unread."""
    import tempfile

    import cv2

    exe = _tesseract()
    out = [("", 0.0, (0, 0))] * len(images)
    if exe is None or not images:
        return out
    with tempfile.TemporaryDirectory(prefix="utilegen-ocr-") as tmp:
        names = []
        for i, img in enumerate(images):
            name = f"{tmp}/{i}.png"
            cv2.imwrite(name, img)
            names.append(name)

        def run(first: int, last: int) -> tuple[int, int] | None:
            with open(f"{tmp}/list.txt", "w") as fh:
                fh.write("\n".join(names[first:last]) + "\n")
            try:
                res = subprocess.run([exe, f"{tmp}/list.txt", "stdout", "--psm", str(psm),
                                      "-l", "eng", "-c", f"tessedit_char_whitelist={_WHITELIST}",
                                      "tsv"], capture_output=True, timeout=60, check=False)
            except (OSError, subprocess.TimeoutExpired):
                return None
            return res.returncode, _parse_tsv(res.stdout.decode("utf-8", "replace"), out, first)

        start = 0
        while start < len(images):
            ran = run(start, len(images))
            if ran is None or ran[0] >= 0:
                break  # done, or an error that another run would repeat (no language data)
            # pages are written whole and in order: go on after the last one written; when
            # none was, read the first image on its own (left unread if it alone kills
            # the run) and go on after it
            if ran[1] == 0:
                run(start, start + 1)
            start += max(1, ran[1])
    return out


def _parse_tsv(tsv: str, out: list, offset: int) -> int:
    """Fill `out[offset + page]` from Tesseract's TSV output; the number of pages in it."""
    words: dict[int, list[str]] = {}
    confs: dict[int, list[float]] = {}
    spans: dict[int, list[int]] = {}
    pages = 0
    for line in tsv.splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) < 12 or not parts[1].isdigit():
            continue
        page = int(parts[1]) - 1
        pages = max(pages, page + 1)
        if parts[11].strip():
            words.setdefault(page, []).append(parts[11].strip())
            confs.setdefault(page, []).append(max(0.0, float(parts[10])) / 100.0)
            x0, x1 = int(parts[6]), int(parts[6]) + int(parts[8])
            span = spans.setdefault(page, [x0, x1])
            span[:] = [min(span[0], x0), max(span[1], x1)]
    for page, ws in words.items():
        if 0 <= offset + page < len(out):
            out[offset + page] = (" ".join(ws), float(np.mean(confs[page])),
                                  tuple(spans[page]))
    return pages


def _line_images(gray: np.ndarray, lift: np.ndarray, glyphs: np.ndarray, thr: float,
                 dark_ink: bool) -> list[np.ndarray]:
    """Binarized, enlarged images of one label line for OCR (black ink on white, with a
    white border): the glyph-masked lift at `thr` and at `SECOND_THRESHOLD` x `thr`, and
    Otsu's threshold on the enlarged gray crop itself (ink of the given polarity).

    `gray` is the line's crop of the image, `lift` the same crop of the ink-lifted image
    (ink high), `glyphs` the glyph mask (ink components that passed `_text_lines`); the
    crop is enlarged before it is binarized, so that glyphs keep their shape."""
    import cv2

    rows = np.flatnonzero(glyphs.any(axis=1))
    if len(rows) == 0:
        return []
    f = float(np.clip(48.0 / max(1, rows[-1] - rows[0] + 1), 1.0, 8.0))

    def big(a):
        return cv2.resize(a.astype(np.float32), None, fx=f, fy=f, interpolation=cv2.INTER_CUBIC)

    blift = big(lift)
    keep = cv2.resize(cv2.dilate(glyphs.astype(np.uint8), np.ones((3, 3), np.uint8)),
                      (blift.shape[1], blift.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    ink_sets = [(blift >= thr) & keep, (blift >= SECOND_THRESHOLD * thr) & keep]
    # Otsu's threshold between ink and ground near the glyphs (not across the whole crop,
    # where a particle would set it)
    bgray = np.clip(big(gray), 0, 255).astype(np.uint8)
    near = cv2.dilate(keep.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    if near.sum() > 16:
        t, _ = cv2.threshold(bgray[near].reshape(1, -1), 0, 255,
                             cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        ink_sets.append(((bgray <= t) if dark_ink else (bgray > t)) & keep)
    imgs = [np.where(ink, 0, 255).astype(np.uint8) for ink in ink_sets]
    # and the lift itself in gray levels (ground white, ink black from twice `thr`), glyph
    # edges kept soft: Tesseract's line recognizer reads gray images
    soft = np.clip(255.0 * (1.0 - blift / (2.0 * thr)), 0, 255)
    imgs.append(np.where(keep, soft, 255).astype(np.uint8))
    return [(cv2.copyMakeBorder(img, _BORDER, _BORDER, _BORDER, _BORDER, cv2.BORDER_CONSTANT,
                                value=255), glyphs, f) for img in imgs]


def _text_lines(ink: np.ndarray):
    """Boxes (row0, col0, row1, col1) of text lines: glyph-sized ink components that sit
    side by side, glyphs cut by the window border or larger than a line left out; and the
    mask of those glyphs."""
    import cv2

    n, _, stats, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=8)
    h, w = ink.shape
    glyphs = []
    for i in range(1, n):
        c0, r0, bw, bh, area = (int(v) for v in stats[i])
        if area < 2 or bh > 0.45 * h or bw > 0.6 * w:
            continue
        if r0 == 0 or c0 == 0 or r0 + bh == h or c0 + bw == w:
            continue
        glyphs.append([r0, c0, r0 + bh, c0 + bw])
    glyphs.sort(key=lambda b: b[1])
    lines: list[list[int]] = []
    for g in glyphs:
        for line in lines:
            lh = line[2] - line[0]
            overlap = min(line[2], g[2]) - max(line[0], g[0])
            if overlap > 0.3 * min(lh, g[2] - g[0]) and g[1] - line[3] < 2.5 * max(lh, g[2] - g[0]):
                line[:] = [min(line[0], g[0]), min(line[1], g[1]), max(line[2], g[2]),
                           max(line[3], g[3])]
                break
        else:
            lines.append(list(g))
    mask = np.zeros_like(ink)
    for r0, c0, r1, c1 in glyphs:
        mask[r0:r1, c0:c1] |= ink[r0:r1, c0:c1]
    return [tuple(line) for line in lines if line[2] - line[0] >= 5], mask


def _round_number(value: float) -> bool:
    """Whether `value` is a number scale bars are labelled with: 1, 2, 2.5, 3, 4, 5, 6, 8
    times a power of ten."""
    if value <= 0:
        return False
    mantissa = value / 10 ** np.floor(np.log10(value))
    return any(abs(mantissa - m) < 1e-6 for m in (1, 2, 2.5, 3, 4, 5, 6, 8, 10))


def _unit(text: str) -> str | None:
    t = text.lower()
    if t in ("nm", "n", "nn"):
        return "nm"
    if t == "mm":
        return "mm"
    if t == "å":
        return "Å"
    if t.endswith("m") and len(t) in (1, 2, 3):
        return "µm"
    return None


def _local_ground(g: np.ndarray, cand: dict) -> float:
    """The background level right around a bar: the rows just above and below it over its
    length (a label box's ground when the bar sits in one, not the image's)."""
    h = g.shape[0]
    r0, c0, r1, c1 = cand["bar"]
    k = max(3, r1 - r0)
    band = np.concatenate([g[max(0, r0 - 2 - k):max(0, r0 - 2), c0:c1].ravel(),
                           g[min(h, r1 + 2):min(h, r1 + 2 + k), c0:c1].ravel()])
    return float(np.median(band)) if band.size else float(np.median(g))


def _label_lines(g: np.ndarray, cand: dict) -> list[dict]:
    """The text lines near a bar that may be its label, each with the images to OCR.

    Looked for in two windows: around the bar (0.6 of its length to the left, 0.9 to the
    right), and, for a label beside a short bar or in its own box, a wider one (0.3 and 0.4
    of the image width); distances are measured in units of the bar's length, at least a
    fifth of the image width. In each, ink is told from ground three ways, each giving its
    own lines: against the *local* background (top-hat / black-hat with a kernel wider
    than a stroke: text crossing a particle's edge), against the ground around the bar
    (text on noisy flat ground), and ink of the other polarity (a dark label over a light
    bar, as some journals draw them). Lines found by several are pooled (see
    `_score_line`); the wider window adds only lines that reach beyond the narrower one.
    """
    import cv2

    h, w = g.shape
    r0, c0, r1, c1 = cand["extent"]
    length = c1 - c0
    b0, b1, b2, b3 = cand["bar"]
    # a ruler of ticks brings the level of its ticks and of the ground between them
    bar_level = cand["ink"] if "ink" in cand else float(np.median(g[b0:b2, b1:b3]))
    ground = cand["ground"] if "ground" in cand else _local_ground(g, cand)
    if abs(bar_level - ground) < 40:
        return []
    contrast = abs(bar_level - ground)
    light = cand["light"]
    sign = 1.0 if light else -1.0
    kernel = np.ones((21, 21), np.uint8)
    op, op_other = ((cv2.MORPH_TOPHAT, cv2.MORPH_BLACKHAT) if light
                    else (cv2.MORPH_BLACKHAT, cv2.MORPH_TOPHAT))
    pad_r = int(max(40, 5 * (r1 - r0), 0.65 * length, 0.18 * h))
    wr0, wr1 = max(0, r0 - pad_r), min(h, r1 + pad_r)
    unit = max(1.0, length, 0.2 * w)
    windows = [(max(0, c0 - int(0.6 * length)), min(w, c1 + int(0.9 * length)))]
    wide = (max(0, c0 - int(max(0.6 * length, 0.3 * w))),
            min(w, c1 + int(max(0.9 * length, 0.4 * w))))
    if wide != windows[0]:
        windows.append(wide)
    found: list[dict] = []
    for wc0, wc1 in windows:
        win = g[wr0:wr1, wc0:wc1].astype(np.float32)
        above_ground = np.clip(sign * (win - ground), 0, None).astype(np.float32)
        variants = [(cv2.morphologyEx(win, op, kernel), LOCAL_CONTRAST * contrast, not light),
                    (above_ground, 0.5 * contrast, not light),
                    # ink as bright (dark) as the bar: a label drawn in the bar's colour
                    # over a speckled, textured ground
                    (above_ground, 0.8 * contrast, not light),
                    (cv2.morphologyEx(win, op_other, kernel), LOCAL_CONTRAST * contrast,
                     light)]
        bar_cy, bar_cx = (r0 + r1) / 2 - wr0, (c0 + c1) / 2 - wc0
        seen = windows[0] if (wc0, wc1) != windows[0] else None
        for lift, thr, dark_ink in variants:
            ink = lift >= thr
            for q0, d0, q1, d1 in cand["blank"]:  # the bar is not text
                ink[max(0, q0 - wr0):max(0, q1 - wr0),
                    max(0, d0 - wc0):max(0, d1 - wc0)] = False
            boxes, glyphs = _text_lines(ink)
            lines = sorted(boxes, key=lambda b: np.hypot((b[0] + b[2]) / 2 - bar_cy,
                                                         (b[1] + b[3]) / 2 - bar_cx))
            for lr0, lc0, lr1, lc1 in lines[:3]:
                box = (lr0 + wr0, lc0 + wc0, lr1 + wr0, lc1 + wc0)
                if seen is not None and seen[0] <= box[1] and box[3] <= seen[1]:
                    continue  # inside the narrower window: read there already
                crop = (slice(max(0, lr0 - 3), lr1 + 3), slice(max(0, lc0 - 3), lc1 + 3))
                images = _line_images(win[crop], lift[crop], glyphs[crop], thr, dark_ink)
                if not images:
                    continue
                found.append({
                    "dist": float(np.hypot(((lr0 + lr1) / 2 - bar_cy) / unit,
                                           ((lc0 + lc1) / 2 - bar_cx) / unit)),
                    "box": box, "images": images, "window": (wc0, wc1)})
    # pool the lines different binarizations found in the same place (of one window)
    pooled: list[dict] = []
    for line in found:
        for other in pooled:
            if _iou(line["box"], other["box"]) > 0.5 and line["window"] == other["window"]:
                other["images"] += line["images"]
                other["dist"] = min(other["dist"], line["dist"])
                break
        else:
            pooled.append(dict(line))
    return pooled


def _tall_glyphs(glyphs: np.ndarray, c0: float = -np.inf, c1: float = np.inf) -> int:
    """How many glyphs in a line, centred between columns `c0` and `c1`, stand at least 0.4
    of its height: digits and letters, not dots, specks or a particle's edge running under
    the text."""
    import cv2

    _, _, stats, cent = cv2.connectedComponentsWithStats(glyphs.astype(np.uint8),
                                                         connectivity=8)
    heights = stats[1:, cv2.CC_STAT_HEIGHT]
    if len(heights) == 0:
        return 0
    inside = (cent[1:, 0] >= c0) & (cent[1:, 0] <= c1)
    return int(np.sum((heights >= 0.4 * np.percentile(heights, 90)) & inside))


def _inside(a, b) -> bool:
    """Whether box `a` (row0, col0, row1, col1) lies within box `b`."""
    return b[0] <= a[0] and b[1] <= a[1] and a[2] <= b[2] and a[3] <= b[3]


def _iou(a, b) -> float:
    ih = min(a[2], b[2]) - max(a[0], b[0])
    iw = min(a[3], b[3]) - max(a[1], b[1])
    if ih <= 0 or iw <= 0:
        return 0.0
    inter = ih * iw
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


def _score_line(line: dict, texts: list[tuple[str, float]]) -> dict | None:
    """One text line's reading with its confidence, or None when it is not a label.

    The line was binarized several ways; each image was read on its own, and the readings
    vote. A value read from one set of pixels only, or contradicted by a comparable number
    of other readings, is not trusted (a "1" read as "4" or "7" from one set of pixels is
    rarely read the same way from another)."""
    votes: dict[tuple[float, str], list] = {}
    unparsed = []  # texts that hold no label ("1.0 u", "00")
    for (text, ocr_conf, span), (_, glyphs, f) in zip(texts, line["images"]):
        reading = _parse(text)
        if reading is None:
            unparsed.append(text)
        else:
            # the tall glyphs under the words read (in the crop's columns)
            n = _tall_glyphs(glyphs, (span[0] - _BORDER) / f - 1, (span[1] - _BORDER) / f + 1)
            votes.setdefault((reading[0], reading[1]), []).append((reading, text, ocr_conf, n))
    if not votes:
        return None
    key = max(votes, key=lambda k: (len(votes[k]), sum(v[2] for v in votes[k])))
    top = votes[key]
    # Tesseract's own word confidence says little for whitelisted glyphs; the checks
    # below (other readings agree, as many glyphs as characters, a round value) carry
    # most of the weight
    ocr_conf = float(np.mean([v[2] for v in top]))
    if key[1] == "µm" and not any(v[0][2] for v in top):
        # Tesseract gives a µ it reads as "u" a word confidence near 0 however clear the
        # glyph: for a µ spelled out, the share of binarizations that agree counts as much
        ocr_conf = max(ocr_conf, len(top) / len(texts))
    conf = 0.5 + 0.5 * ocr_conf
    reading = max(top, key=lambda v: v[2])[0]

    def fits(v):  # as many glyphs under the words read as characters (one more or less)
        n = len(re.sub(r"[\s.,]", "", v[0][3]))
        return n - 1 <= v[3] <= n + 1

    # the top reading must have a second one, a majority of all readings with a digit
    # ("00 nm" beside "400 nm" and "100 nm" says the first digit is unsure), and no rival
    # half as strong. A reading of the same number without its unit ("1.0 u" beside
    # "1.0 um") does not disagree; a rival with fewer characters than glyphs under it
    # ("5 m" from a "500nm" whose zeros merged) is a misreading, not a rival.
    number = _NUMBER.match(reading[3]).group(0)
    partial = sum((m := _NUMBER.search(_clean(t))) is not None and m.group(0) == number
                  for t in unparsed)
    rival = max((sum(fits(x) for x in v) for k, v in votes.items() if k != key), default=0)
    n_digits = sum(bool(re.search(r"\d", t[0])) for t in texts)
    if len(top) < 2 or len(top) + partial <= 0.5 * n_digits or rival >= 0.5 * len(top):
        conf *= 0.5
    # as many glyphs in the line as characters read (a dropped "0" is a wrong value)
    if not any(fits(v) for v in top):
        conf *= 0.4
    if all(v[0][2] for v in top):
        conf *= 0.85  # the unit was inferred (a lone "m" or "n"), not read
        if key[1] == "nm":
            conf *= 0.5  # "nn" may also be a µm whose µ was dropped and whose m was split
    # a label is a number and its unit alone: more digits in every reading of the line
    # ("7 7.0mm 1508") say it ran into other text, and which number is the label is a guess
    if all(_other_digits(v[1], v[0][3]) for v in top):
        conf *= 0.5
    value, unit, _, matched = reading
    return {"text": matched, "value": value, "unit": unit, "conf": conf,
            "dist": line["dist"], "box": line["box"], "votes": len(top), "of": len(texts)}


def _read_label(lines: list[dict]) -> dict | None:
    """The label next to a bar among its scored text lines: the most confident reading,
    halved when another confident reading disagrees."""
    items = [line for line in lines if line is not None]
    if not items:
        return None
    best = max(items, key=lambda t: (round(t["conf"], 3), -t["dist"]))

    def overlap(a, b):
        return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])

    # the same text read differently (with comparable confidence), or another confident
    # label about as near the bar: do not pretend to know which (a label much farther
    # away, such as a data bar's field width "HFW 592 nm", does not count)
    if any((t["value"], t["unit"]) != (best["value"], best["unit"])
           and ((overlap(t["box"], best["box"]) and t["conf"] >= 0.5 * best["conf"])
                or (t["conf"] >= MIN_CONFIDENCE and t["dist"] < best["dist"] + 0.5))
           for t in items):
        best = {**best, "conf": best["conf"] * 0.5}
    return best


_ONE = re.compile(r"(?<![A-Za-z\d])(?<!\d\s)[lI](?=[\d.,]|\s?(?:nm|[uµμpjy]{1,2}m|mm)(?![a-z]))")


def _clean(text: str) -> str:
    """`text` with an "l" or "I" where a number stands read as "1" ("lpm", "l00 nm"), stray
    "." and "," (not between digits) blanked and spaces collapsed."""
    text = _ONE.sub("1", text)
    return re.sub(r"\s+", " ", re.sub(r"(?<!\d)[.,]|[.,](?!\d)", " ", text)).strip()


def _other_digits(text: str, matched: str) -> bool:
    """Whether `text` holds digits besides the label `matched` in it."""
    return bool(re.search(r"\d", _clean(text).replace(matched, " ", 1)))


def _parse(text: str):
    """``(value, unit, unit inferred, matched text)`` of a label, or None."""
    # a stray "." or "," not between digits is a speck ("1.0. um", ".5 nm" is not 0.5)
    text = _clean(text)
    m = _LABEL.search(text)
    if not m:
        return None
    unit = _unit(m.group(2))
    number = m.group(1)
    if re.match(r"0\d", number):
        return None  # "03": no label has a leading zero but "0.5"; a "." or digit was lost
    if re.fullmatch(r"\d{1,3}(,\d{3})+", number):
        number = number.replace(",", "")  # "1,000 nm": a thousands separator
    value = float(number.replace(",", "."))  # "1,5 µm": a decimal comma
    if unit is None or value <= 0:
        return None
    return value, unit, m.group(2).lower() in ("m", "n", "nn"), m.group(0)


def _bottom_levels(g: np.ndarray, share: float):
    """``(top, strip, [(light, level), ...])``: the bottom `share` of `g` from row `top`,
    and for each polarity whose brightest (darkest) ink stands 60 levels out from the
    strip's commonest gray, the level halfway between them (where data bars and their
    rulers are drawn)."""
    top = int((1 - share) * g.shape[0])
    sub = g[top:]
    ground = int(np.bincount(sub.ravel(), minlength=256).argmax())
    levels = []
    for light in (True, False):
        ink = float(np.percentile(sub, 99.5 if light else 0.5))
        if abs(ink - ground) >= 60:
            levels.append((light, (ink + ground) / 2))
    return top, sub, levels


def _data_bar_candidates(g: np.ndarray) -> list[dict]:
    """Bars along the bottom edge (where instrument data bars are), found at a level
    halfway between the bottom strip's commonest gray and its brightest (darkest) ink:
    there the bar is often a gray line (155 on 44 in an FEI footer) that the image-wide
    level misses."""
    top, sub, levels = _bottom_levels(g, 0.2)
    out = []
    for light, level in levels:
        for c in _bar_candidates(sub, light, level=round(level)):
            c["bar"], c["extent"] = _shift(c["bar"], top), _shift(c["extent"], top)
            c["blank"] = [_shift(b, top) for b in c["blank"]]
            out.append(c)
    return out


def _tick_rulers(g: np.ndarray) -> list[dict]:
    """Rulers drawn as a row of short ticks with no line between them (Hitachi SEM data
    bars: 11 ticks, the label's value spanning first to last), in the bottom quarter: at
    least 6 small upright marks of one polarity, tops and bottoms level, evenly spaced
    (each gap within 15 % of their median). Their length is the distance between the
    first and the last tick's centres; the ticks are blanked as "not text"."""
    import cv2

    h, w = g.shape
    top, sub, levels = _bottom_levels(g, 0.25)
    out = []
    for light, level in levels:
        mask = (sub >= level) if light else (sub <= level)
        _, _, stats, cent = cv2.connectedComponentsWithStats(mask.astype(np.uint8),
                                                             connectivity=8)
        ticks = [(int(st[1]), int(st[1] + st[3]), float(c[0])) for st, c in zip(stats[1:], cent[1:])
                 if 4 <= st[3] <= 0.06 * h and st[2] <= 5 and st[3] >= 1.5 * st[2]]
        # marks level with each other (tops and bottoms within a pixel), by rows
        rows: dict[tuple[int, int], list[float]] = {}
        for t0, t1, x in ticks:
            rows.setdefault((t0, t1), []).append(x)
        seen: set[tuple[int, int]] = set()
        for key in sorted(rows, key=lambda k: -len(rows[k])):
            if key in seen:
                continue
            near = [(key[0] + i, key[1] + j) for i in (-1, 0, 1) for j in (-1, 0, 1)]
            near = [k for k in near if k in rows and k not in seen]
            seen.update(near)
            xs = np.sort(np.concatenate([rows[k] for k in near]))
            for run in _even_runs(xs):
                q0, q1 = min(k[0] for k in near) + top, max(k[1] for k in near) + top
                c0, c1 = int(np.floor(run[0])), int(np.ceil(run[-1])) + 1
                box = (q0, max(0, c0 - 3), q1, min(w, c1 + 3))
                on = mask[q0 - top:q1 - top, c0:c1]
                patch = sub[q0 - top:q1 - top, c0:c1]
                # `bar` spans the ticks; the length is between their centres
                out.append({"bar": (q0, c0, q1, c1), "extent": box,
                            "length": float(run[-1] - run[0]), "thick": 1, "light": light,
                            "ticks": True, "level": level, "ink": float(np.median(patch[on])),
                            "ground": float(np.median(patch[~on])),
                            "end_ticks": (True, True), "blank": [box]})
    return out


def _even_runs(xs: np.ndarray, min_count: int = 6) -> list[np.ndarray]:
    """The runs of at least `min_count` consecutive positions in sorted `xs` spaced
    evenly (each gap within 15 % of the run's median gap, at least 3 px)."""
    runs, i = [], 0
    while i + min_count <= len(xs):
        step = float(np.median(np.diff(xs[i:i + min_count])))
        j = i + 1
        while j < len(xs) and step >= 3 and abs(xs[j] - xs[j - 1] - step) <= 0.15 * step:
            j += 1
        if j - i >= min_count:
            runs.append(xs[i:j])
            i = j
        else:
            i += 1
    return runs


def _shift(box: tuple, rows: int) -> tuple:
    return (box[0] + rows, box[1], box[2] + rows, box[3])


def _box_ground(c: dict, cands: list[dict]) -> bool:
    """Whether candidate `c` is a strip of a label box's ground rather than a bar: a bar
    of the other polarity lies right above or below it, inside its columns (a black bar
    in a white box leaves white strips above and below it that look like bars). The
    converse, a thin strip along a thicker bar, is `_edge_strip`."""
    r0, c0, r1, c1 = c["bar"]
    for o in cands:
        if o["light"] == c["light"]:
            continue
        q0, d0, q1, d1 = o["bar"]
        gap = max(q0 - r1, r0 - q1)
        if (d0 >= c0 + 2 and d1 <= c1 - 2 and gap <= max(6, r1 - r0) and o["thick"] >= 2
                and o["length"] >= 0.4 * c["length"]):
            return True
    return False


def _join_fragments(g: np.ndarray, cands: list[dict]) -> list[dict]:
    """Candidates with pieces of one bar joined: a run of rows inside a thicker bar (where
    its rows' runs differ), a line on the next row beside a longer one, or pieces of a
    noisy line that overlap. A piece of the same polarity whose rows lie within a longer
    candidate's (one row of slack) and whose columns overlap it joins that candidate,
    which grows to cover it (ends found again at half maximum). Split bars (two segments)
    are left as they are."""
    h = g.shape[0]
    out = _join_pass(g, cands, h)
    while len(out) < len(cands):  # a joined bar may now reach another piece
        cands, out = out, _join_pass(g, out, h)
    return out


def _join_pass(g: np.ndarray, cands: list[dict], h: int) -> list[dict]:
    """One pass of `_join_fragments`, longest candidates first."""
    out: list[dict] = []
    for c in sorted(cands, key=lambda c: -c["length"]):
        r0, c0, r1, c1 = c["bar"]
        host = next((o for o in out
                     if o["light"] == c["light"] and len(o["blank"]) == len(c["blank"]) == 1
                     and o["bar"][0] - 1 <= r0 and r1 <= o["bar"][2] + 1
                     and min(c1, o["bar"][3]) > max(c0, o["bar"][1])), None)
        if host is None:
            out.append(dict(c))
            continue
        q0, d0, q1, d1 = host["bar"]
        if c0 < d0 or c1 > d1:  # the piece reaches beyond: the bar is longer
            a, b = _half_maximum_ends(g, q0, q1, min(c0, d0), max(c1, d1), host["light"])
            t0, t1 = _extent_rows(q0, q1, host["ticks"], h)
            host.update(bar=(q0, a, q1, b), extent=(t0, a, t1, b), length=float(b - a),
                        blank=[(t0, a, t1, b)])
    return out


def _edge_strip(c: dict, cands: list[dict]) -> bool:
    """Whether candidate `c` is a strip of ground along a thicker bar of the other
    polarity: a thin line without ticks lying against it, within its columns (the light
    gap between a black bar and the label right above it reads as a white line). The
    converse, a wide strip around a thinner bar, is `_box_ground`."""
    r0, c0, r1, c1 = c["bar"]
    if c["thick"] > 2 or c["ticks"]:
        return False
    for o in cands:
        q0, d0, q1, d1 = o["bar"]
        if (o["light"] != c["light"] and o["thick"] >= 2 * c["thick"]
                and max(q0 - r1, r0 - q1) <= 2 and d0 <= c0 and c1 <= d1):
            return True
    return False


def find_scale_bar(image) -> ScaleBar | None:
    """The scale bar of a micrograph and its reading, or None when no bar is found.

    `image` is a 2-D array (any dtype; RGB is converted). A bar is returned with
    ``nm_per_px=None`` and a low confidence when its label cannot be read.
    """
    from ..io import to_grayscale

    g = np.asarray(image)
    if g.ndim == 3:
        g = to_grayscale(g)
    if g.ndim != 2 or min(g.shape) < 16:
        return None  # too small to hold a scale bar (or not an image: as_gray says so)
    g = to_uint8_full_range(g)
    h, w = g.shape
    cands = _bar_candidates(g, True) + _bar_candidates(g, False)
    for c in _data_bar_candidates(g):
        if not any(o["light"] == c["light"]
                   and max(abs(a - b) for a, b in zip(o["bar"], c["bar"])) <= 2
                   for o in cands):
            cands.append(c)
    cands = _join_fragments(g, [c for c in cands if not _box_ground(c, cands)])
    cands += _tick_rulers(g)
    if not cands:
        return None

    # bars of micrographs sit near the bottom or top edge, in a corner: prefer those; a
    # one-pixel line without ticks, or a run shorter than 4 % of the width, comes last
    def where(c):
        r0, c0, r1, c1 = c["bar"]
        weak = (c["thick"] < 2 and not c["ticks"]) or c["length"] < 0.04 * w
        return (weak, min(r0, h - r1) / h + 0.3 * min(c0, w - c1) / w)

    cands.sort(key=where)
    cands = cands[:6]
    # every candidate's label lines, all read in one Tesseract run
    lines = [_label_lines(g, cand) for cand in cands]
    images = [img for ls in lines for line in ls for img, _, _ in line["images"]]
    texts = iter(_ocr_batch(images))
    readings = []
    for cand, ls in zip(cands, lines):
        scored = [_score_line(line, [next(texts) for _ in line["images"]]) for line in ls]
        label = _read_label(scored)
        if label is not None and label["dist"] < 1.5:
            readings.append((cand, label))
    # a "bar" inside the box of the label read next to it is a stroke of that label's
    # glyphs, or the ground between two of its lines: it may lend its reading confidence
    # (below) but is never the bar measured
    bars = [t for t in readings
            if not _inside(t[0]["bar"], t[1]["box"]) and not _edge_strip(t[0], cands)]
    if not bars:
        cand = cands[0]
        return ScaleBar(box=cand["extent"], bar=cand["bar"], length_px=cand["length"],
                        label=None, value=None, unit=None, nm_per_px=None, confidence=0.0)
    # the nearest label among the sure readings (a sure reading of the label beside one
    # bar beats an unsure one beside a strip of ground a little nearer to it)
    cand, label = min(bars, key=lambda t: (t[1]["conf"] < MIN_CONFIDENCE, t[1]["dist"],
                                           -t[1]["conf"]))
    nm = label["value"] * _UNIT_NM[label["unit"]] / cand["length"]
    # a "bar" inside the label's box is a stroke of a glyph; the label read the same way
    # in its window is the same text read again: the surer reading counts
    same = (label["value"], label["unit"])
    confidence = max(lab["conf"] for c, lab in readings
                     if c is cand or (_inside(c["bar"], label["box"])
                                      and (lab["value"], lab["unit"]) == same))
    # another bar's label read with comparable confidence (the same label read next to
    # another bar says nothing more: the nearer bar has it)
    others = {round(lab["value"] * _UNIT_NM[lab["unit"]] / c["length"], 6)
              for c, lab in readings
              if c is not cand and _iou(lab["box"], label["box"]) == 0
              and lab["conf"] >= 0.5 * label["conf"]}
    # the same label read next to a bar of the other polarity lying against this one (an
    # image's edge above a data bar's light bar reads as a dark line): one of them is an
    # edge, and which one is a guess when their lengths differ
    r0, c0, r1, c1 = cand["bar"]
    twins = [c for c, lab in bars
             if c["light"] != cand["light"] and (lab["value"], lab["unit"]) == same
             and max(c["bar"][0] - r1, r0 - c["bar"][2]) <= 3
             and min(c1, c["bar"][3]) - max(c0, c["bar"][1]) > 0.5 * max(c["length"], c1 - c0)
             and abs(c["length"] - cand["length"]) > 0.02 * cand["length"]]
    if any(abs(o - nm) > 0.02 * nm for o in others) or twins:
        confidence *= 0.5  # two bars that disagree: do not pretend to know which
    if not _round_number(label["value"]):
        confidence *= 0.5  # labels are 1, 2, 2.5, 3, 4, 5 x 10^k; "166" is a misreading
    if label["unit"] in ("mm", "Å"):
        confidence *= 0.7  # rare in particle micrographs, and "nm"/"mm" are easily confused
    if not cand["ticks"] and cand["thick"] < 2:
        confidence *= 0.9  # a one-pixel line without ticks might be anything
    if cand["bar"][1] <= 0 or cand["bar"][3] >= w:
        confidence *= 0.5  # a bar that reaches the image's edge may be cut: its length is a guess
    br0, bc0, br1, bc1 = label["box"]
    r0, c0, r1, c1 = cand["extent"]
    box = (max(0, min(r0, br0) - 2), max(0, min(c0, bc0) - 2),
           min(h, max(r1, br1) + 2), min(w, max(c1, bc1) + 2))
    return ScaleBar(box=box, bar=cand["bar"], length_px=cand["length"], label=label["text"],
                    value=label["value"], unit=label["unit"], nm_per_px=float(nm),
                    confidence=float(np.clip(confidence, 0.0, 1.0)))


def find_data_bar(image) -> tuple[int, int, int, int] | None:
    """An instrument data bar: a flat strip with text along the bottom edge (SEM footers).

    Returns its box (row0, col0, row1, col1) or None. A strip counts when the bottom rows
    share one flat background level that differs from the rows above it, over 3-30 % of
    the image height.
    """
    from ..io import to_grayscale

    g = np.asarray(image)
    if g.ndim == 3:
        g = to_grayscale(g)
    g = to_uint8_full_range(g)
    h, w = g.shape
    if h < 40:
        return None
    modes = np.array([np.bincount(row, minlength=256).argmax() for row in g])
    share = np.array([np.mean(np.abs(row.astype(int) - m) <= 3) for row, m in zip(g, modes)])
    base = int(modes[-1])
    if share[-1] < 0.5:
        return None
    top = h - 1
    while top > 0 and share[top - 1] >= 0.3 and abs(int(modes[top - 1]) - base) <= 6:
        top -= 1
    strip = h - top
    if not 0.03 * h <= strip <= 0.3 * h:
        return None
    # the strip must be text on a flat ground: some ink, and unlike the image above it
    inner = g[top:]
    ink = np.mean(np.abs(inner.astype(int) - base) > 40)
    above = g[max(0, top - strip):top]
    if ink < 0.005 or np.mean(np.abs(above.astype(int) - base) <= 3) > 0.6:
        return None
    return (top, 0, h, w)
