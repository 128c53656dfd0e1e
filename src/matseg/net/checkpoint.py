"""Model weights as safetensors with the architecture in the file's metadata.

One ``.safetensors`` file is all inference needs: the tensors plus, in the header metadata,
the :class:`~matseg.net.model.ModelConfig` (JSON) and free-form JSON ``extra`` (training step,
validation score, matseg version). Nothing is unpickled when loading.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch

import matseg
from matseg.config import ConfigError, from_dict
from matseg.net.model import DescriptorNet, ModelConfig

FORMAT = "matseg-descriptor-net"


class CheckpointError(ValueError):
    """A weights file is missing, unreadable or not a matseg descriptor-net checkpoint."""


def save_weights(path: str | os.PathLike, model: DescriptorNet, extra: dict | None = None) -> Path:
    """Write ``model``'s weights and config to ``path`` (atomically: temporary file, then rename)."""
    from safetensors.torch import save

    from matseg.io.atomic import write_bytes_atomic

    path = Path(path)
    model = getattr(model, "module", model)  # unwrap DDP
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "matseg_version": matseg.__version__,
        "model_config": json.dumps(asdict(model.cfg)),
        "extra": json.dumps(extra or {}, default=str),
    }
    # Through our atomic writer: safetensors' save_file makes 0600 files, which a cluster's other
    # users cannot load; ours honour the umask. The bytes in memory are the size of the weights.
    write_bytes_atomic(path, save(state, metadata=metadata))
    return path


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata of a weights file: ``{"model_config": dict, "extra": dict, ...}``."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a matseg descriptor-net checkpoint (format={meta.get('format')!r})")
    meta["model_config"] = json.loads(meta["model_config"])
    meta["extra"] = json.loads(meta.get("extra", "{}"))
    return meta


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> DescriptorNet:
    """Build the net described by the file's metadata and load its weights (eval mode)."""
    from safetensors.torch import load_file

    meta = read_metadata(path)
    try:
        cfg = from_dict(ModelConfig, {**meta["model_config"], "pretrained": False})
    except ConfigError as exc:
        raise CheckpointError(f"{path}: bad model config in metadata ({exc})") from None
    model = DescriptorNet(cfg)
    state = load_file(str(path), device="cpu")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the model config ({str(exc)[:300]})") from None
    return model.to(device).eval()
