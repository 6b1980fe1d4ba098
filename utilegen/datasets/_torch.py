"""torch views of pairs: image and mask tensors (`image_to_tensor` uses
`utilegen.io.to_unit_float`) and `TorchPairs`, a `torch.utils.data.Dataset`."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W) image -> float32 tensor (1, H, W) in [0, 1] (`utilegen.io.to_unit_float`)."""
    from ..io import to_unit_float

    return torch.from_numpy(np.ascontiguousarray(to_unit_float(image)))[None]


def mask_to_tensor(labels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(labels).astype(np.int64))


class TorchPairs(Dataset):
    """Tensors from a pair dataset: ``(image float32 (1, H, W), labels int64 (H, W))``."""

    def __init__(self, pairs):
        self.pairs = pairs

    def __len__(self):
        return len(self.pairs)

    def pair(self, index):
        return self.pairs.pair(index)

    def __getitem__(self, index):
        image, mask = self.pairs.pair(index)
        return image_to_tensor(image), mask_to_tensor(mask.labels)
