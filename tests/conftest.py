"""Shared fixtures: paths to the read-only reference data in ../shared and small made-up inputs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_dir(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"reference data {path} not available (expected ../shared next to the checkout)")
    return path


@pytest.fixture
def natural_images() -> Path:
    return shared_dir("natural_images")


@pytest.fixture
def shared_textures() -> Path:
    return shared_dir("textures")


@pytest.fixture
def train_sample() -> Path:
    return shared_dir("matseg_train_sample")


# Made here with pillow-heif 1.9.0 from tests/io/test_images.py's _bands() (three vertical bands,
# red, green, blue, 48 x 32): HEIF quality 90, EXIF orientation 6, which the encoder stores as a
# HEIF rotation (so a reader must turn it upright exactly once). 809 bytes.
HEIC_PHOTO = Path(__file__).parent / "io" / "data" / "three_bands_rot6.heic"


def needs_heif_plugin() -> None:
    """Skip unless a HEIF plugin for Pillow (the heif extra's pi-heif, or pillow-heif) is installed."""
    import importlib.util

    if not any(importlib.util.find_spec(name) for name in ("pi_heif", "pillow_heif")):
        pytest.skip("HEIC needs the heif extra (pip install 'matseg[heif]')")


def make_photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A photo-like RGB uint8 image: smooth random blobs plus noise (so every channel has structure)."""
    import cv2

    small = rng.integers(0, 256, size=(max(2, h // 32), max(2, w // 32), 3)).astype(np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    img += rng.integers(-12, 13, size=img.shape).astype(np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def photo_maker():
    """``make_photo(rng, h, w)`` for tests that build their own input folders."""
    return make_photo


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    """Four small made-up photos (PNG) in a folder."""
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(7)
    for i, (h, w) in enumerate([(300, 420), (360, 360), (250, 500), (480, 320)]):
        Image.fromarray(make_photo(rng, h, w)).save(folder / f"photo{i}.png")
    return folder


# Keys of meta.json that legitimately differ between two runs of the same seed.
VOLATILE_META_KEYS = ("timing", "memory")


def output_digest(root: Path) -> dict[str, str]:
    """sha256 of every file inside every finished output folder (one holding ``Finished.txt``)
    below ``root``, keyed by relative path; meta.json without its volatile keys. Two runs with
    the same seed must give equal digests; folders set aside (``.incomplete/``) are left out."""
    digest = {}
    for marker in sorted(Path(root).rglob("Finished.txt")):
        folder = marker.parent
        if ".incomplete" in folder.relative_to(root).parts:
            continue
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            data = f.read_bytes()
            if f.name == "meta.json":
                meta = json.loads(data)
                for key in VOLATILE_META_KEYS:
                    meta.pop(key, None)
                data = json.dumps(meta, sort_keys=True).encode()
            digest[f.relative_to(root).as_posix()] = hashlib.sha256(data).hexdigest()
    return digest


@pytest.fixture(name="output_digest")
def output_digest_fixture():
    """``output_digest(root)``: see :func:`output_digest`."""
    return output_digest
