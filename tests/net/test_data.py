"""Training data: batch geometry, ROI-keeping crops, aligned augmentation, determinism, split."""

from pathlib import Path

import numpy as np
import pytest

from matseg.io.dataset import write_sample
from matseg.net.data import (
    AugmentConfig,
    BatchStream,
    DataConfig,
    DecodedSampleCache,
    MatSegTrainingSet,
    SlotKey,
    augment,
    crop_to_batch,
    decode_sample,
    drop_undominated,
    fill_cache,
    is_validation,
    plan_batch,
    rescale_sample,
    roi_bbox,
    split_samples,
)

NO_AUGMENT = AugmentConfig(p_any=0.0)


def _halves(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image whose red channel is 255 on material 0 (left half), 0 on material 1 (right half)."""
    fractions = np.zeros((2, h, w), np.float32)
    fractions[0, :, : w // 2] = 1
    fractions[1, :, w // 2 :] = 1
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = (255 * fractions[0]).astype(np.uint8)
    image[..., 1] = np.arange(w)[None] % 251  # position code (x, y mod 251), so crops can be located
    image[..., 2] = np.arange(h)[:, None] % 251
    return image, fractions, np.ones((h, w), bool)


# ----------------------------------------------------------------------------- geometry


def test_batch_shapes_hand_computed():
    cfg = DataConfig(size_min=250, size_max=300, max_pixels=256 * 256 * 2, max_images=7)
    assert cfg.side_choices() == [256, 288]
    # 256x288 would fit only one image (73728 * 2 > 131072): never drawn.
    assert cfg.batch_shapes() == [(256, 256, 2)]
    with pytest.raises(ValueError, match="does not fit 2 images"):
        DataConfig(size_min=256, size_max=256, max_pixels=256 * 256)


def test_batches_stay_within_the_pixel_budget():
    cfg = DataConfig()  # paper sizes 250-900, budget 700*700*2, 2..7 images
    seen_sides, seen_counts = set(), set()
    for stream in range(300):
        keys = plan_batch(5, stream, 40, cfg)
        h, w = keys[0].height, keys[0].width
        assert all((k.height, k.width, k.stream) == (h, w, stream) for k in keys)
        assert h % 32 == 0 and w % 32 == 0 and 256 <= min(h, w) and max(h, w) <= 896
        assert 2 <= len(keys) <= 7 and h * w * len(keys) <= cfg.max_pixels
        assert len({k.sample for k in keys}) == len(keys)  # distinct samples when there are enough
        seen_sides |= {h, w}
        seen_counts.add(len(keys))
    assert {256, 896} <= seen_sides and {2, 7} <= seen_counts  # the whole range is used
    assert plan_batch(5, 17, 40, cfg) == plan_batch(5, 17, 40, cfg) != plan_batch(6, 17, 40, cfg)


def test_stream_shards_and_resume_position():
    cfg = DataConfig()
    full = list(BatchStream(3, 10, cfg, 0, 6))
    assert list(BatchStream(3, 10, cfg, 4, 6)) == full[4:]
    rank1 = list(BatchStream(3, 10, cfg, 0, 3, rank=1, world=2))
    assert [b[0].stream for b in rank1] == [1, 3, 5]
    assert rank1 == [full[1], full[3], full[5]]


# ----------------------------------------------------------------------------- crops


def test_roi_bbox():
    roi = np.zeros((10, 12), bool)
    roi[2:5, 7:9] = True
    assert roi_bbox(roi) == (2, 5, 7, 9)
    assert roi_bbox(np.zeros((4, 6), bool)) == (0, 4, 0, 6)


def test_crop_contains_a_small_roi_at_full_resolution():
    h, w = 300, 400
    image, fractions, _ = _halves(h, w)
    roi = np.zeros((h, w), bool)
    roi[100:150, 170:230] = True  # 50 x 60 box straddling both materials
    fractions *= roi
    for seed in range(20):
        out_img, out_frac, out_roi = crop_to_batch(image, fractions, roi, 96, 128, np.random.default_rng(seed), p_zoom_out=1.0)
        assert out_img.shape == (96, 128, 3) and out_frac.shape == (2, 96, 128) and out_img.dtype == np.float32
        assert out_roi.sum() == roi.sum()  # the whole annotated region, not resized
        assert np.allclose(out_frac.sum(0)[out_roi], 1) and not out_frac[:, ~out_roi].any()
        # The window is a plain crop: the position code gives the offset, pixels match exactly.
        top, left = int(out_img[0, 0, 2]), int(out_img[0, 0, 1])  # windows lie within x, y < 251 here
        assert np.array_equal(out_img, image[top : top + 96, left : left + 128].astype(np.float32))


def test_crop_of_a_large_roi_zooms_out_or_stays_inside():
    image, fractions, roi = _halves(400, 400)
    rng = np.random.default_rng(0)
    img, frac, out_roi = crop_to_batch(image, fractions, roi, 100, 100, rng, p_zoom_out=1.0)
    # Zoomed out: the whole image shrunk to 100x100, left half material 0.
    assert out_roi.all() and np.allclose(frac[0, :, :50], 1) and np.allclose(frac[1, :, 50:], 1)
    img, frac, out_roi = crop_to_batch(image, fractions, roi, 100, 100, rng, p_zoom_out=0.0)
    assert out_roi.all() and set(np.unique(img[..., 0])) <= {0.0, 255.0}  # full resolution, no blending


def test_crop_enlarges_a_small_image():
    image, fractions, roi = _halves(40, 60)
    img, frac, out_roi = crop_to_batch(image, fractions, roi, 64, 64, np.random.default_rng(1), p_zoom_out=0.0)
    assert img.shape == (64, 64, 3) and out_roi.all()
    assert np.allclose(frac.sum(0), 1, atol=1e-5) and frac.min() >= 0


def test_rescale_sample_keeps_masks_aligned():
    image, fractions, roi = _halves(40, 60)
    img, frac, out_roi = rescale_sample(image, fractions, roi, 0.5)
    assert img.shape == (20, 30, 3) and img.dtype == np.uint8 and frac.shape == (2, 20, 30) and out_roi.shape == (20, 30)
    # Pure columns stay pure: material 0 (red 255) on the left, 1 on the right; the pixel pairs
    # straddling the cut at column 30 fall between output columns 14 and 15, so none are mixed.
    assert np.allclose(frac[0, :, :15], 1) and np.allclose(frac[1, :, 15:], 1)
    assert (img[:, :15, 0] == 255).all() and (img[:, 15:, 0] == 0).all() and out_roi.all()
    big, big_frac, big_roi = rescale_sample(image, fractions, roi, 1.5)
    assert big.shape == (60, 90, 3) and big_roi.all()
    assert np.allclose(big_frac.sum(0), 1, atol=1e-5) and np.allclose(big_frac[0, :, :44], 1)
    same = rescale_sample(image, fractions, roi, 1.0)
    assert all(a is b for a, b in zip(same, (image, fractions, roi)))
    with pytest.raises(ValueError, match="factor must be > 0, got 0"):
        rescale_sample(image, fractions, roi, 0)


def test_rescale_augmentation_changes_the_scale_seen(tiny_dataset):
    train, _ = split_samples([tiny_dataset], 0.0)
    base = _tiny_cfg()
    zoom = _tiny_cfg(augment=AugmentConfig(p_any=0.0, p_rescale=1.0, rescale_range=[2.0, 2.0]))
    plain, zoomed = MatSegTrainingSet(train, base, seed=5), MatSegTrainingSet(train, zoom, seed=5)
    key = SlotKey(0, 0, 64, 64, 0)
    a, b = plain.view(0, 64, 64, np.random.default_rng(1), train=True), zoomed.view(0, 64, 64, np.random.default_rng(1), train=True)
    # Enlarged 2x, a 64 px window holds at most half as many material boundaries as a plain one
    # and its pixels come in 2x2 near-copies (bilinear): neighbouring columns differ less.
    assert np.abs(np.diff(b["image"], axis=1)).mean() < 0.75 * np.abs(np.diff(a["image"], axis=1)).mean()
    # Off (p_rescale 0, the default) the random stream is the one of earlier releases.
    assert AugmentConfig().p_rescale == 0
    off = MatSegTrainingSet(train, _tiny_cfg(augment=AugmentConfig(rescale_range=[2.0, 2.0])), seed=5)
    assert np.array_equal(off[key]["image"], MatSegTrainingSet(train, _tiny_cfg(), seed=5)[key]["image"])
    with pytest.raises(ValueError, match="rescale_range must be"):
        AugmentConfig(rescale_range=[0.0, 1.0])


def test_crop_rejects_mismatched_arrays():
    image, fractions, roi = _halves(40, 60)
    with pytest.raises(ValueError, match="must match the image"):
        crop_to_batch(image, fractions[:, :30], roi, 32, 32, np.random.default_rng(0), 0.3)


def test_drop_undominated_hand_computed():
    fractions = np.zeros((3, 2, 2), np.float32)
    fractions[0] = [[1.0, 0.6], [0.3, 0.3]]
    fractions[1] = [[0.0, 0.0], [0.3, 0.7]]
    fractions[2] = [[0.0, 0.4], [0.4, 0.0]]  # never above 0.5: dropped
    roi = np.ones((2, 2), bool)
    kept, new_roi = drop_undominated(fractions, roi)
    assert kept.shape == (2, 2, 2)
    # Pixel (1, 0) was led by the dropped material (0.4 > 0.3, 0.3): it leaves the ROI.
    assert new_roi.tolist() == [[True, True], [False, True]]
    assert np.array_equal(kept[:, 1, 0], [0, 0])
    assert np.allclose(kept[:, 0, 1], [1, 0]) and np.allclose(kept[:, 1, 1], [0.3, 0.7])  # renormalised


# ----------------------------------------------------------------------------- augmentation


def test_flips_keep_masks_aligned():
    rng = np.random.default_rng(3)
    pattern = rng.random((48, 64)) < 0.5  # asymmetric in both directions
    fractions = np.stack([pattern, ~pattern]).astype(np.float32)
    image = np.zeros((48, 64, 3), np.uint8)
    image[..., 0] = 255 * pattern
    roi = np.ones((48, 64), bool)
    roi[:10] = False
    only_flips = AugmentConfig(p_any=1.0, p_flip_lr=0.5, p_flip_ud=0.5, p_noise=0, p_blur=0, p_brightness=0, p_desaturate=0, p_grayscale=0)
    flipped = 0
    for seed in range(12):
        img, frac, out_roi = augment(image.astype(np.float32), fractions, roi, np.random.default_rng(seed), only_flips)
        assert np.array_equal(img[..., 0], 255 * frac[0])  # the red channel still encodes material 0
        assert out_roi.sum() == roi.sum() and np.array_equal(out_roi, out_roi.any(1, keepdims=True) & np.ones_like(out_roi))
        flipped += not np.array_equal(img, image)
    assert flipped >= 6  # flips did happen


def test_photometric_augmentation_changes_only_the_image():
    image, fractions, roi = _halves(32, 32)
    always = AugmentConfig(p_any=1, p_flip_lr=0, p_flip_ud=0, p_noise=1, p_blur=1, p_brightness=1, p_desaturate=0, p_grayscale=1)
    img, frac, out_roi = augment(image.astype(np.float32), fractions, roi, np.random.default_rng(0), always)
    assert np.array_equal(frac, fractions) and np.array_equal(out_roi, roi)
    assert img.dtype == np.float32 and 0 <= img.min() and img.max() <= 255
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])  # full decolouring
    same, *_ = augment(image.astype(np.float32), fractions, roi, np.random.default_rng(0), NO_AUGMENT)
    assert np.array_equal(same, image)


# ----------------------------------------------------------------------------- dataset + loader


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    """Five 80x96 samples with 3 materials in vertical bands (and one single-material sample)."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for i in range(5):
        weights = np.zeros((3, 80, 96), np.float32)
        cut1, cut2 = sorted(rng.choice(np.arange(20, 76), 2, replace=False))
        weights[0, :, :cut1], weights[1, :, cut1:cut2], weights[2, :, cut2:] = 1, 1, 1
        image = rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)
        write_sample(root / f"{i:02d}", image, weights, np.ones((80, 96), np.float32))
    write_sample(root / "single", np.zeros((80, 96, 3), np.uint8), np.ones((1, 80, 96), np.float32), np.ones((80, 96), np.float32))
    return root


