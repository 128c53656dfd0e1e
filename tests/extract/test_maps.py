import cv2
import numpy as np
import pytest

from matseg.extract.maps import (
    CHANNEL_MAX,
    MapConfig,
    PatternMapError,
    combine_maps,
    draw_ramp,
    pattern_maps,
    ramp_lut,
    random_view,
)
from matseg.io.sources import ImageSource


def _gradient_channel(h=200, w=256):
    return np.tile(np.arange(w, dtype=np.uint8), (h, 1))


def _accepted_ramps(channel, channel_max, cfg, max_occupancy, hard, seeds, min_accepted):
    """``draw_ramp`` over ``seeds``: the accepted ``(map, info)`` pairs, at least ``min_accepted`` of them.

    Giving up (``None``) is allowed for one draw, but a rule that rejected everything would
    make every per-map property vacuous, so a minimum share must be accepted.
    """
    drawn = [draw_ramp(channel, channel_max, np.random.default_rng(s), cfg, max_occupancy, hard) for s in seeds]
    accepted = [d for d in drawn if d is not None]
    assert len(accepted) >= min_accepted, f"only {len(accepted)} of {len(drawn)} draws accepted"
    return accepted


def _assert_is_ramp(m, channel, norm, low, high):
    """``m == clip((v / norm - low) / (high - low), 0, 1)`` for the channel values ``v``, up to
    the 5-decimal rounding of the thresholds ``info`` records (values that close are skipped)."""
    x = channel.astype(np.float64) / norm
    near = (np.abs(x - low) < 1e-4) | (np.abs(x - high) < 1e-4)
    assert np.all(m[(x > high) & ~near] == 1.0)
    assert np.all(m[(x < low) & ~near] == 0.0)
    if high - low > 1e-3:
        mid = (x > low) & (x < high) & ~near
        np.testing.assert_allclose(m[mid], (x[mid] - low) / (high - low), atol=2e-5 / (high - low) + 1e-6)


def test_ramp_lut_hand_values():
    lut = ramp_lut(norm=255.0, low=0.2, high=0.6)
    # v/255 below 0.2 -> 0, above 0.6 -> 1, linear in between.
    assert lut[0] == 0 and lut[51] == 0  # 51/255 = 0.2
    assert lut[154] == 1.0  # 154/255 = 0.604
    assert lut[102] == pytest.approx((102 / 255 - 0.2) / 0.4, abs=1e-5)
    assert np.all(np.diff(lut) >= 0)


def test_ramp_lut_hard_step_when_low_equals_high():
    lut = ramp_lut(norm=100.0, low=0.5, high=0.5)
    assert set(np.unique(lut).tolist()) == {0.0, 1.0}
    assert lut[50] == 0.0 and lut[51] == 1.0


def test_draw_ramp_respects_occupancy_and_range():
    channel = _gradient_channel()  # every value 0..255 once per row: vmax = 255, so norm = 255 either way
    cfg = MapConfig()
    accepted = _accepted_ramps(channel, 255, cfg, 0.2, False, range(20), min_accepted=15)
    soft = 0
    for m, info in accepted:
        assert m.dtype == np.float32 and m.shape == channel.shape
        assert info["norm"] in ("max", "range") and 0 < info["low"] <= info["high"] < 1
        _assert_is_ramp(m, channel, 255.0, info["low"], info["high"])
        # The fully-on region (above the high threshold) is bounded by max_occupancy, so on
        # this uniform gradient the high threshold sits in the top 20 %.
        assert (m >= 1.0).mean() <= 0.2 and info["high"] >= 0.8 - 1 / 255
        assert m.sum() > cfg.min_map_pixels
        soft += info["low"] < info["high"]
    assert 0 < soft < len(accepted)  # p_hard_ramp = 0.5: both soft ramps and hard steps occur


def test_draw_ramp_hard_gives_binary_map():
    channel = _gradient_channel()
    for m, info in _accepted_ramps(channel, 255, MapConfig(), 0.5, True, range(10), min_accepted=8):
        assert info["low"] == info["high"]
        np.testing.assert_array_equal(m, (channel / 255.0 > info["high"]).astype(np.float32))
        assert 0 < m.mean() <= 0.5  # on somewhere, at most max_occupancy


