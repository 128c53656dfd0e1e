import numpy as np
import pytest

from matseg.config import load_config
from matseg.io.sources import ImageSource, default_photos, default_textures
from matseg.synth2d.scene import (
    Scene2DConfig,
    TextureConfig,
    _hue_shift,
    generate_scene,
    texture_layer,
    visible_materials,
)


@pytest.fixture(scope="module")
def sources():
    return default_photos(), default_textures()


@pytest.mark.parametrize("seed", range(6))
def test_scene_properties(sources, seed):
    cfg = load_config(Scene2DConfig, None, ["scene.size_min=120", "scene.size_max=260"])
    scene = generate_scene(*sources, np.random.default_rng(seed), cfg)
    h, w = scene.image.shape[:2]
    assert scene.image.dtype == np.uint8 and scene.image.shape == (h, w, 3)
    assert 120 <= h <= 260 and 120 <= w <= 260
    assert (scene.info["width"], scene.info["height"]) == (w, h)
    m = scene.weights
    assert m.shape == (scene.info["num_materials"], h, w) and 2 <= len(m) <= 10
    assert m.min() >= 0 and m.sum(0).max() <= 1 + 1e-5
    assert np.allclose(scene.roi, m.sum(0), atol=1e-5)
    assert len(visible_materials(m, cfg.scene.min_visible_pixels)) >= 2
    if scene.info["hard"]:
        assert set(np.unique(m).tolist()) <= {0.0, 1.0}
    assert len(scene.info["materials"]) == len(m)


def test_scene_is_deterministic(sources):
    cfg = Scene2DConfig()
    a = generate_scene(*sources, np.random.default_rng(11), cfg)
    b = generate_scene(*sources, np.random.default_rng(11), cfg)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.weights, b.weights) and a.info == b.info
    c = generate_scene(*sources, np.random.default_rng(12), cfg)
    assert a.info != c.info


def test_soft_and_hard_scenes_both_occur(sources):
    cfg = load_config(Scene2DConfig, None, ["scene.size_min=100", "scene.size_max=160"])
    soft_pixels = []
    for seed in range(16):
        s = generate_scene(*sources, np.random.default_rng(seed), cfg)
        soft_pixels.append(((s.weights > 0.02) & (s.weights < 0.98)).any(0).mean())
    assert max(soft_pixels) > 0.05  # soft transitions exist
    assert min(soft_pixels) == 0.0  # and hard scenes too


def test_uniform_colour_material_is_exact(sources):
    # Only uniform colours, no shadows: inside a hard scene's material the pixel equals its colour.
    cfg = load_config(
        Scene2DConfig, None,
        ["textures.p_texture=0", "shadows.p_shadow=0", "scene.p_hard=1", "scene.size_min=100", "scene.size_max=120"],
    )  # fmt: skip
    s = generate_scene(*sources, np.random.default_rng(3), cfg)
    for weight, rec in zip(s.weights, s.info["materials"]):
        inside = weight == 1
        if inside.any():
            assert np.all(s.image[inside] == np.array(rec["uniform_colour"], np.uint8))


def _run_lengths(line):
    edges = np.flatnonzero(np.diff(line.astype(np.int16)) != 0)
    return np.diff(edges)


def test_texture_scale_to_cover_keeps_aspect_ratio():
    # A wide checkerboard of 10 px squares into a tall scene. The reference computed both scale
    # ratios from the width (sx/w, sx/h) and then clamped each side separately, stretching the
    # texture; here the squares must stay square.
    yy, xx = np.mgrid[0:50, 0:400]
    board = (((yy // 10) + (xx // 10)) % 2 * 255).astype(np.uint8)
    tex = ImageSource.from_arrays("t", [np.dstack([board] * 3)])
    cfg = TextureConfig(p_tile=0.0, p_rot90=0, p_flip_lr=0, p_flip_ud=0, p_hue_shift=0)
    layer, rec = texture_layer(tex, 100, 300, np.random.default_rng(0), cfg)
    assert layer.shape == (300, 100, 3) and rec["placement"] == "cover"
    binary = layer[:, :, 0] > 127
    across = np.median(_run_lengths(binary[150]))
    down = np.median(_run_lengths(binary[:, 50]))
    assert across == pytest.approx(60, abs=2) and down == pytest.approx(60, abs=2)


def test_tiling_repeats_the_texture():
    tile = np.random.default_rng(1).integers(0, 255, (120, 130, 3), dtype=np.uint8)
    tex = ImageSource.from_arrays("t", [tile])
    cfg = TextureConfig(p_tile=1.0, p_tile_shrink=0.0, p_rot90=0, p_flip_lr=0, p_flip_ud=0, p_hue_shift=0)
    layer, _ = texture_layer(tex, 400, 300, np.random.default_rng(0), cfg)
    assert np.array_equal(layer[:, :130], layer[:, 130:260])
    assert np.array_equal(layer[:120], layer[120:240])


def test_hue_shift_wraps_at_180():
    import cv2

    rgb = cv2.cvtColor(np.full((1, 1, 3), (170, 255, 255), np.uint8), cv2.COLOR_HSV2RGB)
    shifted = cv2.cvtColor(_hue_shift(rgb, 20), cv2.COLOR_RGB2HSV)
    assert abs(int(shifted[0, 0, 0]) - 10) <= 1  # 170 + 20 wraps to 10, not 190 mod 255


def test_scene_with_shared_inputs(natural_images, shared_textures):
    photos = ImageSource.scan(natural_images, "natural images")
    textures = ImageSource.scan(shared_textures, "textures")
    s = generate_scene(photos, textures, np.random.default_rng(0), Scene2DConfig())
    assert 400 <= s.image.shape[0] <= 999 and 400 <= s.image.shape[1] <= 999
    assert all(m.get("texture", "").endswith(".jpg") or "uniform_colour" in m for m in s.info["materials"])


def test_config_rejects_impossible_values():
    from matseg.config import ConfigError

    with pytest.raises(ConfigError, match="size_min"):
        load_config(Scene2DConfig, None, ["scene.size_min=900", "scene.size_max=500"])
    with pytest.raises(ConfigError, match="p_hsv must be in"):
        load_config(Scene2DConfig, None, ["maps.p_hsv=1.5"])
    with pytest.raises(ConfigError, match="odd"):
        load_config(Scene2DConfig, None, ["maps.blur_kernels=[4]"])
