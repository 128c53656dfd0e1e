"""The MatSeg authors' descriptor net (their ``Desnet.Net``), so their trained checkpoint loads as is.

The architecture (digest §1.8), written in plain PyTorch: a ConvNeXt-B encoder whose stem takes
4 channels (RGB plus a region-of-interest channel that is always zero), a pyramid-scene-parsing
block on the stride-32 map and a three-stage decoder with skip connections from strides 16, 8
and 4. The module and parameter names reproduce the authors' (``Encoder1.features.*`` with
torchvision's ``convnext_base().features`` layout, ``PSPLayers``, ``SqueezeLayers``,
``upsample_ModuleList``), so ``ReferenceNet().state_dict()`` has exactly their keys and shapes
(``reference_keys.json``, generated from their code); torchvision is not needed.

Differences from matseg's own :class:`~matseg.net.model.DescriptorNet`: no 1x1 head after the
decoder (the descriptors are the sum of two GELU outputs), no padding to a multiple of 32 (sizes
are floored at every stride, as in the reference), and the reference's input normalisation.
Loading files: :func:`matseg.net.checkpoint.load_reference_checkpoint`.
"""

from __future__ import annotations

import json
from importlib import resources

import torch
import torch.nn.functional as F
from torch import nn

from matseg.net.model import _conv_bn_gelu

# Input normalisation of the reference: per-channel means (R, G, B) and one std, on 0-255 values.
REFERENCE_MEAN = (123.68, 116.779, 103.939)
REFERENCE_STD = 65.0
CHANNEL_ORDERS = ("rgb", "bgr")
# Longer side the authors' Demo.py and Evaluate.py shrink images to (cv2 bilinear, int() sizes).
REFERENCE_MAX_SIDE = 700
# The stride-32 map must keep at least one cell: smaller inputs fail inside the reference too.
MIN_SIDE = 32
# torchvision's convnext_base: blocks per stage, channels per stage, LayerNorm eps, initial layer scale.
CONVNEXT_BASE_DEPTHS = (3, 3, 27, 3)
CONVNEXT_BASE_WIDTHS = (128, 256, 512, 1024)
LN_EPS = 1e-6
LAYER_SCALE_INIT = 1e-6
PSP_SCALES = (1.0, 1 / 2, 1 / 4, 1 / 8)
DESCRIPTOR_DIM = 128
# Keys of the ConvNeXt ImageNet classifier: part of the authors' state dict but never used.
CLASSIFIER_PREFIX = "Encoder1.classifier."


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps).permute(
            0, 3, 1, 2
        )


class Permute(nn.Module):
    """``x.permute(*dims)`` as a module: it sits inside the block's Sequential (no parameters)."""

    def __init__(self, dims: tuple[int, ...]):
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)


