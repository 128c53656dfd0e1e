"""Trained descriptor nets that ship inside the package, and their registry.

``models.json`` next to this file names the default model and, per model version, its weights
file, sha256, size, encoder, the input side it is used at by default (``input_side``: the longer
image side ``Predictor`` resizes to when not told) and training summary (docs/model-card.md
describes each one)::

    {"default": "matseg-lite0-2026.12.4",
     "models": {"matseg-lite0-2026.12.4": {"file": "matseg-lite0-2026.12.4.safetensors",
                                          "sha256": "...", "bytes": 13456789, ...}}}

Weights are fp16 safetensors with the model config in their metadata (``matseg.net.checkpoint``);
they load into a float32 net. The folder can be replaced with ``MATSEG_MODELS_DIR`` (a folder
with its own ``models.json``), e.g. to try a new model before it ships.

This module reads files only (no torch): ``matseg.net`` builds the net from the path it returns.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from matseg.io.hashing import sha256_file

REGISTRY_NAME = "models.json"
ENV_DIR = "MATSEG_MODELS_DIR"


class ModelNotAvailable(LookupError):
    """The requested shipped model is not registered, or its file is missing or damaged."""


def models_dir() -> Path:
    """The folder of shipped models: ``$MATSEG_MODELS_DIR`` when set, else this package's folder."""
    return Path(os.environ.get(ENV_DIR) or Path(__file__).parent)


def registry(folder: str | os.PathLike | None = None) -> dict:
    """The parsed ``models.json`` (``{"default": name or None, "models": {...}}``; empty if absent)."""
    path = Path(folder or models_dir()) / REGISTRY_NAME
    if not path.is_file():
        return {"default": None, "models": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotAvailable(f"{path}: unreadable model registry ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("models", {}), dict):
        raise ModelNotAvailable(f"{path}: expected {{'default': ..., 'models': {{...}}}}")
    data.setdefault("models", {})
    data.setdefault("default", None)
    return data


def model_info(name: str | None = None, folder: str | os.PathLike | None = None) -> dict:
    """The registry entry of model ``name`` (default: the default model), plus ``name`` and ``path``.

    Raises:
        ModelNotAvailable: no such model (the message lists the registered ones), or no default.
    """
    folder = Path(folder or models_dir())
    reg = registry(folder)
    name = name or reg["default"]
    if not name:
        raise ModelNotAvailable(
            f"no default model is registered in {folder / REGISTRY_NAME}: pass a trained net with --weights FILE.safetensors"
        )
    if name not in reg["models"]:
        known = ", ".join(sorted(reg["models"])) or "none"
        raise ModelNotAvailable(f"model {name!r} is not registered in {folder / REGISTRY_NAME} (registered: {known})")
    info = dict(reg["models"][name])
    return {**info, "name": name, "path": str(folder / info["file"])}


def verify(name: str | None = None, folder: str | os.PathLike | None = None) -> dict:
    """:func:`model_info` after checking that the file exists and has the recorded sha256.

    Raises:
        ModelNotAvailable: missing file or sha256 mismatch (both name the file).
    """
    info = model_info(name, folder)
    path = Path(info["path"])
    if not path.is_file():
        raise ModelNotAvailable(f"{path}: the weights of model {info['name']!r} are missing (reinstall matseg, or pass --weights)")
    actual = sha256_file(path)
    if actual != info["sha256"]:
        raise ModelNotAvailable(f"{path}: sha256 {actual} does not match the registered {info['sha256']} (damaged file: reinstall matseg)")
    return info


def default_weights_path() -> Path:
    """Path of the default model's weights, verified (see :func:`verify`)."""
    return Path(verify()["path"])
