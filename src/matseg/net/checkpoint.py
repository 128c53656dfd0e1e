"""Model weights as safetensors with the architecture in the file's metadata.

One ``.safetensors`` file is all inference needs: the tensors plus, in the header metadata,
the architecture (``"architecture"``: ``"descriptor"`` = :class:`~matseg.net.model.DescriptorNet`,
the default for files without the key; ``"reference"`` = the authors' net,
:class:`~matseg.net.reference.ReferenceNet`), its options as JSON ``model_config`` (the
:class:`~matseg.net.model.ModelConfig`, or ``{"channel_order": ...}``) and free-form JSON
``extra`` (training step, validation score, matseg version). Nothing is unpickled when loading.

The authors' own checkpoint (``Defult.torch``, a pickled state dict of their ``Desnet.Net``) is
read by :func:`load_reference_checkpoint` (``torch.load`` with ``weights_only=True``);
``matseg convert`` turns it into our format.
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
from matseg.net.reference import CHANNEL_ORDERS, CLASSIFIER_PREFIX, ReferenceNet

FORMAT = "matseg-descriptor-net"
ARCHITECTURES = ("descriptor", "reference")
# Files read as the authors' pickled state dict rather than as safetensors.
REFERENCE_SUFFIXES = (".torch", ".pt", ".pth")
# Where training scripts commonly nest the state dict inside a saved dict.
NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


class CheckpointError(ValueError):
    """A weights file is missing, unreadable or not a matseg descriptor-net checkpoint."""


def save_weights(path: str | os.PathLike, model: DescriptorNet | ReferenceNet, extra: dict | None = None) -> Path:
    """Write ``model``'s weights and architecture to ``path`` (atomically: temporary file, then rename)."""
    from safetensors.torch import save

    from matseg.io.atomic import write_bytes_atomic

    path = Path(path)
    model = getattr(model, "module", model)  # unwrap DDP
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    reference = isinstance(model, ReferenceNet)
    metadata = {
        "format": FORMAT,
        "architecture": "reference" if reference else "descriptor",
        "matseg_version": matseg.__version__,
        "model_config": json.dumps(model.options() if reference else asdict(model.cfg)),
        "extra": json.dumps(extra or {}, default=str),
    }
    # Through our atomic writer: safetensors' save_file makes 0600 files, which a cluster's other
    # users cannot load; ours honour the umask. The bytes in memory are the size of the weights.
    write_bytes_atomic(path, save(state, metadata=metadata))
    return path


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata of a weights file: ``{"architecture": str, "model_config": dict, "extra": dict, ...}``."""
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
    meta.setdefault("architecture", "descriptor")  # files written before the reference architecture existed
    if meta["architecture"] not in ARCHITECTURES:
        known = ", ".join(ARCHITECTURES)
        raise CheckpointError(f"{path}: unknown architecture {meta['architecture']!r} (known: {known})")
    return meta


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> DescriptorNet | ReferenceNet:
    """Build the net described by the file's metadata and load its weights (eval mode).

    A ``.torch``/``.pt``/``.pth`` file is taken for the authors' checkpoint (:func:`load_reference_checkpoint`).
    """
    from safetensors.torch import load_file

    if Path(path).suffix.lower() in REFERENCE_SUFFIXES:
        return load_reference_checkpoint(path).to(device)
    meta = read_metadata(path)
    if meta["architecture"] == "reference":
        options = meta["model_config"] if isinstance(meta["model_config"], dict) else {}
        channel_order = options.get("channel_order", "rgb")
        if channel_order not in CHANNEL_ORDERS:
            known = ", ".join(CHANNEL_ORDERS)
            raise CheckpointError(f"{path}: bad channel_order {channel_order!r} in metadata (known: {known})")
        return _load_reference_state(path, load_file(str(path), device="cpu"), channel_order).to(device)
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


def load_reference_checkpoint(path: str | os.PathLike, channel_order: str = "rgb") -> ReferenceNet:
    """The authors' trained net (their ``logs/Defult.torch``) as a :class:`ReferenceNet` in eval mode.

    Args:
        path: a ``torch.save``'d state dict of their ``Desnet.Net`` (also accepted: nested under one of
            ``state_dict``/``model_state_dict``/``model``/``net``/``weights``, or with DataParallel's
            ``module.`` prefix). The ConvNeXt ImageNet classifier keys, unused by the net, are dropped.
        channel_order: see :class:`ReferenceNet`.

    Raises:
        CheckpointError: the file is missing or unreadable, or its keys or shapes are not exactly those of
            the authors' net (the message lists the missing and unexpected keys and the shape mismatches).
    """
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and weights_only refusals all land here
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({str(exc)[:300]})") from None
    state = _find_state_dict(obj)
    if state is None:
        what = f"a dict with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path}: no state dict of tensors found (the file holds {what})")
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIX)}
    return _load_reference_state(path, state, channel_order)


def _find_state_dict(obj) -> dict[str, torch.Tensor] | None:
    if not isinstance(obj, dict):
        return None
    if obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        return obj
    for key in NESTED_STATE_KEYS:
        found = _find_state_dict(obj.get(key))
        if found is not None:
            return found
    return None


def _load_reference_state(path, state: dict[str, torch.Tensor], channel_order: str) -> ReferenceNet:
    """A :class:`ReferenceNet` holding ``state`` (strict: same keys and shapes), eval mode, float32."""
    # Built without memory or initialisation (ConvNeXt-B: 132 M parameters, seconds of random init);
    # every tensor is then replaced by the file's.
    with torch.device("meta"):
        model = ReferenceNet(channel_order)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} {list(state[k].shape)} (net: {list(shape)})"
                  for k, shape in expected.items() if k in state and tuple(state[k].shape) != shape]  # fmt: skip
    listed = {"missing keys": missing, "unexpected keys": unexpected, "shape mismatches": mismatched}
    problems = [f"{len(names)} {what}: {', '.join(names[:5])}{', ...' if len(names) > 5 else ''}"
                for what, names in listed.items() if names]  # fmt: skip
    if problems:
        raise CheckpointError(f"{path}: not a checkpoint of the authors' net (Desnet.Net): {'; '.join(problems)}")
    # Float32 tensors whatever the file holds (an fp16 file would otherwise make an fp16 net). BatchNorm's
    # counters back to integers: the reference's module.type(FloatTensor) turns them into floats.
    state = {k: v.long() if k.endswith("num_batches_tracked") else v.float() if v.is_floating_point() else v
             for k, v in state.items()}  # fmt: skip
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()
