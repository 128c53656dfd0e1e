import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from matseg.io.dataset import write_sample
from matseg.tools import check

PUBLISHED = Path("/work/shared/data/matseg_train_sample")


def striped_scene(h: int = 32, w: int = 48, m: int = 3, margin: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image, weights and roi of a scene with ``m`` vertical material stripes inside a background frame.

    The stripes are blurred so that borders hold mixtures; ``roi = sum(weights) = 1 - background``.
    """
    labels = np.zeros((h, w), np.int64)  # 0 = background
    xs = np.arange(w)
    stripe = 1 + np.minimum((xs - margin) * m // (w - 2 * margin), m - 1)
    labels[margin:h - margin, margin:w - margin] = stripe[margin:w - margin]
    one_hot = (labels[None] == np.arange(m + 1)[:, None, None]).astype(np.float32)
    soft = np.stack([cv2.GaussianBlur(c, (5, 5), 1.0) for c in one_hot])
    soft /= soft.sum(0)
    weights = soft[1:]
    roi = weights.sum(0)
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = labels * 60
    image[..., 1] = 100
    return image, weights, roi


def write_good(folder: Path, m: int = 3) -> Path:
    image, weights, roi = striped_scene(m=m)
    return write_sample(folder, image, weights, roi, meta={"seed": 1})


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="matseg")
    check.add_parser(parser.add_subparsers())
    return parser.parse_args(argv)


def test_good_dataset_passes(tmp_path, capsys):
    for name in ["a", "b", "b/nested"]:
        write_good(tmp_path / "data" / name)
    report = check.check_dataset(tmp_path / "data", workers=2, progress=False)
    assert report.ok, report.summary()
    assert [s.name for s in report.samples] == ["a", "b", "b/nested"]
    s = report.samples[0]
    assert s.source == "matseg" and s.num_masks == 3 and s.visible_materials == 3
    assert s.max_sum_deviation <= 3 and s.uncovered_fraction == 0.0

    args = parse(["check", str(tmp_path / "data"), "--json", str(tmp_path / "report.json")])
    assert args.handler is check.run
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "3 passed, 0 failed, 0 unfinished" in out
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["ok"] is True and saved["checked"] == 3 and saved["samples"][0]["visible_materials"] == 3


def _rewrite_png(path: Path, array: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", array)
    assert ok
    path.write_bytes(buf.tobytes())


def test_planted_defects_are_reported(tmp_path, capsys):
    root = tmp_path / "data"
    write_good(root / "good")

    (write_good(root / "unfinished") / "Finished.txt").unlink()

    f = write_good(root / "mask_size")
    _rewrite_png(f / "mask002.png", np.zeros((20, 48), np.uint8))

    f = write_good(root / "corrupt_mask")
    (f / "mask001.png").write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())

    f = write_good(root / "bad_sum")
    mask = cv2.imread(str(f / "mask001.png"), cv2.IMREAD_UNCHANGED)
    _rewrite_png(f / "mask001.png", (mask // 2).astype(np.uint8))  # sum(masks) < roi where material 1 is

    image, weights, roi = striped_scene()
    weights = np.stack([roi, np.zeros_like(roi)])  # one material everywhere, the second never
    write_sample(root / "one_material", image, weights, roi, meta={})

    f = write_good(root / "rgba_mask")
    mask = cv2.imread(str(f / "mask002.png"), cv2.IMREAD_UNCHANGED)
    _rewrite_png(f / "mask002.png", cv2.cvtColor(mask, cv2.COLOR_GRAY2BGRA))

    f = write_good(root / "rgb_mask")
    mask = cv2.imread(str(f / "mask003.png"), cv2.IMREAD_UNCHANGED)
    _rewrite_png(f / "mask003.png", cv2.cvtColor(mask, cv2.COLOR_GRAY2BGR))

    report = check.check_dataset(root, progress=False)
    assert not report.ok
    assert [s.name for s in report.passed] == ["good"]
    assert report.unfinished == ["unfinished"]
    problems = {s.name: " | ".join(s.problems) for s in report.failed}
    assert set(problems) == {"mask_size", "corrupt_mask", "bad_sum", "one_material", "rgba_mask", "rgb_mask"}
    assert "mask002.png: size 48x20 (WxH) differs from RGB__RGB.jpg 48x32" in problems["mask_size"]
    assert "corrupt_mask/mask001.png" in problems["corrupt_mask"] and "not a readable image" in problems["corrupt_mask"]
    assert "sum of masks differs from ObjectMaskOcluded.png" in problems["bad_sum"]
    assert "1 visible material(s), need 2" in problems["one_material"]
    assert problems["rgba_mask"] == "mask002.png: expected an 8-bit single-channel image (mode L), got mode RGBA"
    assert problems["rgb_mask"] == "mask003.png: expected an 8-bit single-channel image (mode L), got mode RGB"

    args = parse(["check", str(root), "--workers", "1"])
    assert args.handler(args) != 0
    out = capsys.readouterr().out
    for name in problems:
        assert f"FAILED {name}:" in out
    assert "UNFINISHED unfinished" in out
    assert "1 passed, 6 failed, 1 unfinished" in out


def test_uncovered_roi_beyond_tolerance_fails(tmp_path):
    f = write_good(tmp_path / "s")
    roi = cv2.imread(str(f / "ObjectMaskOcluded.png"), cv2.IMREAD_UNCHANGED)
    roi[:, :] = 255  # ROI now also covers the background frame, where no mask is
    _rewrite_png(f / "ObjectMaskOcluded.png", roi)
    result = check.check_sample(f)
    assert any("have no material" in p for p in result.problems)
    assert result.uncovered_fraction > check.MAX_UNCOVERED_FRACTION


def test_missing_dir_and_empty_dir(tmp_path, capsys):
    args = parse(["check", str(tmp_path / "nope")])
    assert args.handler(args) == 2
    assert "does not exist" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    args = parse(["check", str(tmp_path / "empty")])
    assert args.handler(args) == 1
    assert "no samples found" in capsys.readouterr().out


def test_published_samples():
    if not PUBLISHED.is_dir():
        pytest.skip(f"published sample data not available at {PUBLISHED}")
    report = check.check_dataset(PUBLISHED, workers=2, progress=False)
    assert len(report.samples) == 13 and report.unfinished == []
    # Two published top-level scenes are effectively single-material, a property of the data:
    # 3 (mask002 is 77 border pixels, all also covered by mask001 at >= its value) and
    # 4 (mask003 is a 1-3 px strip that mask001 also covers at 255; dominant on 130 px < 334).
    failed = {s.name: s.problems for s in report.failed}
    assert set(failed) == {"3", "4"}
    for problems in failed.values():
        assert len(problems) == 1 and "1 visible material(s), need 2" in problems[0]
    for s in report.samples:
        assert s.size == (1600, 1600) and s.uncovered_fraction < 0.005 and 2 <= s.num_masks <= 8
        assert not s.warnings
    assert {s.name: s.visible_materials for s in report.samples} == {
        "0": 3, "1": 2, "1/1": 2, "2": 6, "2/2": 3, "3": 1, "3/3": 3,
        "4": 1, "4/4": 3, "5": 6, "5/5": 2, "6": 4, "6/6": 2,
    }
    # Requiring one visible material, everything passes.
    loose = check.check_dataset(PUBLISHED, min_visible_materials=1, workers=2, progress=False)
    assert loose.ok, loose.summary()