class CNBlock(nn.Module):
    """ConvNeXt block: x + layer_scale * MLP(LayerNorm(depthwise 7x7 conv(x))), channels-first in and out.

    Stochastic depth (training only, no parameters) is left out: this net is for inference.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim),
            Permute((0, 2, 3, 1)),
            nn.LayerNorm(dim, eps=LN_EPS),
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, dim),
            Permute((0, 3, 1, 2)),
        )
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), LAYER_SCALE_INIT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer_scale * self.block(x) + x


class ConvNeXtBaseFeatures(nn.Module):
    """torchvision's ``convnext_base().features`` with an ``in_channels`` stem; the classifier is left out.

    ``features``: 0 = stem (Conv 4x4 stride 4 + LayerNorm2d), 1/3/5/7 = stages of 3/3/27/3 blocks at
    128/256/512/1024 channels (strides 4/8/16/32), 2/4/6 = downsampling (LayerNorm2d + Conv 2x2 stride 2).
    """

    def __init__(self, in_channels: int = 4):
        super().__init__()
        widths = CONVNEXT_BASE_WIDTHS
        stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 4, stride=4), LayerNorm2d(widths[0], eps=LN_EPS))
        layers: list[nn.Module] = [stem]
        for i, (depth, width) in enumerate(zip(CONVNEXT_BASE_DEPTHS, widths)):
            layers.append(nn.Sequential(*(CNBlock(width) for _ in range(depth))))
            if i + 1 < len(widths):
                down = nn.Conv2d(width, widths[i + 1], 2, stride=2)
                layers.append(nn.Sequential(LayerNorm2d(width, eps=LN_EPS), down))
        self.features = nn.Sequential(*layers)
        for m in self.modules():  # torchvision's initialisation, so an untrained net behaves like theirs
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)


class ReferenceNet(nn.Module):
    """The authors' ``Desnet.Net(descriptor_depth=128)`` for inference.

    ``forward(images)``: ``images`` (B, 3, H, W) float RGB in 0-255, H and W >= 32 (any size; not
    padded) -> (B, 128, H // 4, W // 4) float32 descriptors, unit length per pixel: the contract of
    :class:`~matseg.net.model.DescriptorNet`, so it plugs into :class:`~matseg.net.infer.Predictor`.
    :meth:`forward_raw` returns the same map before the normalisation (the reference's output; its
    evaluation mode then resizes it bilinearly to H x W).

    Args:
        channel_order: the order in which the net sees the colour channels (its input is always RGB).
            ``"rgb"`` (default): as the authors trained it (their reader feeds RGB). ``"bgr"``: the
            channels reversed before the normalisation, as the authors' ``Demo.py`` and ``Evaluate.py``
            feed ``cv2.imread`` output; this reproduces their published demo and benchmark numbers.
    """

    def __init__(self, channel_order: str = "rgb"):
        super().__init__()
        if channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
        self.channel_order = channel_order
        widths = CONVNEXT_BASE_WIDTHS
        self.Encoder1 = ConvNeXtBaseFeatures(in_channels=4)
        self.PSPLayers = nn.ModuleList(_conv_bn_gelu(widths[3], 512, 3) for _ in PSP_SCALES)
        self.SqueezeLayers = _conv_bn_gelu(512 * len(PSP_SCALES), widths[3], 3)
        # Per decoder stage an upscale conv then a skip conv, interleaved as the authors register them.
        stages = ((widths[3], 512, widths[2]), (512, 256, widths[1]), (256, DESCRIPTOR_DIM, widths[0]))
        self.upsample_ModuleList = nn.ModuleList(
            layer
            for cin, cout, cskip in stages
            for layer in (_conv_bn_gelu(cin, cout, 3), _conv_bn_gelu(cskip, cout, 1))
        )

    def options(self) -> dict:
        """What a checkpoint must record besides the weights to rebuild this net."""
        return {"channel_order": self.channel_order}

    def _pyramid(self, x: torch.Tensor) -> torch.Tensor:
        # As the reference: every branch is resized there and back, even at scale 1 (an exact identity).
        size = x.shape[-2:]
        branches = []
        for scale, layer in zip(PSP_SCALES, self.PSPLayers):
            small = tuple(max(1, int(n * scale)) for n in size)
            y = layer(F.interpolate(x, size=small, mode="bilinear", align_corners=False))
            branches.append(F.interpolate(y, size=size, mode="bilinear", align_corners=False))
        return self.SqueezeLayers(torch.cat(branches, dim=1))

    def forward_raw(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float RGB 0-255 -> (B, 128, H // 4, W // 4) descriptors, not normalised."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        h, w = images.shape[-2:]
        if min(h, w) < MIN_SIDE:
            raise ValueError(f"the reference net needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels, got {w}x{h}")
        x = images.to(self.Encoder1.features[0][0].weight.dtype)
        if self.channel_order == "bgr":
            x = x.flip(1)
        mean = torch.tensor(REFERENCE_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        x = (x - mean) / REFERENCE_STD
        x = torch.cat([x, torch.zeros_like(x[:, :1])], dim=1)  # the ROI channel, zero at inference as in training
        taps = {}
        for i, layer in enumerate(self.Encoder1.features):
            x = layer(x)
            taps[i] = x
        x = self._pyramid(x)
        ups = self.upsample_ModuleList
        for stage, tap in enumerate((5, 3, 1)):  # skips from strides 16, 8, 4
            x = ups[2 * stage](x)
            y = ups[2 * stage + 1](taps[tap])
            # The reference adds the skip only when the sizes differ. They always do (the previous map
            # is the floor-halved size), so this is the plain resize-and-add; kept literal for parity.
            if y.shape[-2:] != x.shape[-2:]:
                x = F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=False) + y
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.forward_raw(images).float(), dim=1)


def reference_manifest() -> dict:
    """``reference_keys.json``: ``{"keys": {name: shape}, "dropped": {classifier name: shape}, "source": ...}``."""
    return json.loads(resources.files("matseg.net").joinpath("reference_keys.json").read_text(encoding="utf-8"))
