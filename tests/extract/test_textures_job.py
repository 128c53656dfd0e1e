"""End-to-end tests of `matseg textures extract`: layout, records, resume, determinism, bad inputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from matseg.cli import main
from matseg.extract.textures_job import score_digits, texture_name
from matseg.io.images import encode_image, read_image_rgb
from matseg.io.sources import ImageSource

NAME = re.compile(r"^(?P<stem>.+)_(?P<k>\d+)_Score_(?P<score>\d{4})_TileSize(?P<tile>\d+)_Texture\.jpg$")
SMALL_TILE = ["--tile-size", "20", "--min-cells", "5"]


def _run(*args: str) -> int:
    return main(["textures", "extract", "--no-progress", *args])


def _textured_photo(rng: np.random.Generator, h: int, w: int, flat_from: int | None = None) -> np.ndarray:
    """Noise texture on the left, a blurry blob photo in the middle, optionally a flat part on the right."""
    img = rng.integers(60, 190, size=(h, w, 3)).astype(np.uint8)
    small = rng.integers(0, 256, size=(4, 4, 3)).astype(np.uint8)
    img[:, w // 2 :] = cv2.resize(small, (w - w // 2, h), interpolation=cv2.INTER_CUBIC)
    if flat_from is not None:
        img[:, flat_from:] = 128
    return img


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    Image.fromarray(_textured_photo(rng, 160, 300)).save(folder / "a.png")
    Image.fromarray(_textured_photo(rng, 200, 240)).save(folder / "sub" / "b.jpg", quality=98)
    wide = _textured_photo(rng, 140, 400, flat_from=300)
    Image.fromarray(wide).save(folder / "c.png")
    return folder


def test_layout_records_and_crops_at_source_resolution(photos, tmp_path):
    out = tmp_path / "out"
    assert _run(str(photos), "-o", str(out), "-w", "1", *SMALL_TILE) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("Finished.txt")) == [
        "a/Finished.txt", "c/Finished.txt", "sub/b/Finished.txt",
    ]  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done"] == 3 and summary["failed"] == [] and summary["textures"] >= 3
    kept = [p for p in out.rglob("*.jpg") if ".rejected" not in p.parts]
    assert len(kept) == summary["textures"]
    for jpg in kept:
        m = NAME.match(jpg.name)
        assert m, jpg.name
        record = json.loads(jpg.with_suffix(".json").read_text())
        source = read_image_rgb(record["source"])
        box = record["box"]
        assert box["w"] == box["h"] == record["cells"]["side"] * 20
        expected = source[box["y"] : box["y"] + box["h"], box["x"] : box["x"] + box["w"]]
        assert jpg.read_bytes() == encode_image(expected, ".jpg", jpeg_quality=95)  # exactly that region
        assert m["tile"] == "20" and m["score"] == score_digits(record["score"]) and record["score"] >= 0.5
        assert record["rejected"] == "" and record["config"]["sim_thresh"] == 0.5
        assert m["stem"] == Path(record["source"]).stem
    meta = json.loads((out / "c" / "meta.json").read_text())
    assert meta["grid"] == {"rows": 7, "cols": 20} and meta["tile_size"] == 20
    # The flat part of c.png is uniform but textureless: set aside with the reason, not deleted.
    assert meta["rejected"] and all(r.startswith(".rejected/") for r in meta["rejected"])
    for rel in meta["rejected"]:
        record = json.loads((out / "c" / rel).with_suffix(".json").read_text())
        assert record["rejected"].startswith("too smooth") and record["box"]["x"] >= 300


def test_output_folder_is_a_texture_folder_for_synth2d(photos, tmp_path):
    out = tmp_path / "out"
    assert _run(str(photos), "-o", str(out), "-w", "1", *SMALL_TILE) == 0
    source = ImageSource.scan(out, "textures")
    kept = sorted(p.relative_to(out).as_posix() for p in out.rglob("*_Texture.jpg") if ".rejected" not in p.parts)
    assert sorted(e.label for e in source.entries) == kept and source.bad == {}
    synth = tmp_path / "synth"
    args = ["synth2d", "--no-progress", "-n", "2", "-w", "1", "-o", str(synth), "--textures", str(out)]
    args += ["--images", str(photos), "--set", "scene.size_min=96", "--set", "scene.size_max=128"]
    assert main(args) == 0
    used = {t for f in synth.rglob("meta.json") for t in json.dumps(json.loads(f.read_text())["scene"]).split('"')}
    assert any("_Texture.jpg" in u for u in used)


def test_same_bytes_for_one_and_two_workers_and_rerun_skips(photos, tmp_path, output_digest):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _run(str(photos), "-o", str(a), "-w", "1", *SMALL_TILE) == 0
    assert _run(str(photos), "-o", str(b), "-w", "2", *SMALL_TILE) == 0
    first = output_digest(a)
    assert first == output_digest(b) and len(first) > 10
    # Rerun: every photo skipped, nothing rewritten.
    assert _run(str(photos), "-o", str(a), "-w", "1", *SMALL_TILE) == 0
    assert json.loads((a / "summary.json").read_text())["skipped"] == 3
    assert output_digest(a) == first
    # An unfinished folder (no Finished.txt) is redone.
    (a / "c" / "Finished.txt").unlink()
    assert _run(str(photos), "-o", str(a), "-w", "1", *SMALL_TILE) == 0
    summary = json.loads((a / "summary.json").read_text())
    assert summary["skipped"] == 2 and summary["done"] == 1 and output_digest(a) == first
    # Another configuration into the same folder is refused, naming the key.
    assert _run(str(photos), "-o", str(a), "--tile-size", "25") == 2


def test_bad_inputs_are_reported_and_never_modified(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(2)
    Image.fromarray(_textured_photo(rng, 160, 240)).save(folder / "good.png")
    Image.fromarray(_textured_photo(rng, 60, 80)).save(folder / "tiny.png")
    (folder / "garbage.jpg").write_bytes(b"this is not a jpeg")
    buf = Path(folder / "good.png").read_bytes()
    (folder / "truncated.png").write_bytes(buf[: len(buf) // 3])
    (folder / "notes.txt").write_text("ignored: not an image extension")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    out = tmp_path / "out"
    assert _run(str(folder), "-o", str(out), "-w", "1", *SMALL_TILE) == 1  # failures -> exit 1
    err = capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    failed = {f["name"]: f["reason"] for f in summary["failed"]}
    assert set(failed) == {"garbage", "truncated"}
    assert "garbage.jpg: not a readable image" in failed["garbage"] and "truncated.png" in failed["truncated"]
    assert summary["too_small"] == ["tiny"] and "5x5 cells" in summary["images"]["tiny"]["too_small"]
    assert "tiny" in err and "garbage" in err
    assert (out / "good" / "Finished.txt").exists() and (out / "tiny" / "Finished.txt").exists()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    # A non-image named explicitly fails as an item too.
    assert _run(str(folder / "notes.txt"), "-o", str(tmp_path / "out2"), "-w", "1") == 1


def test_usage_errors(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run(str(empty), "-o", str(tmp_path / "o")) == 2
    assert "no image files found" in capsys.readouterr().err
    assert _run(str(tmp_path / "missing"), "-o", str(tmp_path / "o")) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert _run(str(empty), "-o", str(tmp_path / "o"), "--set", "sim_thresh=2") == 2
    assert "sim_thresh" in capsys.readouterr().err
    assert main(["textures"]) == 2


def test_config_print_and_registry(tmp_path, capsys):
    assert main(["config", "textures"]) == 0
    text = capsys.readouterr().out
    assert "tile_large: 75" in text and "min_cells_small: 6" in text and "jpeg_quality: 95" in text
    assert _run(str(tmp_path), "-o", str(tmp_path / "o"), "--tile-size", "50", "--print-config") == 0
    assert "tile_size: 50" in capsys.readouterr().out


def test_exif_orientation_and_downscaled_working_image(tmp_path):
    # Stored rotated with EXIF orientation 6 (display = rotate 90° clockwise); boxes refer to
    # the upright photo. max_image_size 150 makes the working image 2/3 of the source.
    rng = np.random.default_rng(4)
    upright = _textured_photo(rng, 225, 300)
    stored = np.rot90(upright, k=1)  # undo of a 90° clockwise display rotation
    exif = Image.Exif()
    exif[0x0112] = 6
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.ascontiguousarray(stored)).save(folder / "rot.jpg", quality=98, exif=exif)
    decoded = read_image_rgb(folder / "rot.jpg")
    assert decoded.shape == upright.shape  # transposed by EXIF; the blurred pixels agree too
    assert np.abs(cv2.blur(decoded, (9, 9)).astype(int) - cv2.blur(upright, (9, 9))).mean() < 3
    out = tmp_path / "out"
    assert _run(str(folder), "-o", str(out), "-w", "1", "--tile-size", "10", "--min-cells", "5",
                "--set", "max_image_size=150") == 0  # fmt: skip
    meta = json.loads((out / "rot" / "meta.json").read_text())
    assert meta["source_size"] == [300, 225] and meta["working_size"] == [200, 150] and meta["textures"]
    for rel in meta["textures"]:
        record = json.loads((out / "rot" / rel).with_suffix(".json").read_text())
        box = record["box"]
        assert box["x"] + box["w"] <= 150 + 2  # the noise half of the upright photo
        assert abs(box["w"] - record["cells"]["side"] * 10 * 1.5) <= 1


def test_texture_names():
    assert texture_name("photo", 3, 0.5110306, 75) == "photo_3_Score_5110_TileSize75_Texture"
    assert score_digits(1.0) == "9999" and score_digits(0.5) == "5000"