def _tiny_cfg(**kw) -> DataConfig:
    return DataConfig(size_min=32, size_max=64, max_pixels=64 * 64 * 3, max_images=3, val_size=64, **kw)


def test_batches_identical_for_any_worker_count(tiny_dataset):
    torch = pytest.importorskip("torch", reason="torch extra not installed (pip install 'matseg[torch]')")
    from matseg.net.data import make_loader

    train, _ = split_samples([tiny_dataset], 0.0)
    cfg = _tiny_cfg()
    dataset = MatSegTrainingSet(train, cfg, seed=11)

    def batches(workers, start=0):
        return list(make_loader(dataset, BatchStream(11, len(train), cfg, start, 4), workers))

    serial, parallel = batches(0), batches(2)
    assert len(serial) == len(parallel) == 4
    for a, b in zip(serial, parallel):
        assert a["paths"] == b["paths"]
        for key in ("images", "fractions", "roi", "num_materials"):
            assert torch.equal(a[key], b[key])
    for a, b in zip(serial[2:], batches(0, start=2)):  # a resumed stream continues the same batches
        assert torch.equal(a["images"], b["images"])
    first = serial[0]
    n, slots, h, w = first["fractions"].shape
    assert first["images"].shape == (n, 3, h, w) and first["roi"].shape == (n, h, w)
    assert slots == int(first["num_materials"].max()) and (first["num_materials"] >= 2).all()
    # Padded slots are empty; real ones sum to 1 inside the ROI.
    sums = first["fractions"].sum(1)
    assert torch.allclose(sums[first["roi"]], torch.ones(())) and not sums[~first["roi"]].any()
    assert all("single" not in p for b in serial for p in b["paths"])  # < 2 materials: redrawn


