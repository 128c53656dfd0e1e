"""Helpers for the evaluation tests: small benchmark folders and mask datasets written in tmp."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def two_colour_image(h: int = 120, w: int = 160, split: int | None = None) -> np.ndarray:
    """Left part red-ish, right part blue-ish, with mild noise: a two-material image."""
    rng = np.random.default_rng(3)
    split = w // 2 if split is None else split
    img = np.empty((h, w, 3), dtype=np.int16)
    img[:, :split] = (200, 60, 50)
    img[:, split:] = (40, 70, 190)
    img += rng.integers(-8, 9, size=img.shape).astype(np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_benchmark_image(
    root: Path,
    name: str,
    image: np.ndarray | None,
    data: object,
    fmt: str = "json",
    relations: str | None = None,
    exif_orientation: int | None = None,
) -> Path:
    """Write ``root/images/<name>.png`` (or .jpg with EXIF) and ``root/data/<name>/`` in the benchmark layout."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    folder = root / "data" / name
    folder.mkdir(parents=True, exist_ok=True)
    if image is not None:
        pil = Image.fromarray(image)
        if exif_orientation is None:
            pil.save(root / "images" / f"{name}.png")
        else:
            exif = Image.Exif()
            exif[0x0112] = exif_orientation
            pil.save(root / "images" / f"{name}.jpg", quality=95, exif=exif)
    if fmt in ("json", "both"):
        (folder / "data.json").write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    if fmt in ("pkl", "both"):
        (folder / "data.pkl").write_bytes(pickle.dumps(data))
    if relations is not None:
        (folder / "group_relations.txt").write_text(relations, encoding="utf-8")
    return folder


def two_material_points(h: int = 120, w: int = 160) -> dict:
    """Points of material "1" on the left half and "2" on the right half of :func:`two_colour_image`."""
    left = [[w // 8, h // 4, 6], [w // 4, h // 2, 6], [w // 6, 3 * h // 4, 5]]
    right = [[5 * w // 8, h // 4, 6], [3 * w // 4, h // 2, 6], [7 * w // 8, 3 * h // 4, 5], [5 * w // 8, 3 * h // 4, 4]]
    return {"1": {"pt_im": left, "pt_pg": [[x // 4, y // 4, r // 4] for x, y, r in left]}, "2": {"pt_im": right}}


@pytest.fixture
def benchmark_sample() -> Path:
    path = SHARED / "benchmark_sample"
    if not path.is_dir():
        pytest.skip(f"reference data {path} not available")
    return path


@pytest.fixture(scope="session")
def synth_masks(tmp_path_factory) -> Path:
    """A tiny synth2d dataset (3 small scenes) in the MatSeg format, made once per session."""
    from matseg.cli import main

    out = tmp_path_factory.mktemp("synth") / "synth"
    rc = main(["synth2d", "-n", "3", "-o", str(out), "-w", "1", "--no-progress", "--seed", "5",
               "--set", "scene.size_min=120", "--set", "scene.size_max=180", "--set", "scene.materials_max=3"])  # fmt: skip
    assert rc == 0
    return out


@pytest.fixture
def bench():
    """The helpers above, for test modules (importlib import mode cannot import conftest)."""
    return SimpleNamespace(image=two_colour_image, points=two_material_points, write=write_benchmark_image)
