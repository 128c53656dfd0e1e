"""Every output honours the umask like a normally created file (0644 / 0755 under umask 022), so
datasets and models can be shared; the atomic writers used to leave 0600 files (mkstemp)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from matseg.io.atomic import write_bytes_atomic, write_folder, write_json_atomic, write_text_atomic
from matseg.io.images import write_image


@pytest.fixture(params=[0o022, 0o027], ids=["umask022", "umask027"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_modes(paths, umask: int) -> None:
    """Files 0o666 & ~umask, folders 0o777 & ~umask (e.g. 0644/0755, or 0640/0750 under 027)."""
    paths = list(paths)
    assert paths
    wrong = {
        str(p): oct(_mode(p))
        for p in paths
        if _mode(p) != (0o777 if p.is_dir() else 0o666) & ~umask
    }  # fmt: skip
    assert not wrong, f"expected files {oct(0o666 & ~umask)}, folders {oct(0o777 & ~umask)}"


def test_atomic_file_writers(tmp_path, umask):
    write_bytes_atomic(tmp_path / "a.bin", b"x")
    write_text_atomic(tmp_path / "sub" / "config.yaml", "a: 1\n")
    write_json_atomic(tmp_path / "summary.json", {"done": 1})
    write_json_atomic(tmp_path / "summary.json", {"done": 2})  # replacing an existing file
    write_image(tmp_path / "i.png", np.zeros((4, 4, 3), np.uint8))
    assert_modes(tmp_path.rglob("*"), umask)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.bin", "config.yaml", "i.png", "sub", "summary.json"]


def test_write_folder(tmp_path, umask):
    folder = write_folder(tmp_path / "000001", {"RGB__RGB.jpg": b"1", "masks/mask001.png": b"2"})
    assert_modes([folder, *folder.rglob("*")], umask)


def test_synth2d_run(tmp_path, umask):
    from matseg.cli import main

    out = tmp_path / "out"
    small = ["--set", "scene.size_min=96", "--set", "scene.size_max=160"]
    assert main(["synth2d", "--no-progress", "-n", "2", "-w", "2", "-o", str(out), *small]) == 0
    files = {p.relative_to(out).as_posix() for p in out.rglob("*")}
    assert {"config.yaml", "summary.json", "000000", "000001/RGB__RGB.jpg", "000001/meta.json"} <= files
    assert_modes([out, *out.rglob("*")], umask)


def test_checkpoint_and_predict_outputs(tmp_path, umask):
    pytest.importorskip("torch", reason="needs the torch extra")
    pytest.importorskip("safetensors", reason="needs the torch extra")
    from matseg.net.checkpoint import save_weights
    from matseg.net.infer import save_similarity_outputs
    from matseg.net.model import DescriptorNet, ModelConfig

    net = DescriptorNet(ModelConfig(pretrained=False, descriptor_dim=16, decoder_channels=[32, 16, 16], psp_channels=8))
    weights = save_weights(tmp_path / "run" / "last.safetensors", net)
    image = np.zeros((8, 8, 3), np.uint8)
    outputs = save_similarity_outputs(tmp_path / "pred", "img_p0", image, np.zeros((8, 8), np.float32), (2.0, 3.0))
    assert_modes([weights, *outputs], umask)
