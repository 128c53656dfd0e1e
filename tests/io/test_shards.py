from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

from matseg.cli import main
from matseg.io.dataset import find_samples, read_sample
from matseg.io.shards import ShardFormatError, is_shard_folder, pack, shard_samples, unpack
from matseg.tools.check import check_dataset
from tests.conftest import shared_dir


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def published() -> Path:
    return shared_dir("matseg_train_sample")


def test_pack_unpack_round_trip_is_exact(published: Path, tmp_path: Path):
    index = pack(published, tmp_path / "shards", samples_per_shard=3)
    assert index["samples"] == len(find_samples(published)) == 13 and len(index["shards"]) == 5
    assert is_shard_folder(tmp_path / "shards")
    assert unpack(tmp_path / "shards", tmp_path / "back") == 13
    assert _files(tmp_path / "back") == _files(published)  # nested 1/1 included, Finished.txt restored
    assert unpack(tmp_path / "shards", tmp_path / "back") == 0  # finished samples are skipped


def test_shards_are_plain_webdataset_tars_and_deterministic(published: Path, tmp_path: Path):
    pack(published, tmp_path / "a", samples_per_shard=4)
    pack(published, tmp_path / "b", samples_per_shard=4)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    with tarfile.open(tmp_path / "a" / "shard-000000.tar") as tar:
        names = tar.getnames()
        assert "0.RGB__RGB.jpg" in names and "1/1.mask001.png" in names
        assert tar.extractfile("0.RGB__RGB.jpg").read() == (published / "0" / "RGB__RGB.jpg").read_bytes()


def test_pack_resumes(published: Path, tmp_path: Path):
    out = tmp_path / "shards"
    pack(published, out, samples_per_shard=3)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    (out / "shard-000002.tar").unlink()
    pack(published, out, samples_per_shard=3)
    again = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    assert set(again) == set(stamps)
    assert all(again[n] == stamps[n] for n in stamps if n != "shard-000002.tar")


def test_readers_treat_shards_like_folders(published: Path, tmp_path: Path):
    pack(published, tmp_path / "shards", samples_per_shard=5)
    refs = find_samples(tmp_path / "shards")
    folders = find_samples(published)
    assert [r.relative_name() for r in refs] == [f.relative_to(published).as_posix() for f in folders]
    for ref, folder in zip(refs[:3], folders[:3]):
        a, b = read_sample(ref), read_sample(folder)
        assert np.array_equal(a.image, b.image) and np.array_equal(a.fractions, b.fractions) and a.mask_names == b.mask_names
    on_shards, on_folders = check_dataset(tmp_path / "shards", workers=1), check_dataset(published, workers=1)
    assert [(s.name, s.problems, s.warnings) for s in on_shards.samples] == [(s.name, s.problems, s.warnings) for s in on_folders.samples]


def test_training_views_equal_on_shards_and_folders(published: Path, tmp_path: Path):
    pytest.importorskip("torch")
    from matseg.net.config import DataConfig
    from matseg.net.data import MatSegTrainingSet, split_samples

    pack(published, tmp_path / "shards", samples_per_shard=5)
    cfg = DataConfig(val_fraction=0.0)
    views = []
    for root in (published, tmp_path / "shards"):
        train, _ = split_samples([root], 0.0)
        dataset = MatSegTrainingSet(train, cfg, seed=3)
        views.append(dataset.view(4, 200, 240, np.random.default_rng(9), train=True))
    assert np.array_equal(views[0]["image"], views[1]["image"]) and np.array_equal(views[0]["fractions"], views[1]["fractions"])


def test_damaged_shards_named(published: Path, tmp_path: Path):
    out = tmp_path / "shards"
    pack(published, out, samples_per_shard=20)
    with open(out / "shard-000000.tar", "r+b") as fh:
        fh.truncate(1000)
    with pytest.raises(ShardFormatError, match=r"shard-000000\.tar: member .* truncated"):
        read_sample(shard_samples(out)[-1])
    os.remove(out / "shard-000000.tar")
    report = check_dataset(out, workers=1)
    assert not report.ok and "shard file missing" in report.samples[0].problems[0]


def test_cli_pack_check_unpack(published: Path, tmp_path: Path, capsys):
    assert main(["shards", "pack", str(published), "-o", str(tmp_path / "s"), "--no-progress"]) == 0
    assert "13 samples in 1 shard(s)" in capsys.readouterr().err
    assert main(["check", str(tmp_path / "s")]) == 0
    assert main(["shards", "unpack", str(tmp_path / "nope"), "-o", str(tmp_path / "u")]) == 2
    assert "not a shard folder" in capsys.readouterr().err
    assert main(["shards", "pack", str(published), "-o", str(published / "inside")]) == 2


def test_train_reads_shards_through_an_fsspec_url(published: Path, tmp_path: Path):
    pytest.importorskip("fsspec")
    pytest.importorskip("torch")
    pack(published, tmp_path / "shards", samples_per_shard=5)
    url = (tmp_path / "shards").as_uri()  # file:///...: fsspec's local file system, the code path of s3:// etc.
    refs = shard_samples(url)
    assert [r.relative_name() for r in refs] == [r.relative_name() for r in shard_samples(tmp_path / "shards")]
    assert np.array_equal(read_sample(refs[2]).fractions, read_sample(find_samples(published)[2]).fractions)
    run = tmp_path / "run"
    args = ["train", url, "-o", str(run), "--steps", "2", "--set", "model.pretrained=false", "--set", "data.size_min=128",
            "--set", "data.size_max=160", "--set", "data.val_fraction=0", "--no-progress", "-w", "0"]  # fmt: skip
    assert main(args) == 0
    assert json.loads((run / "run.json").read_text())["data"] == [url]
    assert main(["train", "-o", str(run), "--resume", "--steps", "3", "--no-progress", "-w", "0"]) == 0
