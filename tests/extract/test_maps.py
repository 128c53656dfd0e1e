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


@pytest.mark.parametrize("seed", range(20))
def test_draw_ramp_respects_occupancy_and_range(seed):
    rng = np.random.default_rng(seed)
    channel = _gradient_channel()
    cfg = MapConfig()
    drawn = draw_ramp(channel, 255, rng, cfg, max_occupancy=0.2, hard=False)
    if drawn is None:
        return  # giving up is allowed; the property is about accepted maps
    m, info = drawn
    assert m.dtype == np.float32 and m.shape == channel.shape
    assert m.min() >= 0 and m.max() <= 1
    # The fully-on region (above the high threshold) is bounded by max_occupancy.
    assert (m >= 1.0).mean() <= 0.2 + 1e-9
    assert info["low"] <= info["high"]


def test_draw_ramp_hard_gives_binary_map():
    for seed in range(10):
        drawn = draw_ramp(_gradient_channel(), 255, np.random.default_rng(seed), MapConfig(), 0.5, hard=True)
        if drawn is not None:
            assert set(np.unique(drawn[0]).tolist()) <= {0.0, 1.0}


def test_draw_ramp_all_zero_channel_is_rejected_not_nan():
    cfg = MapConfig(p_normalize_by_max=1.0)
    assert draw_ramp(np.zeros((50, 50), np.uint8), 255, np.random.default_rng(0), cfg, 0.5, False) is None


def test_hue_channel_range_is_179():
    # A hue channel at its maximum (179) must reach 1.0 when the threshold is below it.
    assert CHANNEL_MAX["H"] == 179
    lut = ramp_lut(norm=179.0, low=0.9, high=0.95)
    assert lut[179] == 1.0


def test_band_ratio_rule_limits_transition_band():
    cfg = MapConfig(max_band_to_lower_ratio=0.33, p_hard_ramp=0.0, p_low_retry=0.0)
    channel = _gradient_channel()
    for seed in range(30):
        drawn = draw_ramp(channel, 255, np.random.default_rng(seed), cfg, 0.5, hard=False)
        if drawn is None:
            continue
        m = drawn[0]
        band = ((m > 0) & (m < 1)).sum()
        lower = (m == 0).sum()
        assert band / min(lower, m.size - lower) <= 0.33 + 1e-6


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
