"""End-to-end tests of `matseg synth2d`: determinism across workers, resume after SIGKILL, bad inputs."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matseg.cli import main
from matseg.io.dataset import find_samples, read_sample

SMALL = ["--set", "scene.size_min=96", "--set", "scene.size_max=160"]


def _run(*args: str) -> int:
    return main(["synth2d", "--no-progress", *args])


def test_same_seed_same_bytes_for_one_and_two_workers(tmp_path, output_digest):
    assert _run("-n", "8", "-o", str(tmp_path / "a"), "-w", "1", *SMALL) == 0
    assert _run("-n", "8", "-o", str(tmp_path / "b"), "-w", "2", *SMALL) == 0
    a, b = output_digest(tmp_path / "a"), output_digest(tmp_path / "b")
    assert len(find_samples(tmp_path / "a")) == 8 and a == b
    assert _run("-n", "8", "-o", str(tmp_path / "c"), "-w", "1", "--seed", "1", *SMALL) == 0
    assert output_digest(tmp_path / "c") != a


def test_output_is_readable_checked_and_recorded(tmp_path, output_digest):
    out = tmp_path / "out"
    assert _run("-n", "3", "-o", str(out), "-w", "1", "--seed", "5", *SMALL) == 0
    assert main(["check", str(out)]) == 0
    cfg = (out / "config.yaml").read_text()
    assert "seed: 5" in cfg and "p_hard: 0.55" in cfg
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done"] == 3 and summary["failed"] == []
    sample = read_sample(out / "000001")
    assert sample.meta["master_seed"] == 5 and sample.meta["index"] == 1
    assert sample.meta["scene"]["num_materials"] == sample.fractions.shape[0]
    assert np.allclose(sample.fractions.sum(0)[sample.roi], 1, atol=1e-5)
    # A rerun skips every finished sample and leaves them untouched.
    before = output_digest(out)
    assert _run("-n", "3", "-o", str(out), "-w", "1", "--seed", "5", *SMALL) == 0
    assert json.loads((out / "summary.json").read_text())["skipped"] == 3
    assert output_digest(out) == before


def test_resume_after_sigkill_gives_the_uninterrupted_dataset(tmp_path, output_digest):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    cmd = [sys.executable, "-m", "matseg", "synth2d", "--no-progress", "-n", "30", "-w", "2", *SMALL]
    proc = subprocess.Popen([*cmd, "-o", str(killed)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline and (not killed.exists() or len(find_samples(killed)) < 4):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, mid-write
    proc.wait()
    partial = len(find_samples(killed))
    assert 0 < partial < 30, "the kill should land mid-run"
    assert subprocess.run([*cmd, "-o", str(killed)], capture_output=True).returncode == 0
    assert subprocess.run([*cmd, "-o", str(clean)], capture_output=True).returncode == 0
    assert output_digest(killed) == output_digest(clean)
    assert not [p for p in killed.iterdir() if p.name.startswith(".tmp-")]


def test_different_config_into_same_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    assert _run("-n", "2", "-o", str(out), "-w", "1", *SMALL) == 0
    assert _run("-n", "2", "-o", str(out), "-w", "1", *SMALL, "--set", "scene.p_hard=0.2") == 2
    assert "scene.p_hard" in capsys.readouterr().err
    # More scenes with the same config is fine (extends the dataset).
    assert _run("-n", "4", "-o", str(out), "-w", "1", *SMALL) == 0
    assert len(find_samples(out)) == 4


def _awkward_photos(folder: Path, make_photo) -> dict[str, str]:
    rng = np.random.default_rng(0)
    folder.mkdir()

    def photo(h, w):
        return make_photo(rng, h, w)

    Image.fromarray(photo(300, 400)).save(folder / "rgb.jpg", quality=90)
    Image.fromarray(photo(260, 380)[:, :, 0], "L").save(folder / "gray.png")
    Image.fromarray(np.dstack([photo(280, 300), np.full((280, 300), 128, np.uint8)]), "RGBA").save(folder / "rgba.png")
    Image.fromarray(photo(240, 330)).convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.png")
    Image.fromarray((photo(250, 250)[:, :, 1].astype(np.uint16) * 257)).save(folder / "deep16.png")
    exif_img = Image.fromarray(photo(200, 420))
    exif = exif_img.getexif()
    exif[0x0112] = 6
    exif_img.save(folder / "rotated.jpg", exif=exif)
    Image.fromarray(photo(40, 50)).save(folder / "tiny.png")  # smaller than any scene
    (folder / "corrupt.jpg").write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    (folder / "notes.txt").write_text("not an image, not an image extension: ignored")
    full = (folder / "rgb.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(full[: len(full) // 4])
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_awkward_inputs_are_used_or_reported_and_never_modified(tmp_path, capsys, photo_maker):
    photos_dir = tmp_path / "photos"
    before = _awkward_photos(photos_dir, photo_maker)
    out = tmp_path / "out"
    rc = _run("-n", "12", "-o", str(out), "-w", "1", "--images", str(photos_dir), *SMALL)
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "corrupt.jpg" in err  # rejected at the scan, named
    summary = json.loads((out / "summary.json").read_text())
    assert str(photos_dir / "corrupt.jpg") in summary["bad_inputs"]
    # The truncated file passes the header scan; scenes that draw it redraw and say so.
    assert any("truncated.jpg" in w for w in summary["warnings"])
    assert summary["done"] == 12
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in photos_dir.iterdir()}
    assert after == before and sorted(p.name for p in photos_dir.iterdir()) == sorted(before)
    used = {m["source"] for s in find_samples(out) for m in read_sample(s).meta["scene"]["pattern"]["maps"]}
    assert {"gray.png", "rgba.png", "palette.png", "deep16.png", "rotated.jpg"} & used


def test_empty_input_folder_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert _run("-n", "1", "-o", str(tmp_path / "out"), "--images", str(tmp_path / "empty")) == 2
    err = capsys.readouterr().err
    assert "empty" in err and "no usable natural images" in err


def test_missing_input_folder_is_a_clear_error(tmp_path, capsys):
    assert _run("-n", "1", "-o", str(tmp_path / "out"), "--textures", str(tmp_path / "nope")) == 2
    assert "nope: no such folder or file list" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; permission bits do not apply")
def test_unwritable_output_is_a_clear_error(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert _run("-n", "1", "-o", str(locked / "out")) == 2
        assert "not writable" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)


def test_output_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    # Works as root too: a regular file where the output folder should be.
    target = tmp_path / "file"
    target.write_text("x")
    assert _run("-n", "1", "-o", str(target / "out")) == 2
    assert "output folder is not writable" in capsys.readouterr().err


def test_bad_config_value_is_a_clear_error(tmp_path, capsys):
    assert _run("-n", "1", "-o", str(tmp_path / "o"), "--set", "scene.size_min=5") == 2
    assert "size_min" in capsys.readouterr().err


def test_print_config_reflects_file_and_overrides(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("scene:\n  p_hard: 0.9\nseed: 3\n")
    assert _run("--config", str(cfg), "--set", "seed=4", "--print-config") == 0
    out = capsys.readouterr().out
    assert "p_hard: 0.9" in out and "seed: 4" in out


@pytest.mark.ray
def test_ray_backend_gives_the_same_dataset(tmp_path, monkeypatch, output_digest):
    pytest.importorskip("ray", reason="ray extra not installed (pip install 'matseg[ray]')")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert _run("-n", "4", "-o", str(tmp_path / "local"), "-w", "1", *SMALL) == 0
    assert _run("-n", "4", "-o", str(tmp_path / "ray"), "-w", "2", "--ray", *SMALL) == 0
    assert output_digest(tmp_path / "ray") == output_digest(tmp_path / "local")


def test_shard_output_holds_the_folder_scenes_and_resumes(tmp_path, output_digest):
    from matseg.io.shards import unpack
    from matseg.tools.check import check_dataset

    assert _run("-n", "5", "-o", str(tmp_path / "folders"), "-w", "1", *SMALL) == 0
    assert _run("-n", "5", "-o", str(tmp_path / "shards"), "--shard-size", "2", "-w", "2", *SMALL) == 0
    shards = tmp_path / "shards"
    assert sorted(p.name for p in shards.glob("shard-*.tar")) == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert check_dataset(shards, workers=1).ok
    unpack(shards, tmp_path / "unpacked")
    assert output_digest(tmp_path / "unpacked") == output_digest(tmp_path / "folders")
    # Resume: a shard without its record is made again, the others are kept.
    (shards / "shard-000001.json").unlink()
    before = (shards / "shard-000000.tar").stat().st_mtime_ns
    assert _run("-n", "5", "-o", str(shards), "--shard-size", "2", "-w", "1", *SMALL) == 0
    assert (shards / "shard-000000.tar").stat().st_mtime_ns == before and (shards / "shard-000001.json").is_file()
    assert json.loads((shards / "index.json").read_text())["samples"] == 5