def test_draw_ramp_all_zero_channel_is_rejected_not_nan():
    cfg = MapConfig(p_normalize_by_max=1.0)
    assert draw_ramp(np.zeros((50, 50), np.uint8), 255, np.random.default_rng(0), cfg, 0.5, False) is None


def _hue_channel(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 0]


def test_hue_channel_is_scaled_by_179_and_does_not_wrap():
    assert CHANNEL_MAX["H"] == 179
    # A sweep round the hue circle (OpenCV 8-bit hue = degrees / 2: 0..179, 180 wraps to 0),
    # plus two nearly identical reds on either side of the wrap: (255, 0, 4) is hue 359.1
    # degrees, rounded to 360 = 0; (255, 0, 8) is 358.1 degrees = 179.
    sweep = np.zeros((60, 180, 3), np.uint8)
    sweep[..., 0], sweep[..., 1:] = np.arange(180), 255
    rgb = np.concatenate([cv2.cvtColor(sweep, cv2.COLOR_HSV2RGB), np.zeros((60, 20, 3), np.uint8)], axis=1)
    rgb[:, 180:190], rgb[:, 190:] = (255, 0, 4), (255, 0, 8)
    hue = _hue_channel(rgb)
    np.testing.assert_array_equal(hue[0, :180], np.arange(180))
    assert np.all(hue[:, 180:190] == 0) and np.all(hue[:, 190:] == 179)

    cfg = MapConfig(p_normalize_by_max=0.0)  # "range": divide by the channel's full range
    accepted = _accepted_ramps(hue, CHANNEL_MAX["H"], cfg, 0.5, False, range(40), min_accepted=30)
    for m, info in accepted:
        assert info["norm"] == "range"
        _assert_is_ramp(m, hue, 179.0, info["low"], info["high"])
        # The ramp is linear in hue, not circular: the two reds get opposite ends of it.
        assert np.all(m[:, 190:] == 1.0) and np.all(m[:, 180:190] == 0.0)
    # Scaled by 179 the whole circle is reachable: high thresholds above 179/255 (where the
    # reference's division by 255 tops out) are drawn and accepted.
    above = sum(info["high"] > 179 / 255 for _, info in accepted)
    assert above >= 10
    # The reference's scale for comparison: with 255 no such threshold can ever be accepted.
    assert all(info["high"] <= 179 / 255 for _, info in _accepted_ramps(hue, 255, cfg, 0.5, False, range(40), 30))


def _band_ratio(m: np.ndarray) -> float:
    band = ((m > 0) & (m < 1)).sum()
    lower = (m == 0).sum()
    return band / min(lower, m.size - lower)


def test_band_ratio_rule_limits_transition_band():
    channel = _gradient_channel()
    cfg = MapConfig(max_band_to_lower_ratio=0.33, p_hard_ramp=0.0, p_low_retry=0.0)
    for m, info in _accepted_ramps(channel, 255, cfg, 0.5, False, range(30), min_accepted=20):
        assert info["low"] < info["high"]  # soft ramps only (p_hard_ramp = 0)
        assert _band_ratio(m) <= 0.33 + 1e-6
    # Without the rule most of these draws have a wider band: the rule is what bounds it.
    free = _accepted_ramps(channel, 255, MapConfig(p_hard_ramp=0.0, p_low_retry=0.0), 0.5, False, range(30), 20)
    assert sum(_band_ratio(m) > 0.33 for m, _ in free) >= len(free) // 2


def test_combine_priority_and_even_sum_at_most_one():
    rng = np.random.default_rng(3)
    for p_even in (0.0, 1.0):
        cfg = MapConfig(p_even=p_even, p_blur=1.0)
        maps = rng.random((5, 40, 60)).astype(np.float32)
        weights, info = combine_maps(maps, rng, cfg, hard=False)
        assert info["mode"] == ("even" if p_even else "priority")
        total = weights.sum(0)
        assert weights.min() >= 0 and total.max() <= 1 + 1e-5
        if p_even:  # even: nothing left for the background where any map is on
            assert np.allclose(total, 1, atol=1e-4)


