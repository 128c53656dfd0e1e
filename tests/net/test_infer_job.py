"""``matseg predict`` / ``matseg segment`` as batch jobs: folders, unique names, failures per
photo, summaries, reruns that skip finished photos."""

import json

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch extra not installed (pip install 'matseg[torch]')")
pytest.importorskip("safetensors")

from PIL import Image  # noqa: E402

from matseg.cli import main  # noqa: E402

FAST = ["--device", "cpu", "--max-side", "64", "--no-progress"]


@pytest.fixture
def library(tmp_path):
    """in/a/x.png, in/b/x.png (same name, different photos), in/y.jpg, in/broken.jpg (not an image)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "in"
    for rel, size in (("a/x.png", (40, 60)), ("b/x.png", (50, 30)), ("y.jpg", (48, 64))):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / rel)
    (root / "broken.jpg").write_bytes(b"not a jpeg")
    return root


def _summary(out):
    return json.loads((out / "summary.json").read_text())


def test_segment_a_folder_mirrors_it_and_lists_the_bad_photo(library, weights, tmp_path, capsys):
    out = library / "out"  # inside the input folder: its files must not become inputs on a rerun
    assert main(["segment", str(library), "--weights", str(weights), "-k", "2", "-o", str(out), *FAST]) == 1
    for name, (h, w) in (("a/x", (40, 60)), ("b/x", (50, 30)), ("y", (48, 64))):
        labels = np.asarray(Image.open(out / f"{name}_labels.png"))
        assert labels.shape == (h, w) and set(np.unique(labels)) <= {0, 1}
        assert (out / f"{name}_colour.png").exists() and (out / f"{name}_overlay.png").exists()
    summary = _summary(out)
    assert (summary["total"], summary["done"], summary["skipped"]) == (4, 3, 0)
    assert [f["name"] for f in summary["failed"]] == ["broken"] and "not a readable image" in summary["failed"][0]["reason"]
    assert "broken.jpg" in capsys.readouterr().err

    # Same model and options: the finished photos are skipped, the bad one is tried again.
    before = (out / "a/x_labels.png").stat().st_mtime_ns
    assert main(["segment", str(library), "--weights", str(weights), "-k", "2", "-o", str(out), *FAST]) == 1
    summary = _summary(out)
    assert (summary["done"], summary["skipped"], len(summary["failed"])) == (0, 3, 1)
    assert (out / "a/x_labels.png").stat().st_mtime_ns == before

    # Other options: every photo again, with the new setting.
    (library / "broken.jpg").unlink()
    assert main(["segment", str(library), "--weights", str(weights), "-k", "3", "-o", str(out), *FAST]) == 0
    assert (_summary(out)["done"], _summary(out)["skipped"]) == (3, 0)
    assert json.loads((out / "run.json").read_text())["options"]["materials"] == 3


def test_predict_fails_only_the_photo_a_point_misses(library, weights, tmp_path):
    out = tmp_path / "pred"
    photos = [library / "a/x.png", library / "b/x.png"]  # 60 and 30 px wide
    assert main(["predict", *map(str, photos), "--weights", str(weights), "--point", "45,5", "-o", str(out), *FAST]) == 1
    sim = np.load(out / "x_p0.npy")  # the first x keeps its plain name, the second gets its extension
    assert sim.shape == (40, 60) and sim.dtype == np.float32 and np.all(np.abs(sim) <= 1 + 1e-6)
    assert not (out / "x_png_p0.npy").exists()
    (failed,) = _summary(out)["failed"]
    assert failed["name"] == "x_png" and "outside the image (30x50)" in failed["reason"]


def test_worker_processes_give_the_same_maps(library, weights, tmp_path):
    (library / "broken.jpg").unlink()
    args = ["predict", str(library), "--weights", str(weights), "--point", "3,4", *FAST]
    assert main([*args, "-o", str(tmp_path / "one")]) == 0
    assert main([*args, "-o", str(tmp_path / "two"), "-w", "2"]) == 0
    assert _summary(tmp_path / "two")["workers"] == 2
    for name in ("a/x", "b/x", "y"):
        one, two = (np.load(tmp_path / run / f"{name}_p0.npy") for run in ("one", "two"))
        # One thread per worker process instead of two: the summation order may change the last bits.
        np.testing.assert_allclose(one, two, atol=1e-5)


def test_a_missing_input_is_a_usage_error(weights, tmp_path, capsys):
    assert main(["segment", str(tmp_path / "nope.jpg"), "--weights", str(weights), "-o", str(tmp_path / "o"), *FAST]) == 2
    assert "nope.jpg: no such file or folder" in capsys.readouterr().err


def test_a_damaged_run_json_means_recompute(library, weights, tmp_path):
    (library / "broken.jpg").unlink()
    out = tmp_path / "seg"
    args = ["segment", str(library / "y.jpg"), "--weights", str(weights), "-k", "2", "-o", str(out), *FAST]
    assert main(args) == 0
    for damaged in ("[1]", "{not json"):
        (out / "run.json").write_text(damaged)
        assert main(args) == 0 and _summary(out)["done"] == 1
        assert json.loads((out / "run.json").read_text())["command"] == "segment"
