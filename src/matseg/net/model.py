"""The descriptor net (paper appendix G.2, digest §1.8): U-Net with a pretrained encoder, a PSP
block on the deepest features, three skip-connection upsampling stages and a per-pixel,
L2-normalised descriptor (128-d by default) whose cosine similarity says how alike two pixels'
materials are.

Deviations from the reference (docs/deviations.md): no 4th (ROI) input channel (it was always
zero), the skip connection is added in every decoder stage (the reference added it only inside
a size-mismatch branch), and a final 1x1 projection produces the descriptor (the reference's
output was a sum of two GELU activations, which are >= -0.17, so descriptors could not point in
opposite directions).
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn

from matseg.net.config import ModelConfig
from matseg.net.encoders import create_encoder
from matseg.net.layers import ConvBnAct


def _conv_bn_gelu(cin: int, cout: int, k: int) -> ConvBnAct:
    return ConvBnAct(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.GELU())


class PSP(nn.Module):
    """Pyramid pooling: each scale resizes, convolves and resizes back; the branches are fused."""

    def __init__(self, cin: int, branch: int, cout: int, scales: list[float]):
        super().__init__()
        self.scales = list(scales)
        self.branches = nn.ModuleList(_conv_bn_gelu(cin, branch, 3) for _ in self.scales)
        self.fuse = _conv_bn_gelu(branch * len(self.scales), cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        outs = []
        for scale, conv in zip(self.scales, self.branches):
            size = (max(1, int(h * scale)), max(1, int(w * scale)))
            y = x if size == (h, w) else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            y = conv(y)
            if y.shape[-2:] != (h, w):
                y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
            outs.append(y)
        return self.fuse(torch.cat(outs, dim=1))


class DescriptorNet(nn.Module):
    """Per-pixel material descriptors.

    ``forward(images)``: ``images`` (B, 3, H, W) float RGB in 0-255 (any H, W; padded
    internally to a multiple of 32) -> (B, D, H/4, W/4) descriptors, unit length per pixel.
    ``forward(images, with_taps=True)`` -> ``(descriptors, [f4, f8, f16])``: also the encoder's
    features at strides 4, 8 and 16 of the padded image (the rank loss's reference).
    """

    def __init__(self, cfg: ModelConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or ModelConfig()
        self.encoder = create_encoder(cfg.encoder, pretrained=cfg.pretrained, weights_file=cfg.encoder_weights if cfg.pretrained else None)
        chans = list(self.encoder.feature_channels)
        strides = list(self.encoder.feature_strides)
        # Taps at strides 4, 8, 16, 32 (the reference's ConvNeXt feature indices 1, 3, 5, 7).
        self.tap_index = [strides.index(s) for s in (4, 8, 16, 32)]
        c4, c8, c16, c32 = (chans[i] for i in self.tap_index)
        d1, d2, d3 = cfg.decoder_channels
        self.psp = PSP(c32, cfg.psp_channels, d1, cfg.psp_scales)
        self.up = nn.ModuleList([_conv_bn_gelu(d1, d1, 3), _conv_bn_gelu(d1, d2, 3), _conv_bn_gelu(d2, d3, 3)])
        self.skip = nn.ModuleList([_conv_bn_gelu(c16, d1, 1), _conv_bn_gelu(c8, d2, 1), _conv_bn_gelu(c4, d3, 1)])
        self.head = nn.Conv2d(d3, cfg.descriptor_dim, 1)
        self._frozen: list[nn.Module] = []
        self._stops_early = "last_stride" in inspect.signature(self.encoder.forward_features).parameters

    def freeze_encoder(self, stride: int) -> None:
        """Fix the encoder's layers up to output ``stride`` (0: none): no gradients, and their
        batch-norm statistics stay as loaded (eval mode even while the net trains)."""
        layers_to_stride = getattr(self.encoder, "layers_to_stride", None)
        if layers_to_stride is None:
            if stride:
                raise ValueError(f"encoder {self.cfg.encoder!r} cannot freeze layers by stride (efficientnet_lite* can)")
            return
        for layer in self._frozen:  # a second call replaces the first
            layer.requires_grad_(True)
        self._frozen = layers_to_stride(stride)
        for layer in self._frozen:
            layer.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> "DescriptorNet":
        super().train(mode)
        for layer in self._frozen:
            layer.eval()
        return self

    def _encode(self, images: torch.Tensor, last_stride: int | None = None) -> list[torch.Tensor]:
        """Encoder features at strides 4, 8, 16, 32 of the image padded to a multiple of 32 (those
        up to ``last_stride`` at least, when given)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        h, w = images.shape[-2:]
        ph, pw = (-h) % 32, (-w) % 32
        x = self.encoder.normalize(images)
        if ph or pw:  # the encoder halves the size five times
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        # Only asked of encoders that can stop early: a registered encoder's forward_features may take x alone.
        feats = self.encoder.forward_features(x) if last_stride is None else self.encoder.forward_features(x, last_stride=last_stride)
        return [feats[i] for i in self.tap_index if i < len(feats)]

    def encoder_taps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's features at strides 4, 8 and 16 of the padded image (no decoder), with
        the encoder in eval mode: an extra view must not move any batch-norm statistics."""
        mode = self.training
        self.encoder.eval()
        try:
            return self._encode(images, last_stride=16 if self._stops_early else None)[:3]  # stride 32 is not needed
        finally:
            self.train(mode)  # restores the mode, frozen layers included

    def forward(self, images: torch.Tensor, with_taps: bool = False):
        h, w = images.shape[-2:]
        f4, f8, f16, f32 = self._encode(images)
        x = self.psp(f32)
        for up, skip, feat in zip(self.up, self.skip, (f16, f8, f4)):
            x = up(x)
            y = skip(feat)
            x = F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=False) + y
        x = self.head(x)
        x = x[..., : -(-h // 4), : -(-w // 4)]
        descriptors = F.normalize(x.float(), dim=1)
        return (descriptors, [f4, f8, f16]) if with_taps else descriptors


def build_model(cfg: ModelConfig | None = None) -> DescriptorNet:
    return DescriptorNet(cfg)

