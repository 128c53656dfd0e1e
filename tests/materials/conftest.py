"""Helpers shared by the materials tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest


def material_digest(root: Path) -> dict[str, str]:
    """sha256 of every file of every finished material folder under ``root``; meta.json without
    its (volatile) timing."""
    digest = {}
    for marker in sorted(root.rglob("Finished.txt")):
        for f in sorted(marker.parent.iterdir()):
            data = f.read_bytes()
            if f.name == "meta.json":
                meta = json.loads(data)
                meta.pop("timing")
                data = json.dumps(meta, sort_keys=True).encode()
            digest[f"{marker.parent.relative_to(root).as_posix()}/{f.name}"] = hashlib.sha256(data).hexdigest()
    return digest


@pytest.fixture
def digest():
    """``digest(root)``: see :func:`material_digest`."""
    return material_digest
