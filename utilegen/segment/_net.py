"""The star-convex U-Net in PyTorch (StarDist2D's architecture; imports torch)."""

from __future__ import annotations

import torch
from torch import nn

from ._config import StarDistConfig


def _conv(cin: int, cout: int, k: int, batch_norm: bool = False) -> nn.Sequential:
    if batch_norm:  # csbdeep's conv_block2(batch_norm=True): conv -> BN -> activation
        return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False),
                             nn.BatchNorm2d(cout), nn.ReLU(inplace=True))
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2), nn.ReLU(inplace=True))


class StarDistNet(nn.Module):
    """U-Net -> 3x3 feature layer -> (sigmoid probability, linear distances), like StarDist2D.

    As in StarDist2D (`stardist.models.model2d._build` and `csbdeep.internals.blocks.unet_block`):
    for ``grid > 1`` the input first passes ``convs_per_level`` convolutions with
    ``base_filters`` and a 2x max-pool per factor of 2; the U-Net has ``base_filters * 2**n``
    filters at level n, a bottleneck ending at ``base_filters * 2**(depth-1)``, nearest
    up-sampling with concatenated skips, and every decoder level ending at half its width.

    forward(x: (N, 1, H, W)) -> (prob (N, 1, H/g, W/g), dist (N, n_rays, H/g, W/g)).
    """

    def __init__(self, config: StarDistConfig):
        super().__init__()
        c = config
        f, per = c.base_filters, c.convs_per_level

        def _conv(cin, cout, k, _bn=c.batch_norm):
            return globals()["_conv"](cin, cout, k, _bn)

        k = c.kernel_size
        pre: list[nn.Module] = []
        ch, g = 1, 1
        while g < c.grid:
            for _ in range(per):
                pre.append(_conv(ch, f, k))
                ch = f
            pre.append(nn.MaxPool2d(2))
            g *= 2
        self.pre = nn.Sequential(*pre)
        self.down = nn.ModuleList()
        skips = []
        for n in range(c.unet_depth):
            layers = []
            for _ in range(per):
                layers.append(_conv(ch, f * 2**n, k))
                ch = f * 2**n
            self.down.append(nn.Sequential(*layers))
            skips.append(ch)
        self.pool = nn.MaxPool2d(2)
        mid = []
        for _ in range(per - 1):
            mid.append(_conv(ch, f * 2**c.unet_depth, k))
            ch = f * 2**c.unet_depth
        mid.append(_conv(ch, f * 2 ** max(0, c.unet_depth - 1), k))
        ch = f * 2 ** max(0, c.unet_depth - 1)
        self.middle = nn.Sequential(*mid)
        self.up = nn.ModuleList()
        for n in reversed(range(c.unet_depth)):
            ch = ch + skips[n]
            layers = []
            for _ in range(per - 1):
                layers.append(_conv(ch, f * 2**n, k))
                ch = f * 2**n
            layers.append(_conv(ch, f * 2 ** max(0, n - 1), k))
            ch = f * 2 ** max(0, n - 1)
            self.up.append(nn.Sequential(*layers))
        if c.feature_channels > 0:
            self.features = _conv(ch, c.feature_channels, k)
            ch = c.feature_channels
        else:
            self.features = nn.Identity()
        self.prob = nn.Conv2d(ch, 1, 1)
        self.dist = nn.Conv2d(ch, c.n_rays, 1)
        # He initialization: PyTorch's default conv init shrinks ReLU activations about
        # 6-fold per layer, leaving the 17-layer network's outputs nearly constant at start.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logit, dist = self.logits(x)
        return torch.sigmoid(logit), dist

    def logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(probability logit (N, 1, h, w), dist (N, n_rays, h, w)), both float32.

        Under bf16 autocast the 1x1 heads still run in float32, so probabilities near 0/1
        and distances of large particles keep their precision.
        """
        x = self.pre(x)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.middle(x)
        for block, skip in zip(self.up, reversed(skips)):
            x = nn.functional.interpolate(x, scale_factor=2, mode="nearest")
            x = block(torch.cat([x, skip], dim=1))
        x = self.features(x)
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            return self.prob(x), self.dist(x)


def use_bf16(enabled: bool) -> bool:
    """Whether to run convolutions in bfloat16: asked for and supported by this CPU."""
    if not enabled:
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast(enabled: bool, device_type: str = "cpu"):
    """bfloat16 autocast for the convolutions: on a CUDA device when asked for, on the CPU
    when asked for and supported (`use_bf16`)."""
    if device_type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=enabled)
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16(enabled))
