"""Helpers shared by utilegen's frozen configuration dataclasses."""

from __future__ import annotations

import dataclasses


def check(cond: bool, name: str, message: str) -> None:
    """Raise ``ValueError("<name> <message>")`` unless `cond`: range checks in __post_init__."""
    if not cond:
        raise ValueError(f"{name} {message}")


def known_fields(cls, d: dict) -> dict:
    """`d` after checking it names only fields of dataclass `cls` (for ``from_dict``)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; known: {sorted(known)}")
    return dict(d)
