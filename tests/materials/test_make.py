"""Texture -> PBR: the map recipe (with the reference's bugs fixed) and the `matseg pbr make` job."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from matseg.cli import main
from matseg.materials import make
from matseg.materials.make import (
    MakeConfig,
    TextureChannels,
    PropertyMapConfig,
    ReflectiveConfig,
    make_pbr,
    normal_from_height,
    property_map,
    relative_rgb,
    rotate_hue,
    scale_to_range,
    textureless_pbr,
)
from matseg.materials.pbr import find_materials, normal_to_vectors, read_pbr


def _texture(seed: int = 0, h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3)).astype(np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    return np.clip(img + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)


def _fixed(**kwargs) -> PropertyMapConfig:
    """A recipe with every random branch off unless switched on."""
    base = dict(p_constant=0.0, source_cuts=[1.0, 1.0], p_invert=0.0, p_blur=0.0, p_unnormalised=0.0,
                p_random_low=0.0, p_random_high=0.0, p_threshold=0.0)  # fmt: skip
    return PropertyMapConfig(**{**base, **kwargs})


# ----------------------------------------------------------------------------- NumPy-2-safe maps


def test_scale_to_range_does_not_overflow_on_uint8_max_255():
    # The reference computed mp.max() + 1 in uint8: 255 + 1 wraps to 0 under NumPy 2 (NEP 50).
    mp = np.array([[0, 1, 128, 255]], np.uint8)
    out = scale_to_range(mp, 0, 255)
    assert out.dtype == np.float64 and np.all(np.isfinite(out))
    np.testing.assert_allclose(out, [[0.0, 255 / 256, 128 * 255 / 256, 255 * 255 / 256]])
    np.testing.assert_allclose(scale_to_range(mp, 100, 200), 100 + 100 * mp.astype(float) / 256)
    assert scale_to_range(np.zeros((2, 2), np.uint8), 10, 20).max() == 10.0  # all-zero map: low


def test_gray_map_of_a_white_texture_is_a_proper_ramp():
    ramp = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    rgb = np.dstack([ramp] * 3)  # max 255: the reference's overflow case
    mp, info = property_map(TextureChannels(rgb), np.random.default_rng(0), _fixed())
    expected = np.clip(np.rint(ramp.astype(np.float64) * 255 / 256), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(mp, expected)
    assert info == {"source": "gray", "scale": "range", "low": 0, "high": 255}
    assert mp.dtype == np.uint8 and len(np.unique(mp)) >= 250  # NumPy 2 + reference: a broken map


def _augmented(tex: np.ndarray, info: dict) -> np.ndarray:
    """The texture after the augmentation ``info["augment"]`` records (hue, then rot90, flips)."""
    aug = info["augment"]
    img = rotate_hue(tex, aug["hue_shift"]) if "hue_shift" in aug else tex
    for name, op in (("rot90", np.rot90), ("fliplr", np.fliplr), ("flipud", np.flipud)):
        if aug.get(name):
            img = op(img)
    return img


def _assert_property_map(m: np.ndarray, info: dict) -> None:
    """Values a property map may hold given its recorded draws (before metal post-processing)."""
    if "constant" in info:
        assert np.all(m == info["constant"])
        return
    if info["scale"] == "own":  # the channel's own 0-255 scale: nothing to bound beyond uint8
        return
    low, high = info["low"], info["high"]
    # low + (high - low) * v / (max + 1) lies in [low, high): the NumPy-2 overflow (dividing by
    # a wrapped 255 + 1 = 0) would give inf/NaN, i.e. 255 or 0 here.
    kept = m if "threshold" not in info else m[m > 0]
    assert kept.size == 0 or (kept.min() >= low and kept.max() <= high), (info, kept.min(), kept.max())
    if "threshold" in info:
        assert kept.size == 0 or kept.min() >= np.floor(info["threshold"])  # below the level: zeroed


def test_maps_are_proper_images_consistent_with_their_draws():
    cfg = MakeConfig()
    cfg.specular.probability = cfg.opacity.probability = cfg.ao.probability = 0.5
    seen = set()
    for seed in range(40):
        tex = _texture(seed)
        tex[0, 0] = 255  # every channel reaches 255: the reference's overflow case
        maps, info = make_pbr(tex, np.random.default_rng(seed), cfg)
        assert all(m.dtype == np.uint8 for m in maps.values())
        img = _augmented(tex, info)
        h, w = img.shape[:2]
        assert {m.shape for m in maps.values()} <= {(h, w), (h, w, 3)} and (h, w) in ((48, 64), (64, 48))
        # Colour: the augmented texture, plus the colour-only hue rotation when drawn.
        expected = rotate_hue(img, info["color_hue_shift"]) if "color_hue_shift" in info else img
        np.testing.assert_array_equal(maps["color"], expected)
        for name in ("height", "specular"):  # untouched by the metal post-processing
            if name in maps:
                _assert_property_map(maps[name], info["maps"][name])
        if "constant" not in info["maps"]["height"] and info["maps"]["height"]["scale"] == "range":
            assert info["maps"]["height"]["low"] == 0 and info["maps"]["height"]["high"] == 255
        # Metal post-processing leaves no metallic value strictly between the threshold and its target.
        metallic, threshold = maps["metallic"], cfg.reflective.threshold
        if info.get("reflective"):
            assert not ((metallic > threshold) & (metallic < 255)).any()
        if info.get("non_reflective"):
            assert not ((metallic > 0) & (metallic < threshold)).any()
        if not info.get("reflective") and not info.get("non_reflective"):
            _assert_property_map(metallic, info["maps"]["metallic"])
            _assert_property_map(maps["roughness"], info["maps"]["roughness"])
        # Normal: the height map's, at the recorded (rounded) strength; unit vectors.
        np.testing.assert_allclose(maps["normal"], normal_from_height(maps["height"], info["normal_strength"]), atol=1)
        np.testing.assert_allclose(np.linalg.norm(normal_to_vectors(maps["normal"]), axis=2), 1.0, atol=0.02)
        if "opacity" in maps:  # mostly opaque: inverted when not
            assert maps["opacity"].mean() >= 127 or info["maps"]["opacity"].get("cutout")
        if "ao" in maps:  # the height map's cavities at the recorded (rounded) radius and strength
            ao = info["maps"]["ao"]
            expected_ao = make.ao_from_height(maps["height"], ao["radius_px"], ao["strength"])
            assert np.abs(maps["ao"].astype(int) - expected_ao).max() <= 1
        seen |= {("reflective", bool(info.get("reflective"))), ("optional", "specular" in maps), ("ao", "ao" in maps)}
        seen |= {info["maps"]["metallic"].get("scale", "constant")}
    # The seeds reach both sides of the random branches the checks above depend on.
    assert {("reflective", True), ("reflective", False), ("optional", True), ("optional", False), ("ao", True),
            "range", "own"} <= seen  # fmt: skip


# ----------------------------------------------------------------------------- channels


def test_relative_rgb_is_stretched_by_its_own_range():
    rgb = np.array([[[255, 0, 0], [0, 0, 255], [100, 100, 100], [0, 0, 0]]], np.uint8)
    rel = relative_rgb(rgb, 0)
    # red / (mean + 10): 255 / 95 = 2.684 (max), 0 (min) -> 255 and 0; grey 100 / 110 -> 0.909 / 2.684 * 255
    np.testing.assert_allclose(rel[0], [255.0, 0.0, (100 / 110) / (255 / 95) * 255, 0.0], rtol=1e-5)
    assert relative_rgb(np.full((3, 3, 3), 77, np.uint8), 1).max() == 0.0  # constant channel
    channels = TextureChannels(rgb)
    np.testing.assert_array_equal(channels.raw(0), rel)
    np.testing.assert_allclose(channels.gray()[0], [85.0, 85.0, 100.0, 0.0], rtol=1e-6)


def test_inverted_relative_rgb_keeps_its_levels():
    # Reference: 255 - rel (rel ~0-2.6) / (max + 1) collapsed to 1-3 grey levels.
    tex = _texture(1)
    cfg = _fixed(source_cuts=[0.0, 1.0], p_invert=1.0)
    mp, info = property_map(TextureChannels(tex), np.random.default_rng(3), cfg)
    assert info["source"].startswith("rel_") and info["invert"]
    assert len(np.unique(mp)) > 50


def test_rotate_hue_wraps_at_180():
    red = np.full((2, 2, 3), (255, 0, 0), np.uint8)
    np.testing.assert_array_equal(rotate_hue(red, 180), red)
    np.testing.assert_array_equal(rotate_hue(red, 90)[0, 0], (0, 255, 255))  # 180 degrees: cyan
    np.testing.assert_array_equal(rotate_hue(red, 60 + 180), rotate_hue(red, 60))


def test_hsv_channels_come_from_rgb_data():
    blue = np.full((2, 2, 3), (0, 0, 255), np.uint8)
    hue = TextureChannels(blue).raw(3)
    assert hue[0, 0] == pytest.approx(120 * 255 / 180)  # OpenCV hue of blue is 120 (240 degrees)


# ----------------------------------------------------------------------------- recipe branches


def test_unnormalised_branch_keeps_the_channel_scale():
    tex = _texture(2)
    mp, info = property_map(TextureChannels(tex), np.random.default_rng(0), _fixed(p_unnormalised=1.0))
    np.testing.assert_array_equal(mp, np.clip(np.rint(tex.mean(axis=2, dtype=np.float32)), 0, 255).astype(np.uint8))
    assert info["scale"] == "own"


def test_thresholding_zeroes_values_below_a_level():
    tex = _texture(3)
    for seed in range(20):
        on = property_map(TextureChannels(tex), np.random.default_rng(seed), _fixed(p_threshold=1.0, p_random_low=1.0, p_random_high=1.0))
        # p_threshold=0 consumes the same draws up to the threshold decision: the same map, unthresholded.
        off, _ = property_map(TextureChannels(tex), np.random.default_rng(seed), _fixed(p_random_low=1.0, p_random_high=1.0))
        mp, info = on
        level = info["threshold"]
        assert info["low"] <= level <= info["high"]
        below, above = off < np.floor(level), off > np.ceil(level)
        assert not mp[below].any() and np.array_equal(mp[above], off[above])
        if below.any() and above.any():
            return
    pytest.fail("no seed gave a level inside the map's range")


def test_constant_maps():
    tex = _texture(4)
    mp, info = property_map(TextureChannels(tex), np.random.default_rng(0), _fixed(p_constant=1.0, constant_value=0))
    assert info == {"constant": 0} and not mp.any()
    values = {property_map(TextureChannels(tex), np.random.default_rng(s), _fixed(p_constant=1.0))[1]["constant"]
              for s in range(60)}  # fmt: skip
    assert {0, 255} <= values and len(values) > 5  # 0 / 255 / uniform


def _reflective_maps():
    metallic = np.array([[10, 150, 170, 250]], np.uint8)
    roughness = np.array([[100, 100, 100, 100]], np.uint8)
    return {"metallic": metallic, "roughness": roughness}


def test_non_reflective_makes_the_non_metal_pixels_rough():
    maps = _reflective_maps()
    cfg = ReflectiveConfig(p_reflective=0.0, p_non_reflective=1.0, p_roughness_follows=1.0)
    info = make._apply_reflective(maps, np.random.default_rng(0), cfg)
    np.testing.assert_array_equal(maps["metallic"], [[0, 0, 170, 250]])
    np.testing.assert_array_equal(maps["roughness"], [[255, 255, 100, 100]])  # reference: [[100, 100, 255, 255]]
    assert info == {"non_reflective": True, "non_reflective_rough": True}


def test_reflective_makes_metal_pixels_smooth_and_fully_metallic():
    maps = _reflective_maps()
    make._apply_reflective(maps, np.random.default_rng(0), ReflectiveConfig(p_reflective=1.0, p_non_reflective=0.0, p_roughness_follows=1.0))
    np.testing.assert_array_equal(maps["metallic"], [[10, 150, 255, 255]])
    np.testing.assert_array_equal(maps["roughness"], [[100, 100, 0, 0]])


# ----------------------------------------------------------------------------- normals and AO


def test_normal_from_height_is_opengl():
    yy, xx = np.indices((33, 33))
    hill = np.clip(255 - 12 * np.hypot(yy - 16, xx - 16), 0, 255).astype(np.uint8)
    normal = normal_from_height(hill, 4.0)
    # Above the peak the surface faces up the image: OpenGL green > 128; left of it, it faces left.
    assert normal[8, 16, 1] > 150 and normal[24, 16, 1] < 106
    assert normal[16, 8, 0] < 106 and normal[16, 24, 0] > 150
    np.testing.assert_allclose(np.linalg.norm(normal_to_vectors(normal), axis=2), 1.0, atol=1e-5)
    flat = normal_from_height(np.full((4, 4), 90, np.uint8), 20.0)
    assert np.all(flat == (128, 128, 255))
    with pytest.raises(ValueError, match="H, W >= 2"):
        normal_from_height(np.zeros((1, 5), np.uint8), 1.0)


def test_ao_darkens_cavities_only():
    h = np.full((21, 21), 200, np.uint8)
    h[10, 10] = 0  # a pit
    ao = make.ao_from_height(h, radius_px=2.0, strength=4.0)
    assert ao[10, 10] < 100 and ao[0, 0] == 255
    assert np.all(make.ao_from_height(np.full((8, 8), 50, np.uint8), 2.0, 4.0) == 255)


# ----------------------------------------------------------------------------- whole materials


def test_make_pbr_contract_and_determinism():
    cfg = MakeConfig()
    tex = _texture(5)
    a, info = make_pbr(tex, np.random.default_rng(11), cfg)
    b, _ = make_pbr(tex, np.random.default_rng(11), cfg)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert {"color", "normal", "height", "roughness", "metallic"} <= set(a)
    h, w = a["color"].shape[:2]
    assert a["normal"].shape == (h, w, 3) and a["height"].shape == (h, w)
    assert set(info["maps"]) >= {"height", "roughness", "metallic"}
    c, _ = make_pbr(tex, np.random.default_rng(12), cfg)
    assert any(not np.array_equal(a[k], c[k]) for k in ("height", "roughness", "metallic") if k in c)


def test_optional_maps_when_asked_for():
    cfg = MakeConfig()
    cfg.specular.probability = cfg.opacity.probability = cfg.ao.probability = 1.0
    cfg.height.p_constant = 0.0
    for seed in range(6):
        maps, info = make_pbr(_texture(seed), np.random.default_rng(seed), cfg)
        assert {"specular", "opacity", "ao"} <= set(maps)
        assert maps["opacity"].mean() >= 127 or info["maps"]["opacity"].get("cutout")  # mostly visible
        assert info["maps"]["ao"]["source"] == "height cavities"


def test_bad_textures_are_rejected_with_what_was_received():
    cfg = MakeConfig()
    with pytest.raises(ValueError, match="too small: 10x8 px"):
        make_pbr(np.zeros((8, 10, 3), np.uint8), np.random.default_rng(0), cfg)
    with pytest.raises(ValueError, match="got float32 array of shape \\(20, 20, 3\\)"):
        make_pbr(np.zeros((20, 20, 3), np.float32), np.random.default_rng(0), cfg)


def test_large_textures_are_shrunk_to_max_size():
    cfg = MakeConfig(max_size=32)
    maps, _ = make_pbr(_texture(0, 40, 80), np.random.default_rng(0), cfg)
    assert sorted(maps["color"].shape[:2]) == [16, 32]


def test_textureless_materials():
    cfg = MakeConfig().textureless
    maps, info = textureless_pbr(np.random.default_rng(0), cfg, color=(10, 20, 30))
    assert info["textureless"] and info["color"] == [10, 20, 30]
    assert all(len(np.unique(m.reshape(-1, m.shape[2]) if m.ndim == 3 else m, axis=0)) == 1 for m in maps.values())
    assert maps["roughness"][0, 0] == round(info["roughness"] * 255)
    assert np.all(maps["normal"] == (128, 128, 255)) and maps["color"].shape == (cfg.size, cfg.size, 3)
    whole = MakeConfig()
    whole.textureless.probability = 1.0
    tex = np.full((32, 32, 3), (200, 100, 50), np.uint8)
    maps, info = make_pbr(tex, np.random.default_rng(0), whole)
    assert info["textureless"] and np.all(maps["color"] == (200, 100, 50))


# ----------------------------------------------------------------------------- the batch job


def _run(*args: str) -> int:
    return main(["pbr", "make", "--no-progress", *args])


@pytest.fixture
def texture_folder(tmp_path) -> Path:
    folder = tmp_path / "textures"
    (folder / "sub").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(_texture(i)).save(folder / f"t{i}.png")
    Image.fromarray(_texture(9)).save(folder / "sub" / "t0.jpg", quality=95)
    return folder


def test_job_same_bytes_for_one_and_two_workers_and_resume(tmp_path, texture_folder, output_digest):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _run(str(texture_folder), "-o", str(a), "-w", "1", "--textureless", "2") == 0
    assert _run(str(texture_folder), "-o", str(b), "-w", "2", "--textureless", "2") == 0
    da = output_digest(a)
    assert da == output_digest(b) and len(find_materials(a)[0]) == 7
    assert {"t0", "sub__t0", "textureless_000001"} <= {k.split("/")[0] for k in da}
    meta = read_pbr(a / "t1").meta
    assert meta["source"]["texture"] == "t1.png" and meta["master_seed"] == 0 and "draws" in meta
    assert (a / "config.yaml").is_file()
    # A rerun skips finished materials; a material's bytes do not depend on the other textures.
    assert _run(str(texture_folder), "-o", str(a), "-w", "1", "--textureless", "3") == 0
    summary = json.loads((a / "summary.json").read_text())
    assert summary["skipped"] == 7 and summary["done"] == 1
    (texture_folder / "t0.png").unlink()
    c = tmp_path / "c"
    assert _run(str(texture_folder), "-o", str(c), "-w", "1") == 0
    dc = output_digest(c)
    assert dc and all(da[k] == v for k, v in dc.items())
    assert _run(str(texture_folder), "-o", str(tmp_path / "d"), "-w", "1", "--seed", "1") == 0
    assert output_digest(tmp_path / "d") != dc


def test_job_bad_inputs_are_listed_and_never_modified(tmp_path, texture_folder, capsys):
    Image.fromarray(_texture(0)[:8, :8]).save(texture_folder / "tiny.png")
    (texture_folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    full = (texture_folder / "sub" / "t0.jpg").read_bytes()
    (texture_folder / "truncated.jpg").write_bytes(full[: len(full) // 3])
    before = {p: p.read_bytes() for p in texture_folder.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    assert _run(str(texture_folder), "-o", str(out), "-w", "1") == 1
    err = capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert str(texture_folder / "corrupt.jpg") in summary["bad_inputs"] and "corrupt.jpg" in err
    failed = {f["name"]: f["reason"] for f in summary["failed"]}
    assert set(failed) == {"tiny", "truncated"}
    assert "tiny.png" in failed["tiny"] and "too small: 8x8 px" in failed["tiny"]
    assert "truncated.jpg" in failed["truncated"]
    assert summary["done"] == 5
    assert {p: p.read_bytes() for p in texture_folder.rglob("*") if p.is_file()} == before


def test_job_usage_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert _run(str(tmp_path / "empty"), "-o", str(tmp_path / "o")) == 2
    assert "no usable textures" in capsys.readouterr().err
    assert _run("-o", str(tmp_path / "o")) == 2
    assert "--textureless" in capsys.readouterr().err
    assert _run("--textureless", "2", "-o", str(tmp_path / "t"), "-w", "1") == 0
    assert _run("--textureless", "2", "-o", str(tmp_path / "t"), "-w", "1", "--set", "roughness.p_invert=0.1") == 2
    assert "roughness.p_invert" in capsys.readouterr().err
    assert _run("--textureless", "1", "-o", str(tmp_path / "x"), "--set", "roughness.p_blur=2") == 2
    assert "p_blur must be in [0, 1]" in capsys.readouterr().err