def test_single_material_data_fails_clearly(tiny_dataset):
    dataset = MatSegTrainingSet([tiny_dataset / "single"], _tiny_cfg(max_attempts=3), seed=0)
    key = SlotKey(0, 0, 32, 32, 0)
    with pytest.raises(RuntimeError, match="no usable training image after 3 draws"):
        dataset[key]
    assert dataset[key._replace(train=False)] is None  # validation just leaves it out


def test_unreadable_sample_is_skipped(tiny_dataset, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "RGB__RGB.jpg").write_bytes(b"not a jpeg")
    (broken / "Finished.txt").write_bytes(b"")
    dataset = MatSegTrainingSet([broken, tiny_dataset / "00"], _tiny_cfg(), seed=0)
    item = dataset[SlotKey(0, 0, 32, 32, 0)]  # first choice unreadable -> redrawn
    assert item["path"].endswith("00")


def test_split_is_stable_and_relative_to_the_root(tmp_path):
    for root in (tmp_path / "a", tmp_path / "b" / "copy"):
        for i in range(40):
            folder = root / f"{i:03d}"
            folder.mkdir(parents=True)
            (folder / "RGB__RGB.jpg").write_bytes(b"")
            (folder / "Finished.txt").write_bytes(b"")
    train_a, val_a = split_samples([tmp_path / "a"], 0.25)
    train_b, val_b = split_samples([tmp_path / "b" / "copy"], 0.25)
    assert [p.name for p in val_a] == [p.name for p in val_b] and 3 <= len(val_a) <= 18
    assert len(train_a) + len(val_a) == 40
    assert split_samples([tmp_path / "a"], 0.0)[1] == []
    assert is_validation("000", 0.5) == is_validation("000", 0.5)
    # sha256("000") starts with 0x2ac9a674...: 0.167 of the way through [0, 1)
    assert is_validation("000", 0.17) and not is_validation("000", 0.16)
    with pytest.raises(FileNotFoundError, match="missing"):
        split_samples([tmp_path / "missing"], 0.1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no finished MatSeg sample"):
        split_samples([tmp_path / "empty"], 0.1)


def test_published_samples_nested_included(train_sample):
    train, val = split_samples([train_sample], 0.0, nested=True)
    assert any(p.parent.name == p.name for p in train)  # e.g. 3/3
    assert len(split_samples([train_sample], 0.0, nested=False)[0]) < len(train)
    cfg = DataConfig(size_min=128, size_max=160, max_pixels=160 * 160 * 2, max_images=2)
    dataset = MatSegTrainingSet(train, cfg, seed=0)
    for key in plan_batch(0, 0, len(train), cfg):
        item = dataset[key]
        assert item["image"].shape == (key.height, key.width, 3)
        assert item["fractions"].shape[0] >= 2 and np.allclose(item["fractions"].sum(0)[item["roi"]], 1, atol=1e-4)


# ----------------------------------------------------------------------------- decoded samples and their cache


def test_decode_sample_shrinks_to_max_side(tmp_path):
    image, fractions, roi = _halves(120, 200)
    write_sample(tmp_path / "s", image, fractions, roi.astype(np.float32))
    full = decode_sample(tmp_path / "s")
    assert full.image.shape == (120, 200, 3) and full.fractions.dtype == np.uint8
    np.testing.assert_array_equal(full.fractions, (fractions * 255).astype(np.uint8))
    small = decode_sample(tmp_path / "s", max_side=50)
    assert small.image.shape == (30, 50, 3) and small.fractions.shape == (2, 30, 50) and small.roi.shape == (30, 50)
    # Area averaging: the left quarter-width is pure material 0, the boundary column is mixed.
    assert (small.fractions[0, :, :24] == 255).all() and (small.fractions[1, :, 26:] == 255).all()
    assert (small.fractions.sum(0) >= 254).all() and small.roi.all()
    assert decode_sample(tmp_path / "s", max_side=500).image.shape == (120, 200, 3)  # never enlarged


def test_cache_gives_the_same_batches_and_is_reused(tiny_dataset, tmp_path, caplog):
    train, _ = split_samples([tiny_dataset], 0.0)
    plain = MatSegTrainingSet(train, _tiny_cfg(decode_max_side=70), seed=3)
    cached = MatSegTrainingSet(train, _tiny_cfg(decode_max_side=70, cache_dir=str(tmp_path / "cache")), seed=3)
    keys = [k for stream in range(3) for k in plan_batch(3, stream, len(train), plain.cfg)]
    for key in keys:
        a, b = plain[key], cached[key]
        assert a["path"] == b["path"]
        for name in ("image", "fractions", "roi"):
            np.testing.assert_array_equal(a[name], b[name])
    entries = sorted((tmp_path / "cache").rglob("*.npz"))
    assert 0 < len(entries) <= len(train)
    stamps = [e.stat().st_mtime_ns for e in entries]
    fresh = MatSegTrainingSet(train, cached.cfg, seed=3)  # a later run: read, not rewritten
    for key in keys:
        fresh[key]
    assert [e.stat().st_mtime_ns for e in sorted((tmp_path / "cache").rglob("*.npz"))] == stamps
    # A damaged entry is decoded again and replaced, with a warning.
    entries[0].write_bytes(b"not an npz")
    cache = DecodedSampleCache(tmp_path / "cache", 70)
    sample = next(p for p in train if cache.entry(p) == entries[0])
    with caplog.at_level("WARNING"):
        again = cache.get(sample)
    assert "unreadable" in caplog.text and entries[0].stat().st_size > 100
    np.testing.assert_array_equal(again.image, decode_sample(sample, 70).image)


def test_cache_entry_follows_a_regenerated_sample(tmp_path):
    image, fractions, roi = _halves(40, 60)
    write_sample(tmp_path / "s", image, fractions, roi.astype(np.float32))
    cache = DecodedSampleCache(tmp_path / "cache", 0)
    before = cache.entry(tmp_path / "s")
    assert cache.entry(tmp_path / "s") == before and DecodedSampleCache(tmp_path / "cache", 32).entry(tmp_path / "s") != before
    marker = tmp_path / "s" / "Finished.txt"
    stat = marker.stat()
    import os

    os.utime(marker, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert cache.entry(tmp_path / "s") != before


def test_fill_cache_decodes_what_is_missing_and_lists_the_unreadable(tiny_dataset, tmp_path):
    train, _ = split_samples([tiny_dataset], 0.0)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "RGB__RGB.jpg").write_bytes(b"not a jpeg")
    (broken / "Finished.txt").write_bytes(b"")
    cfg = _tiny_cfg(decode_max_side=70, cache_dir=str(tmp_path / "cache"))
    cache = DecodedSampleCache(cfg.cache_dir, 70)
    cache.get(train[0])  # cached before: skipped, not rewritten
    stamp = cache.entry(train[0]).stat().st_mtime_ns
    summary = fill_cache([*train, broken], cfg, workers=2, progress=False)
    assert (summary.done, summary.skipped, len(summary.failed)) == (len(train) - 1, 1, 1)
    assert "broken" in summary.failed[0][1]
    assert cache.entry(train[0]).stat().st_mtime_ns == stamp and not cache.entry(broken).exists()
    for sample in train:  # what the training set would have decoded itself
        with np.load(cache.entry(sample), allow_pickle=False) as entry:
            expected = decode_sample(sample, 70)
            for name in ("image", "fractions", "roi"):
                np.testing.assert_array_equal(entry[name], getattr(expected, name))
    again = fill_cache(train, cfg, workers=1, progress=False)
    assert (again.done, again.skipped, again.failed) == (0, len(train), [])
    with pytest.raises(ValueError, match="cache_dir"):
        fill_cache(train, _tiny_cfg(), progress=False)