def test_combine_priority_hand_example():
    maps = np.array([[[0.6]], [[0.7]], [[1.0]]], np.float32)
    weights, _ = combine_maps(maps, np.random.default_rng(0), MapConfig(p_even=0.0, p_blur=0.0), hard=False)
    # p=1: 0.6, p=0.4: 0.4*0.7=0.28, p=0.12: 0.12
    assert weights[:, 0, 0] == pytest.approx([0.6, 0.28, 0.12], abs=1e-6)


def test_combine_hard_is_one_hot_with_background_below_min_weight():
    maps = np.array([[[0.05, 0.5]], [[0.02, 0.9]]], np.float32)
    weights, _ = combine_maps(maps, np.random.default_rng(0), MapConfig(p_even=1.0, p_blur=0.0), hard=True)
    # pixel 0: even -> 0.71/0.29: max >= 0.1 -> one-hot on map 0; pixel 1: map 1 wins.
    assert weights[:, 0, 0].tolist() == [1.0, 0.0]
    assert weights[:, 0, 1].tolist() == [0.0, 1.0]
    maps = np.array([[[0.05]], [[0.02]]], np.float32)
    weights, _ = combine_maps(maps, np.random.default_rng(0), MapConfig(p_even=0.0, p_blur=0.0), hard=True)
    assert weights.sum() == 0  # strongest map below 0.1 -> background


def test_random_view_shapes_and_scale():
    img = np.arange(100 * 200 * 3, dtype=np.uint32).reshape(100, 200, 3).astype(np.uint8)
    rng = np.random.default_rng(0)
    assert random_view(img, 50, 40, 1.0, rng).shape == (40, 50, 3)
    assert random_view(img, 400, 300, 0.25, rng).shape == (300, 400, 3)  # upsampled
    # Scale 1 is an exact crop of the source.
    view = random_view(img[:, :, 0], 30, 20, 1.0, np.random.default_rng(1))
    found = any(
        np.array_equal(img[y : y + 20, x : x + 30, 0], view) for y in range(81) for x in range(171)
    )
    assert found


def test_pattern_maps_from_real_photos(natural_images):
    source = ImageSource.scan(natural_images, "natural images")
    for seed in range(4):
        weights, info = pattern_maps(source, 420, 380, 4, np.random.default_rng(seed), MapConfig(), 0.3, False)
        assert weights.shape == (4, 380, 420) and weights.dtype == np.float32
        assert weights.min() >= 0 and weights.sum(0).max() <= 1 + 1e-5
        assert len(info["maps"]) == 4
        assert {m["channel"] for m in info["maps"]} <= {"R", "G", "B", "H", "S", "V"}


def test_pattern_maps_deterministic(natural_images):
    source = ImageSource.scan(natural_images, "natural images")
    a, ia = pattern_maps(source, 300, 300, 3, np.random.default_rng(5), MapConfig(), 0.3, False)
    b, ib = pattern_maps(source, 300, 300, 3, np.random.default_rng(5), MapConfig(), 0.3, False)
    assert np.array_equal(a, b) and ia == ib


def test_pattern_maps_gives_up_on_uniform_photos(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(tmp_path / "flat.png")
    source = ImageSource.scan(tmp_path, "natural images")
    with pytest.raises(PatternMapError, match="no usable pattern map"):
        pattern_maps(source, 64, 64, 2, np.random.default_rng(0), MapConfig(max_source_attempts=5), 0.3, False)


def test_pattern_maps_skips_unreadable_photo_with_warning(tmp_path, photo_folder):
    # A truncated PNG passes the header scan but fails to decode: redrawn and reported.
    data = (photo_folder / "photo0.png").read_bytes()
    (photo_folder / "photo0.png").write_bytes(data[: len(data) // 3])
    source = ImageSource.scan(photo_folder, "natural images")
    assert len(source) == 4
    warnings: list[str] = []
    for seed in range(6):
        pattern_maps(source, 200, 200, 3, np.random.default_rng(seed), MapConfig(), 0.3, False, warnings)
    assert any("photo0.png" in w for w in warnings)
