from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from matseg.app.browse import folder_kind, list_items, sample_details, sample_layer, thumbnail
from matseg.app.roots import OutsideRoot
from matseg.io.dataset import read_sample
from tests.conftest import shared_dir


def _decode(data: bytes) -> np.ndarray:
    import cv2

    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def test_published_samples_browse():
    root = shared_dir("matseg_train_sample").resolve()
    assert folder_kind(root) == "dataset"
    items = list_items(root, "dataset")
    assert items[:3] == ["0", "1", "1/1"]  # nested samples (the published 1/1) included
    assert sample_details(root, "1/1")["name"] == "1/1"
    details = sample_details(root, "0")
    sample = read_sample(root / "0")
    assert details["source"] == "published" and len(details["masks"]) == sample.num_materials
    assert details["check"]["ok"] is True
    mask = _decode(sample_layer(root, "0", "mask0"))
    assert mask.shape == sample.size and abs(mask.mean() / 255 - details["masks"][0]["coverage"]) < 0.01
    assert _decode(sample_layer(root, "0", "annotation")).shape == (*sample.size, 3)
    assert max(_decode(thumbnail(root, "dataset", "0")).shape[:2]) == 256
    with pytest.raises(ValueError, match="mask0..mask"):
        sample_layer(root, "0", "mask99")
    with pytest.raises(OutsideRoot):
        sample_details(root, "../benchmark_sample")


def test_pbr_and_texture_folders():
    pbr = shared_dir("pbr").resolve()
    assert folder_kind(pbr) == "pbr"
    first = list_items(pbr, "pbr")[0]
    assert _decode(thumbnail(pbr, "pbr", first)).ndim == 3
    textures = shared_dir("textures").resolve()
    assert folder_kind(textures) == "textures"
    assert list_items(textures, "textures")


def test_empty_folder(tmp_path: Path):
    assert folder_kind(tmp_path) == "empty" and list_items(tmp_path, "empty") == []


def test_shard_folders_browse_like_folders(tmp_path: Path):
    from matseg.io.shards import pack

    published = shared_dir("matseg_train_sample").resolve()
    pack(published, tmp_path / "shards", samples_per_shard=4)
    shards = (tmp_path / "shards").resolve()
    assert folder_kind(shards) == "dataset"
    assert list_items(shards, "dataset") == list_items(published, "dataset")
    assert sample_details(shards, "1/1")["masks"] == sample_details(published, "1/1")["masks"]
    assert sample_layer(shards, "2", "mask1") == sample_layer(published, "2", "mask1")
    assert _decode(thumbnail(shards, "dataset", "0")).shape == _decode(thumbnail(published, "dataset", "0")).shape
    with pytest.raises(FileNotFoundError, match="no such sample"):
        sample_details(shards, "../etc")
    # Repacked with fewer samples: lookups follow the new index.json (no stale cached sample).
    import shutil

    subset = tmp_path / "subset"
    shutil.copytree(published / "2", subset / "2")
    shutil.rmtree(shards)
    pack(subset, shards, samples_per_shard=4)
    assert sample_layer(shards, "2", "mask1") == sample_layer(published, "2", "mask1")
    with pytest.raises(FileNotFoundError, match="no such sample"):
        sample_details(shards, "1/1")
