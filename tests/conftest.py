"""Shared fixtures: the local EMPS copy and a byte-level snapshot of input files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The shared EMPS copy lives next to the checkout: ../shared/data/emps from the repo root.
EMPS_ROOT = REPO.parent / "shared" / "data" / "emps"


def file_hashes(*paths) -> dict[str, str]:
    """SHA-256 of every file under `paths` (files or folders), keyed by path."""
    hashes = {}
    for path in map(Path, paths):
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            hashes[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return hashes


@pytest.fixture
def hashes():
    """`file_hashes` as a fixture: snapshot inputs before an operation, compare after."""
    return file_hashes


@pytest.fixture
def emps_root() -> Path:
    if not (EMPS_ROOT / "segmaps").is_dir():
        pytest.skip(f"EMPS data not found at {EMPS_ROOT} (expected images/ and segmaps/ there)")
    return EMPS_ROOT


@pytest.fixture(scope="session")
def rendered_shapes():
    """Dark disks, squares and rods (several sizes and angles) on a noisy light ground,
    blurred like a micrograph; returns image, mask and the true shape per label."""
    import cv2
    import numpy as np

    from utilegen.masks import InstanceMask

    rng = np.random.default_rng(0)
    size = 480
    lab = np.zeros((size, size), np.int32)
    truth = {}
    cells = [(r, c) for r in range(4) for c in range(4)]
    shapes = ["sphere", "cube", "rod"] * 5
    for k, ((r, c), shape) in enumerate(zip(cells, shapes, strict=False), start=1):
        cy, cx = 60 + 120 * r, 60 + 120 * c
        s = rng.uniform(28, 44)  # particle size in px
        angle = rng.uniform(0, 180)
        layer = np.zeros_like(lab, np.uint8)
        if shape == "sphere":
            cv2.circle(layer, (cx, cy), int(s / 2), 1, -1)
        else:
            w, h = (s, s) if shape == "cube" else (2.0 * s, s / 2.5)
            box = cv2.boxPoints(((cx, cy), (w, h), angle)).round().astype(np.int32)
            cv2.fillPoly(layer, [box], 1)
        lab[layer > 0] = k
        truth[k] = shape
    ground = rng.normal(190, 8, lab.shape)
    image = np.where(lab > 0, 70.0, ground)
    image = cv2.GaussianBlur(image, (0, 0), 1.2) + rng.normal(0, 6, lab.shape)
    return np.clip(image, 0, 255).astype(np.uint8), InstanceMask(lab), truth
