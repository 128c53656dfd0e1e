"""Fixtures of the app tests: a two-texture photo, a copy of the published benchmark sample,
an eval output folder, and the app itself (Flask test client)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shared_dir


def two_texture_photo() -> np.ndarray:
    """(256, 512, 3) uint8: scikit-image's brick photo on the left, its grass photo on the right."""
    import skimage.data

    def rgb(a: np.ndarray) -> np.ndarray:
        return np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a

    return np.ascontiguousarray(np.hstack([rgb(skimage.data.brick())[:256, :256], rgb(skimage.data.grass())[:256, :256]]))


@pytest.fixture
def bench_copy(tmp_path: Path) -> Path:
    """A writable copy of ../shared/data/benchmark_sample (the published layout)."""
    dst = tmp_path / "bench"
    shutil.copytree(shared_dir("benchmark_sample"), dst)
    return dst


@pytest.fixture
def eval_folder(tmp_path: Path) -> Path:
    """``matseg eval matseg-bench`` output of the colour baseline on the published sample."""
    from matseg.cli import main

    out = tmp_path / "results" / "colour"
    assert main(["eval", "matseg-bench", str(shared_dir("benchmark_sample")), "--predictor", "colour", "-o", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    return out.parent
