import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from matseg.io.dataset import (
    DatasetFormatError,
    find_samples,
    find_unfinished,
    is_finished,
    list_mask_files,
    mask_file_name,
    read_raw_sample,
    read_sample,
    sample_visible_materials,
    write_sample,
)

PUBLISHED = Path("/work/shared/data/matseg_train_sample")


def soft_scene(rng: np.random.Generator, h: int, w: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random smooth weights of ``m`` materials plus a background; roi = 1 - background."""
    logits = rng.normal(size=(m + 1, h // 8 + 1, w // 8 + 1)).astype(np.float32) * 4
    logits = np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_CUBIC) for c in logits])
    soft = np.exp(logits - logits.max(0))
    soft /= soft.sum(0)
    weights = soft[1:].astype(np.float32)
    roi = weights.sum(0)  # == 1 - background
    # Smooth, channel-distinct image: JPEG keeps it close and a BGR/RGB swap would show.
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), np.full_like(xx, 30)], -1)
    return image.astype(np.uint8), weights, roi


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    h, w, m = 48, 80, 3
    image, weights, roi = soft_scene(rng, h, w, m)
    out = write_sample(tmp_path / "s", image, weights, roi, meta={"seed": 0, "sources": ["a.jpg"]})

    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temporaries left
    names = sorted(p.name for p in out.iterdir())
    assert names == ["Finished.txt", "ObjectMaskOcluded.png", "RGB__RGB.jpg", "mask001.png", "mask002.png",
                     "mask003.png", "meta.json"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["format"] == "matseg" and meta["format_version"] == 1 and meta["roi_full_value"] == 255
    assert meta["masks"] == ["mask001.png", "mask002.png", "mask003.png"] and meta["seed"] == 0
    assert "matseg_version" in meta

    s = read_sample(out)
    assert s.source == "matseg" and s.mask_names == meta["masks"]
    assert s.image.shape == (h, w, 3) and s.fractions.shape == (m, h, w) and s.fractions.dtype == np.float32
    assert np.abs(s.image.astype(int) - image).mean() < 3  # JPEG q95: lossy but close, RGB order kept
    assert np.abs(s.roi_weight - roi).max() <= 0.5 / 255 + 1e-6
    np.testing.assert_array_equal(s.roi, s.roi_weight >= 0.5)  # every ROI pixel has material here

    inside = s.roi
    assert inside.any() and (~inside).any()
    np.testing.assert_allclose(s.fractions.sum(0)[inside], 1.0, atol=1e-5)
    assert np.all(s.fractions[:, ~inside] == 0)
    # Each of the M masks and the sum is rounded to 1/255; with roi >= 0.5 the ratio error is bounded by:
    bound = 0.5 * (1 + m) / (255 * 0.5 - 0.5 * m)
    err = np.abs(s.fractions - weights / np.maximum(roi, 1e-6))[:, inside]
    assert err.max() <= bound
    assert err.mean() < 1 / 255


def test_writer_rounds_instead_of_truncating(tmp_path):
    image = np.zeros((2, 3, 3), np.uint8)
    weights = np.array(
        [[[0.999, 0.5, 0.2], [1.0, 0.0, 0.303]],
         [[0.001, 0.5, 0.2], [0.0, 0.0, 0.298]]], dtype=np.float32)
    roi = weights.sum(0)
    raw = read_raw_sample(write_sample(tmp_path / "r", image, weights, roi, meta={}))
    np.testing.assert_array_equal(raw.masks[0], [[255, 128, 51], [255, 0, 77]])
    np.testing.assert_array_equal(raw.masks[1], [[0, 128, 51], [0, 0, 76]])
    np.testing.assert_array_equal(raw.roi_raw, [[255, 255, 102], [255, 0, 153]])


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(image=np.zeros((8, 8, 3), np.float32)), r"uint8.*float32"),
        (dict(image=np.zeros((8, 8), np.uint8)), r"\(8, 8\)"),
        (dict(weights=np.zeros((2, 8, 9), np.float32)), r"\(2, 8, 9\)"),
        (dict(weights=np.zeros((2, 8, 8), np.uint8)), r"float.*uint8"),
        (dict(weights=np.full((2, 8, 8), 0.6, np.float32)), r"sum to <= 1.*1\.2"),
        (dict(weights=np.full((2, 8, 8), np.nan, np.float32)), r"\[0, 1\].*nan"),
        (dict(roi=np.zeros((8, 8), np.float32)), r"roi must equal sum\(weights\).*roi=0 vs sum=0\.6"),
        (dict(meta={"format": "other"}), r"reserved.*other"),
    ],
)
def test_writer_validates_inputs(tmp_path, change, match):
    args = dict(image=np.zeros((8, 8, 3), np.uint8), weights=np.full((2, 8, 8), 0.3, np.float32),
                roi=np.full((8, 8), 0.6, np.float32), meta={})
    args.update(change)
    with pytest.raises((TypeError, ValueError), match=match):
        write_sample(tmp_path / "x", **args)
    assert not any(tmp_path.iterdir())


def test_failed_write_leaves_nothing_and_keeps_old_folder(tmp_path):
    rng = np.random.default_rng(1)
    image, weights, roi = soft_scene(rng, 16, 16, 2)
    write_sample(tmp_path / "s", image, weights, roi, meta={"v": 1})
    with pytest.raises(TypeError, match="not JSON serialisable"):
        write_sample(tmp_path / "s", image, weights, roi, meta={"v": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
    assert json.loads((tmp_path / "s" / "meta.json").read_text())["v"] == 1
    # A successful rewrite moves the old folder aside instead of deleting it.
    write_sample(tmp_path / "s", image, weights, roi, meta={"v": 2})
    assert json.loads((tmp_path / "s" / "meta.json").read_text())["v"] == 2
    assert len(list((tmp_path / ".incomplete").iterdir())) == 1


def _touch_sample(folder: Path, finished: str | None = "Finished.txt") -> Path:
    folder.mkdir(parents=True)
    (folder / "RGB__RGB.jpg").write_bytes(b"")
    if finished:
        (folder / finished).write_bytes(b"")
    return folder


def test_find_samples_order_nesting_and_hidden(tmp_path):
    for name in ["10", "2", "2/2", "a1", ".tmp-x-1", ".incomplete/3"]:
        _touch_sample(tmp_path / name)
    _touch_sample(tmp_path / "9", finished="finished.txt")  # lower-case marker counts
    _touch_sample(tmp_path / "7", finished=None)
    (tmp_path / "empty").mkdir()

    rel = [p.relative_to(tmp_path).as_posix() for p in find_samples(tmp_path)]
    assert rel == ["2", "2/2", "9", "10", "a1"]
    assert [p.name for p in find_samples(tmp_path, nested=False)] == ["2", "9", "10", "a1"]
    assert [p.name for p in find_unfinished(tmp_path)] == ["7"]
    assert find_samples(tmp_path / "2") == [tmp_path / "2", tmp_path / "2" / "2"]  # root itself is a sample
    assert is_finished(tmp_path / "9") and not is_finished(tmp_path / "7")
    with pytest.raises(FileNotFoundError, match="missing"):
        find_samples(tmp_path / "missing")


def test_mask_naming_and_unpadded_reference_masks(tmp_path):
    assert [mask_file_name(i) for i in (1, 2, 10, 1000)] == ["mask001.png", "mask002.png", "mask010.png",
                                                              "mask1000.png"]
    # The reference 2D generator: mask0.png ... unpadded, ROI full at 255, no meta.json.
    folder = tmp_path / "ref2d"
    folder.mkdir()
    h, w = 8, 12
    cv2.imwrite(str(folder / "RGB__RGB.jpg"), np.zeros((h, w, 3), np.uint8))
    values = {0: 255, 1: 0, 2: 100, 10: 155}
    for k, v in values.items():
        mask = np.zeros((h, w), np.uint8)
        mask[:, k] = v if k < w else 0
        mask[:, 2] = {0: 0, 1: 0, 2: 100, 10: 155}[k]
        cv2.imwrite(str(folder / f"mask{k}.png"), mask)
    roi = np.zeros((h, w), np.uint8)
    roi[:, [0, 2]] = 255
    cv2.imwrite(str(folder / "ObjectMaskOcluded.png"), roi)
    (folder / "background.png").write_bytes(b"not a mask")
    (folder / "Finished.txt").write_bytes(b"")

    assert [p.name for p in list_mask_files(folder)] == ["mask0.png", "mask1.png", "mask2.png", "mask10.png"]
    s = read_sample(folder)
    assert s.source == "published" and s.meta["roi_full_value"] == 255
    assert s.roi[:, [0, 2]].all() and s.roi.sum() == 2 * h
    np.testing.assert_allclose(s.fractions[:, 0, 0], [1, 0, 0, 0])
    np.testing.assert_allclose(s.fractions[:, 0, 2], [0, 0, 100 / 255, 155 / 255], atol=1e-6)


def _published_like(tmp_path: Path, roi_inside: int = 206) -> Path:
    """A small sample in the published style: ROI full at ~206, overlapping masks, noise, no meta.json."""
    folder = tmp_path / "pub"
    folder.mkdir()
    h, w = 20, 20
    cv2.imwrite(str(folder / "RGB__RGB.jpg"), np.full((h, w, 3), 90, np.uint8))
    roi = np.zeros((h, w), np.uint8)
    roi[:, :10] = roi_inside
    roi[:, 10] = 120  # anti-aliased border, above half of 206
    roi[:, 11] = 90  # below half
    m1 = np.zeros((h, w), np.uint8)
    m2 = np.zeros((h, w), np.uint8)
    m1[:, :6] = 255
    m2[:, 4:11] = 255  # columns 4, 5 overlap: both 255 -> 0.5 / 0.5
    m1[:, 15:] = 7  # noise outside the ROI
    m2[:, 0] = 14  # noise inside the ROI, must not dilute column 0
    m1[0, 9] = 0
    m2[0, 9] = 3  # an ROI pixel that only noise covers -> leaves the ROI
    for name, arr in [("ObjectMaskOcluded.png", roi), ("mask001.png", m1), ("mask002.png", m2)]:
        cv2.imwrite(str(folder / name), arr)
    (folder / "Finished.txt").write_bytes(b"")
    (folder / "NoGroundPlane.txt").write_bytes(b"")
    (folder / "CameraParameters.json").write_text(json.dumps({"Focal Length": 50.0}))
    return folder


def test_published_style_normalisation(tmp_path):
    folder = _published_like(tmp_path)
    (folder / "scene_data.pkl").write_bytes(pickle.dumps({"mask001.png": {"mode": "pbr"}}))
    s = read_sample(folder)
    assert s.meta["format"] == "published" and s.meta["roi_full_value"] == 206
    assert s.meta["camera"] == {"Focal Length": 50.0} and s.meta["no_ground_plane"] is True
    assert s.meta["scene_data"] == {"mask001.png": {"mode": "pbr"}}
    assert s.meta["roi_pixels_without_material"] == 1 and not s.roi[0, 9]
    assert s.roi[1:, :11].all() and not s.roi[:, 11:].any()
    np.testing.assert_allclose(s.roi_weight[5, [0, 10, 11]], [1.0, 120 / 206, 90 / 206], rtol=1e-6)
    np.testing.assert_allclose(s.fractions[:, 5, 0], [1, 0])  # noise 14 ignored
    np.testing.assert_allclose(s.fractions[:, 5, 4], [0.5, 0.5])
    np.testing.assert_allclose(s.fractions[:, 5, 8], [0, 1])
    assert np.all(s.fractions[:, :, 11:] == 0)
    assert sample_visible_materials(s, min_pixels=16) == [0, 1]
    assert sample_visible_materials(s, min_pixels=90) == [1]  # m1 dominates 4 x 20 = 80 px, m2 5 x 20 - 1 = 99


def test_unsafe_scene_data_is_omitted_with_warning(tmp_path):
    folder = _published_like(tmp_path)
    (folder / "scene_data.pkl").write_bytes(pickle.dumps({"x": np.float64(1)}))
    s = read_sample(folder)
    assert "scene_data" not in s.meta
    assert any("scene_data" in w and "numpy" in w for w in s.meta["warnings"])


def test_format_errors_name_the_file(tmp_path):
    rng = np.random.default_rng(2)
    image, weights, roi = soft_scene(rng, 16, 24, 2)

    folder = write_sample(tmp_path / "size", image, weights, roi, meta={})
    cv2.imwrite(str(folder / "mask002.png"), np.zeros((10, 24), np.uint8))
    with pytest.raises(DatasetFormatError, match=r"mask002\.png: size 24x10 \(WxH\) differs from RGB__RGB\.jpg 24x16"):
        read_sample(folder)

    folder = write_sample(tmp_path / "corrupt", image, weights, roi, meta={})
    (folder / "mask001.png").write_bytes(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(DatasetFormatError, match=r"corrupt/mask001\.png"):
        read_sample(folder)

    folder = write_sample(tmp_path / "noroi", image, weights, roi, meta={})
    (folder / "ObjectMaskOcluded.png").unlink()
    with pytest.raises(DatasetFormatError, match=r"noroi/ObjectMaskOcluded\.png: missing"):
        read_sample(folder)

    folder = write_sample(tmp_path / "nomask", image, weights, roi, meta={})
    for p in folder.glob("mask*.png"):
        p.unlink()
    with pytest.raises(DatasetFormatError, match=r"nomask/mask001\.png: missing"):
        read_sample(folder)

    folder = write_sample(tmp_path / "badmeta", image, weights, roi, meta={})
    (folder / "meta.json").write_text("{broken")
    with pytest.raises(DatasetFormatError, match=r"badmeta/meta\.json: not readable JSON"):
        read_sample(folder)


def test_published_samples():
    if not PUBLISHED.is_dir():
        pytest.skip(f"published sample data not available at {PUBLISHED}")
    folders = find_samples(PUBLISHED)
    names = [p.relative_to(PUBLISHED).as_posix() for p in folders]
    assert names == ["0", "1", "1/1", "2", "2/2", "3", "3/3", "4", "4/4", "5", "5/5", "6", "6/6"]
    for name, folder in zip(names, folders):  # one at a time: a sample is ~100 MB in memory
        s = read_sample(folder)
        assert s.source == "published", name
        assert s.image.shape == (1600, 1600, 3) and s.image.dtype == np.uint8, name
        assert 2 <= s.num_materials <= 8, name
        assert s.mask_names == [mask_file_name(i + 1) for i in range(s.num_materials)], name
        assert 0.02 < s.roi.mean() < 0.8, name
        assert 205 <= s.meta["roi_full_value"] <= 207, name
        total = s.fractions.sum(0)
        assert np.abs(total[s.roi] - 1).max() < 1e-5, name
        assert np.all(total[~s.roi] == 0), name
        assert isinstance(s.meta["scene_data"], dict), name
        assert set(s.meta["scene_data"]) == set(s.mask_names), name
        assert s.meta["camera"]["resolution_x"] == 1600, name
        assert s.meta["no_ground_plane"] == (s.path / "NoGroundPlane.txt").exists(), name
        assert len(sample_visible_materials(s)) >= 1, name
        assert "warnings" not in s.meta, name
