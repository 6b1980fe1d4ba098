"""Image preprocessing for classification: grayscale micrograph -> normalised 3-channel tensor.

Policy (documented in `utilegen.classify`; the intensity step is
`utilegen._image.percentile_to_unit`):
- intensities: uint8 images are divided by 255; other dtypes (uint16, float) are mapped
  from their 0.5th-99.5th percentile to [0, 1] (a 12-bit image in a uint16 file would
  otherwise be nearly black);
- channels: RGB input is converted to grayscale (`utilegen.io.as_gray`), and the
  grayscale image is replicated to the 3 channels an ImageNet backbone expects;
- geometry: evaluation/prediction resize the whole image to ``image_size x image_size``
  (aspect ratio not kept: EM fields are close to square, and every particle stays in
  view); training takes random-resized crops of that size plus flips and 90° rotations.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .._image import percentile_to_unit


def _normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """(1, H, W) in [0, 1] -> (3, H, W) normalised: the grayscale replicated to 3 channels."""
    x = x.expand(3, -1, -1)
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def eval_tensor(image, size: int, mean, std) -> torch.Tensor:
    """Whole image resized to (size, size), as a normalised (3, size, size) tensor."""
    x = torch.from_numpy(percentile_to_unit(image))[None, None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return _normalize(x[0].clamp(0, 1), mean, std)


class TrainTransform:
    """Random-resized crop, flips and 90° rotations (+ timm RandAugment), then normalise.

    Random draws use torch's global generator (and RandAugment Python's/NumPy's), which
    `ShapeClassifier.fit` seeds.
    """

    def __init__(self, size: int, mean, std, *, crop_scale=(0.35, 1.0),
                 randaugment: str | None = None):
        from torchvision.transforms import v2

        self.size, self.mean, self.std = size, mean, std
        self.crop = v2.RandomResizedCrop(size, scale=crop_scale, ratio=(3 / 4, 4 / 3),
                                         antialias=True)
        self.randaugment = None
        if randaugment:
            from timm.data.auto_augment import rand_augment_transform

            self.randaugment = rand_augment_transform(
                randaugment, {"translate_const": int(size * 0.45), "img_mean": (128, 128, 128)})

    def __call__(self, image) -> torch.Tensor:
        x = self.crop(torch.from_numpy(percentile_to_unit(image))[None])
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        if torch.rand(()) < 0.5:
            x = x.flip(-2)
        x = torch.rot90(x, int(torch.randint(4, ())), dims=(-2, -1))
        if self.randaugment is not None:
            from PIL import Image

            gray = (x[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            pil = self.randaugment(Image.fromarray(gray).convert("RGB"))
            x = torch.from_numpy(np.asarray(pil.convert("L"), dtype=np.float32) / 255)[None]
        return _normalize(x.clamp(0, 1).contiguous(), self.mean, self.std)
