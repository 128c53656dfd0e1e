"""Layers shared by the encoders and the decoder.

``conv_bn`` runs a convolution and the batch norm after it; when the batch norm uses its running
statistics (eval mode: inference, frozen encoder layers, teacher passes) it folds the batch norm
into the convolution's weights and bias, so one convolution does both. An eval-mode batch norm
is a full extra pass over the activations: on a 2-core CPU the frozen encoder of a training
batch (channels-last, fp32) runs 1.8x faster folded (docs/benchmarks.md). The fold is
recomputed at every call (a few hundred floats per layer), so it can never go stale after
``load_state_dict``, ``.to()`` or a fine-tune step.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``bn(conv(x))``, as one convolution when ``bn`` normalises with its running statistics.

    Args:
        conv: the convolution (its ``_conv_forward`` does any padding of its own, e.g.
            ``Conv2dSame``); with or without a bias.
        bn: the batch norm of ``conv``'s output channels (affine or not).
        x: (B, C_in, H, W) input of ``conv``, any float dtype.

    Returns:
        (B, C_out, H', W'), equal to ``bn(conv(x))`` up to float rounding (about 1e-6 relative in
        fp32). Gradients reach ``conv``'s and ``bn``'s parameters through the fold as well.
    """
    if bn.training or bn.running_var is None:  # batch statistics: batch norm's own rule in eval mode
        return bn(conv(x))
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    bias = -bn.running_mean * scale
    if bn.bias is not None:
        bias = bias + bn.bias
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return conv._conv_forward(x, conv.weight * scale.reshape(-1, 1, 1, 1), bias)


class ConvBnAct(nn.Sequential):
    """Convolution, batch norm, activation: an ``nn.Sequential`` (same state-dict keys ``0.*``,
    ``1.*``) whose forward folds the batch norm in eval mode (:func:`conv_bn`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, bn, *rest = self
        x = conv_bn(conv, bn, x)
        for layer in rest:
            x = layer(x)
        return x
