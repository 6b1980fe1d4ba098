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
