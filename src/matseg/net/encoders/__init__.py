"""Registry of pretrained encoders (an open set, hence a registry).

``create_encoder(name, pretrained=True)`` returns an ``nn.Module`` with
``forward_features(x) -> list of feature maps`` (strides in ``feature_strides``, channels in
``feature_channels``) and a ``normalize(images_0_255)`` static method for its input range.
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


def create_encoder(name: str, pretrained: bool = True):
    """Build encoder ``name``; an unknown name is an error listing the valid ones."""
    if name not in _ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; available: {', '.join(available_encoders())}")
    return _ENCODERS[name](pretrained=pretrained)


@register_encoder("efficientnet_lite0")
def _efficientnet_lite0(pretrained: bool = True):
    from matseg.net.encoders.efficientnet_lite import efficientnet_lite0, normalize_rgb

    model = efficientnet_lite0(pretrained=pretrained).drop_classifier()
    model.normalize = normalize_rgb
    return model
