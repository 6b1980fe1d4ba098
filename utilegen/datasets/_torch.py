from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W) image -> float32 tensor (1, H, W); integer images scaled by their dtype's maximum."""
    image = np.asarray(image)
    if np.issubdtype(image.dtype, np.integer):
        scaled = image.astype(np.float32) / np.float32(np.iinfo(image.dtype).max)
    else:
        scaled = image.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(scaled))[None]


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
