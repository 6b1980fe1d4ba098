"""`PairedFolder`: image/mask pairs from two folders matched by file stem, and the
`num_pairs` / `get_pair` helpers that read any sequence of pairs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..io import list_images, read_image, read_mask, read_pixel_size
from ..masks import InstanceMask


def _files_by_stem(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder not found: {folder}")
    files: dict[str, Path] = {}
    for path in list_images(folder):
        if path.stem in files:
            raise ValueError(f"two {what} files share the stem {path.stem!r}: "
                             f"{files[path.stem].name} and {path.name}")
        files[path.stem] = path
    return files


class PairedFolder:
    """Image/mask pairs from two folders, matched by file stem.

    Parameters
    ----------
    root : str or Path
        Folder holding the two sub-folders.
    images, masks : str
        Sub-folder names (EMPS uses ``masks="segmaps"``).
    ids : sequence of str, optional
        Use only these stems, in this order.
    strict : bool
        If True (default), an image without a mask or a mask without an image is an error
        that names the files; if False, unmatched files are ignored.

    Items are ``(image, InstanceMask)``: image a 2-D array as stored (`utilegen.io.read_image`).
    """

    def __init__(self, root, images: str = "images", masks: str = "masks", *,
                 ids: Sequence[str] | None = None, strict: bool = True):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder not found: {self.root}")
        image_files = _files_by_stem(self.root / images, "image")
        mask_files = _files_by_stem(self.root / masks, "mask")
        if ids is None:
            missing_masks = sorted(set(image_files) - set(mask_files))
            missing_images = sorted(set(mask_files) - set(image_files))
            if strict and (missing_masks or missing_images):
                parts = []
                if missing_masks:
                    parts.append(f"images without a mask in {self.root / masks}: "
                                 + ", ".join(image_files[s].name for s in missing_masks[:10])
                                 + (" ..." if len(missing_masks) > 10 else ""))
                if missing_images:
                    parts.append(f"masks without an image in {self.root / images}: "
                                 + ", ".join(mask_files[s].name for s in missing_images[:10])
                                 + (" ..." if len(missing_images) > 10 else ""))
                raise ValueError("unmatched files in " + str(self.root) + "; " + "; ".join(parts))
            ids = sorted(set(image_files) & set(mask_files))
        else:
            ids = [str(i) for i in ids]
            absent = [i for i in ids if i not in image_files or i not in mask_files]
            if absent:
                raise ValueError(f"ids without an image/mask pair in {self.root}: {absent[:10]}")
        if not ids:
            raise ValueError(
                f"no image/mask pairs found in {self.root / images} and {self.root / masks}")
        self.ids: list[str] = list(ids)
        self.image_paths: list[Path] = [image_files[i] for i in self.ids]
        self.mask_paths: list[Path] = [mask_files[i] for i in self.ids]
        self._images, self._masks = images, masks

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[np.ndarray, InstanceMask]:
        return self.pair(index)

    def pair(self, index: int) -> tuple[np.ndarray, InstanceMask]:
        """The ``(image, InstanceMask)`` pair at `index`; shapes are checked."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} pairs")
        image = read_image(self.image_paths[index])
        mask = read_mask(self.mask_paths[index])
        if image.shape != mask.shape:
            raise ValueError(f"image {self.image_paths[index]} has shape {image.shape} but its "
                             f"mask {self.mask_paths[index]} has shape {mask.shape}")
        return image, mask

    def __iter__(self):
        for i in range(len(self)):
            yield self.pair(i)

    def subset(self, ids: Sequence[str]) -> PairedFolder:
        """The pairs with these stems, in this order."""
        return PairedFolder(self.root, self._images, self._masks, ids=ids)

    def pixel_size(self, index: int) -> tuple[float, str] | None:
        """Calibration of image `index` from its metadata (see `utilegen.io.read_pixel_size`)."""
        return read_pixel_size(self.image_paths[index])

    def to_torch(self):
        """A `torch.utils.data.Dataset` view giving tensors like `SyntheticDataset`'s items."""
        from ._torch import TorchPairs

        return TorchPairs(self)

    def __repr__(self) -> str:
        return f"PairedFolder({str(self.root)!r}, {len(self)} pairs)"


def num_pairs(dataset) -> int:
    return len(dataset)


def get_pair(dataset, index: int) -> tuple[np.ndarray, InstanceMask]:
    """``(image ndarray, InstanceMask)`` number `index` of any utilegen dataset.

    Works for objects with a ``pair(i)`` method (`PairedFolder`, `SyntheticDataset`),
    `torch.utils.data.ConcatDataset` / `Subset` of those, and plain sequences of
    ``(image, mask)`` tuples (the mask may be an InstanceMask or a label array).
    """
    if hasattr(dataset, "pair"):
        return dataset.pair(index)
    cls = type(dataset).__name__
    if cls == "ConcatDataset":  # torch.utils.data.ConcatDataset, without importing torch
        import bisect

        if index < 0:
            index += len(dataset)
        d = bisect.bisect_right(dataset.cumulative_sizes, index)
        start = dataset.cumulative_sizes[d - 1] if d > 0 else 0
        return get_pair(dataset.datasets[d], index - start)
    if cls == "Subset":
        return get_pair(dataset.dataset, dataset.indices[index])
    item = dataset[index]
    if not (isinstance(item, tuple) and len(item) >= 2):
        raise TypeError(f"{cls} items must be (image, mask) pairs, got {type(item).__name__}")
    image, mask = item[0], item[1]
    if hasattr(image, "numpy"):  # a tensor
        image = image.detach().cpu().numpy()
        image = image[0] if image.ndim == 3 and image.shape[0] == 1 else image
        mask = mask.detach().cpu().numpy() if hasattr(mask, "numpy") else mask
    image = np.asarray(image)
    if not isinstance(mask, InstanceMask):
        mask = InstanceMask(np.asarray(mask))
    if image.shape != mask.shape:
        raise ValueError(
            f"item {index} of {cls}: image shape {image.shape} != mask shape {mask.shape}")
    return image, mask
