"""Segment Anything (SAM) as a point-conditioned predictor (paper §5, Tables 1-2).

Needs the ``segment-anything`` package (``pip install 'matseg[sam]'``) and a checkpoint file the
user downloads (``sam_vit_h_4b8939.pth``, ``sam_vit_l_0b3195.pth`` or ``sam_vit_b_01ec64.pth``
from the segment-anything repository). The checkpoint is read with
``torch.load(weights_only=True)``: tensors only, no code. torch and segment_anything are imported
only when the predictor is created.

The similarity map is the sigmoid of SAM's mask logits for the prompt: with one point SAM's
three candidate masks are requested and the one with the highest predicted IoU is used; with
more points a single mask. ``points`` = 1, 2, 4 or 8 prompt points, half positive and half
negative (1 = one positive), as in the paper.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from matseg.evaluate.predictors import PointPredictor, PredictorUnavailable, check_image, register_predictor

__all__ = ["SamPredictorAdapter", "guess_model_type"]

MODEL_TYPES = ("vit_h", "vit_l", "vit_b")
INSTALL_HINT = "pip install 'matseg[sam]' (segment-anything + torchvision)"


def guess_model_type(checkpoint: str | Path) -> str:
    """``vit_h``/``vit_l``/``vit_b`` from a checkpoint file name such as ``sam_vit_b_01ec64.pth``."""
    match = re.search(r"vit_([hlb])", Path(checkpoint).name.lower())
    if not match:
        raise ValueError(f"cannot tell the SAM model type from {Path(checkpoint).name!r}; pass model_type=vit_h|vit_l|vit_b")
    return f"vit_{match.group(1)}"


def _import_segment_anything():
    try:
        import segment_anything  # noqa: F401
    except ImportError as exc:
        raise PredictorUnavailable(f"the 'sam' predictor needs the segment-anything package ({exc}); {INSTALL_HINT}") from None
    return segment_anything


@register_predictor("sam")
class SamPredictorAdapter(PointPredictor):
    """Segment Anything with 1/2/4/8 prompt points (half positive, half negative); needs checkpoint=PATH."""

    def __init__(self, checkpoint: str, points: int = 1, model_type: str = "auto", device: str = "auto"):
        points = int(points)
        if points < 1:
            raise ValueError(f"points must be >= 1 (the paper uses 1, 2, 4, 8), got {points}")
        self.num_points = points
        self.checkpoint = Path(checkpoint).expanduser()
        self.model_type = guess_model_type(self.checkpoint) if model_type == "auto" else model_type
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type must be auto or one of {', '.join(MODEL_TYPES)}, got {model_type!r}")
        sam_pkg = _import_segment_anything()
        if not self.checkpoint.is_file():
            raise PredictorUnavailable(f"{self.checkpoint}: SAM checkpoint not found (download it from the segment-anything repository)")
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        model = sam_pkg.sam_model_registry[self.model_type](checkpoint=None)
        try:
            state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as exc:  # corrupt file, wrong model type, pickled code refused
            raise PredictorUnavailable(f"{self.checkpoint}: not a {self.model_type} SAM checkpoint ({exc})") from None
        model.to(device).eval()
        self._predictor = sam_pkg.SamPredictor(model)
        self._shape: tuple[int, int] | None = None

    def params(self) -> dict:
        return {"checkpoint": self.checkpoint.name, "model_type": self.model_type, "points": self.num_points}

    def set_image(self, image: np.ndarray) -> None:
        check_image(image)
        import torch

        with torch.inference_mode():
            self._predictor.set_image(image, image_format="RGB")
        self._shape = image.shape[:2]

    def similarity(self, positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
        if self._shape is None:
            raise RuntimeError("call set_image() before similarity()")
        positive = np.asarray(positive, dtype=np.float32).reshape(-1, 2)
        negative = np.asarray(negative, dtype=np.float32).reshape(-1, 2)
        if positive.shape[0] < 1:
            raise ValueError("SAM needs at least one positive point")
        coords = np.concatenate([positive, negative])
        labels = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))]).astype(np.int32)
        import torch

        multimask = len(coords) == 1  # SAM's own advice: 3 candidates for an ambiguous single click
        with torch.inference_mode():
            logits, scores, _ = self._predictor.predict(
                point_coords=coords, point_labels=labels, multimask_output=multimask, return_logits=True
            )
        best = np.asarray(logits[int(np.argmax(scores))], dtype=np.float32)
        return (1.0 / (1.0 + np.exp(-np.clip(best, -30, 30)))).astype(np.float32)
