"""Datasets of real image/mask pairs: folders on disk, EMPS, and a built-in sample.

Every dataset here is a sequence of ``(image, InstanceMask)`` pairs. `get_pair` reads one
pair from any of utilegen's datasets (or a list of pairs, or a concatenation), which is
how training code accepts "real", "synthetic" and "mixed" data alike.
"""

from ._emps import EMPS_URL, emps
from ._paired import PairedFolder, get_pair, num_pairs
from ._sample import sample_pair

__all__ = ["EMPS_URL", "PairedFolder", "emps", "get_pair", "num_pairs", "sample_pair"]
