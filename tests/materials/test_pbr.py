"""The PBR folder layout (write/read round trip) and the readers of every naming convention."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from matseg.materials import pbr
from matseg.materials.make import normal_from_height
from matseg.materials.pbr import (
    PBRReadError,
    classify_map_name,
    find_materials,
    normal_convention_from_height,
    read_pbr,
    write_pbr,
)

SHARED_PBR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "pbr"


def _gray(seed: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)


def _rgb(seed: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _save(path: Path, array: np.ndarray) -> None:
    """Write with OpenCV (RGB in, like our maps); 16-bit arrays stay 16-bit in PNG/TIFF."""
    data = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    assert cv2.imwrite(str(path), data)


def _smooth_rgb(size: int = 32) -> np.ndarray:
    """JPEG-friendly colours (noise would be smeared by chroma subsampling)."""
    yy, xx = np.indices((size, size)) * (255 // (size - 1))
    return np.dstack([yy, xx, 255 - yy]).astype(np.uint8)


def _bump(size: int = 64) -> np.ndarray:
    yy, xx = np.indices((size, size))
    return np.clip(255 * np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * (size / 6) ** 2)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "name, prop, transform",
    [
        ("OriginColor.jpg", "color", ""),
        ("AmbientColor.jpg", "color", ""),
        ("Color.jpg", "color", ""),
        ("Planks014_2K-JPG_Color.jpg", "color", ""),
        ("Metal_Plate_008_basecolor.jpg", "color", ""),  # "metal" in the material name is not the role
        ("brick_wall_diff_2k.png", "color", ""),
        ("Name_COL_VAR1_3K.jpg", "color", ""),
        ("name-albedo.png", "color", ""),
        ("Base_Color.PNG", "color", ""),
        ("Planks014_2K-JPG_NormalGL.jpg", "normal", ""),
        ("Planks014_2K-JPG_NormalDX.jpg", "normal", "flip_green"),
        ("brick_wall_nor_dx_2k.png", "normal", "flip_green"),
        ("Name_Normal_DirectX.png", "normal", "flip_green"),
        ("MyMat_NormalOpenGL.png", "normal", ""),
        ("normal_dx.png", "normal", "flip_green"),
        ("Name_NRM_3K.png", "normal", ""),
        ("Name_GLOSS_3K.jpg", "roughness", "invert"),
        ("smoothness.png", "roughness", "invert"),
        ("rough.tif", "roughness", ""),
        ("Name_Metalness.jpg", "metallic", ""),
        ("metal.png", "metallic", ""),
        ("x_Displacement.tiff", "height", ""),
        ("brick_disp_4k.exr", "height", ""),
        ("Bump.jpg", "height", ""),
        ("AmbientOcclusion.png", "ao", ""),
        ("Name_Mixed_AO.png", "ao", ""),
        ("Name_REFL_3K.jpg", "specular", ""),
        ("spec.png", "specular", ""),
        ("Name_Transparency.jpg", "opacity", "invert"),
        ("alpha.png", "opacity", ""),
    ],
)
def test_classify_map_name(name, prop, transform):
    roles = classify_map_name(name)
    assert roles is not None and roles[0].prop == prop and roles[0].transform == transform


def test_classify_rejects_non_maps_and_unpacks_arm():
    for name in ("finished.txt", "meta.json", "Metal_Corrugated.jpg", "0a08b4d895_Score_6286_TileSize40_Texture.jpg"):
        assert classify_map_name(name) is None, name
    assert classify_map_name("Emission.jpg")[0].prop is None  # known, unused
    arm = classify_map_name("brick_arm_2k.jpg")
    assert [(r.prop, r.transform) for r in arm] == [("ao", "channel0"), ("roughness", "channel1"), ("metallic", "channel2")]


def test_write_then_read_round_trip(tmp_path):
    maps = {"color": _smooth_rgb(), "normal": normal_from_height(_bump(32), 8.0), "height": _bump(32),
            "roughness": _gray(1), "metallic": _gray(2), "ao": _gray(3), "specular": _gray(4), "opacity": _gray(5)}  # fmt: skip
    folder = write_pbr(tmp_path / "mat", maps, {"seed": 7}, jpeg_quality=100)
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted([*pbr.LAYOUT_FILES.values(), "meta.json", "Finished.txt"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left
    material = read_pbr(folder)
    for prop in pbr.PROPERTIES[1:]:  # lossless PNG maps come back exactly
        np.testing.assert_array_equal(material.maps[prop], maps[prop], err_msg=prop)
    assert np.abs(material.maps["color"].astype(int) - maps["color"]).max() <= 12  # JPEG
    assert material.meta["seed"] == 7 and material.meta["format"] == "matseg-pbr"
    assert material.report.missing == [] and material.report.found["color"] == "OriginColor.jpg"
    assert "matseg layout" in " ".join(material.report.notes)  # our normals are OpenGL by definition
    with Image.open(folder / "Height.png") as im:
        assert im.mode == "L"  # a proper 8-bit single-channel image


def test_write_pbr_validates_maps(tmp_path):
    good = {"color": _rgb(0), "height": _gray(1)}
    with pytest.raises(ValueError, match="'height' must be uint8 of shape \\(32, 32\\), got float32"):
        write_pbr(tmp_path / "a", {**good, "height": good["height"].astype(np.float32)})
    with pytest.raises(ValueError, match="shape \\(32, 32\\), got uint8 array of shape \\(16, 16\\)"):
        write_pbr(tmp_path / "a", {**good, "height": _gray(1, 16)})
    with pytest.raises(ValueError, match="unknown map"):
        write_pbr(tmp_path / "a", {**good, "emission": _gray(2)})
    with pytest.raises(ValueError, match="needs a 'color' map"):
        write_pbr(tmp_path / "a", {"height": _gray(1)})
    assert not (tmp_path / "a").exists()


def test_published_names_prefer_origin_color_whatever_the_listing_order(tmp_path):
    origin, ambient = _rgb(10), _rgb(11)
    for order in ("origin_first", "ambient_first"):
        folder = tmp_path / order
        folder.mkdir()
        files = [("OriginColor.png", origin), ("AmbientColor.png", ambient)]
        for name, arr in files if order == "origin_first" else files[::-1]:
            _save(folder / name, arr)
        for name, arr in (("Roughness.jpg", _rgb(1)), ("Height.jpg", _rgb(2)), ("Metallic.jpg", _rgb(3)), ("Specular.jpg", _rgb(4))):
            _save(folder / name, arr)  # published maps are 3-channel JPEGs
        (folder / "Finished.txt").write_text("")
        m = read_pbr(folder)
        np.testing.assert_array_equal(m.maps["color"], origin)
        assert m.maps["roughness"].ndim == 2 and m.report.ignored == {"AmbientColor.png": "OriginColor.png gives color"}
        assert m.report.missing == ["normal", "ao", "opacity"]
    only_ambient = tmp_path / "only_ambient"
    only_ambient.mkdir()
    _save(only_ambient / "AmbientColor.png", ambient)
    m = read_pbr(only_ambient)
    np.testing.assert_array_equal(m.maps["color"], ambient)
    assert any("AO baked in" in n for n in m.report.notes)


def test_reference_color_jpg_and_case_insensitive_names(tmp_path):
    folder = tmp_path / "ref"
    folder.mkdir()
    _save(folder / "COLOR.JPG", _rgb(0))
    _save(folder / "height.Png", _gray(1))
    (folder / "finished.txt").write_text("")
    m = read_pbr(folder)
    assert set(m.maps) == {"color", "height"} and m.report.found["height"] == "height.Png"
    np.testing.assert_array_equal(m.maps["height"], _gray(1))


def test_ambientcg_prefers_opengl_and_flips_directx(tmp_path):
    normal_gl = normal_from_height(_bump(), 10.0)
    normal_dx = pbr.flip_green(normal_gl)
    both = tmp_path / "both"
    both.mkdir()
    _save(both / "Rock_2K_Color.png", _rgb(0, 64))
    _save(both / "Rock_2K_NormalDX.png", normal_dx)
    _save(both / "Rock_2K_NormalGL.png", normal_gl)
    m = read_pbr(both)
    np.testing.assert_array_equal(m.maps["normal"], normal_gl)
    assert m.report.found["normal"] == "Rock_2K_NormalGL.png" and "Rock_2K_NormalDX.png" in m.report.ignored
    only_dx = tmp_path / "dx"
    only_dx.mkdir()
    _save(only_dx / "Rock_2K_Color.png", _rgb(0, 64))
    _save(only_dx / "Rock_2K_NormalDX.png", normal_dx)
    m = read_pbr(only_dx)
    np.testing.assert_array_equal(m.maps["normal"], normal_gl)  # green flipped back
    assert any("DirectX" in n and "by file name" in n for n in m.report.notes)


def test_unqualified_normal_convention_from_height(tmp_path):
    height = _bump()
    normal_gl = normal_from_height(height, 10.0)
    assert normal_convention_from_height(normal_gl, height)[0] == "opengl"
    assert normal_convention_from_height(pbr.flip_green(normal_gl), height)[0] == "directx"
    # A depth map (inverted height) flips red too: still recognised as OpenGL.
    assert normal_convention_from_height(normal_gl, 255 - height)[0] == "opengl"
    unrelated = normal_from_height(_gray(3, 64), 10.0)
    assert normal_convention_from_height(unrelated, height)[0] is None
    folder = tmp_path / "m"
    folder.mkdir()
    _save(folder / "Color.png", _rgb(0, 64))
    _save(folder / "Height.png", height)
    _save(folder / "Normal.png", pbr.flip_green(normal_gl))
    np.testing.assert_array_equal(read_pbr(folder).maps["normal"], normal_gl)
    np.testing.assert_array_equal(read_pbr(folder, normal_convention="name").maps["normal"], pbr.flip_green(normal_gl))
    np.testing.assert_array_equal(read_pbr(folder, normal_convention="directx").maps["normal"], normal_gl)


def test_polyhaven_arm_16bit_and_exr(tmp_path):
    folder = tmp_path / "ph"
    folder.mkdir()
    _save(folder / "brick_diff_2k.png", _rgb(0))
    arm = _rgb(5)
    _save(folder / "brick_arm_2k.png", arm)
    deep = np.random.default_rng(6).integers(0, 65536, (32, 32), dtype=np.uint16)
    _save(folder / "brick_disp_2k.png", deep)
    (folder / "brick_nor_gl_2k.exr").write_bytes(b"v/1\x01 not really an exr")
    m = read_pbr(folder)
    np.testing.assert_array_equal(m.maps["ao"], arm[:, :, 0])
    np.testing.assert_array_equal(m.maps["roughness"], arm[:, :, 1])
    np.testing.assert_array_equal(m.maps["metallic"], arm[:, :, 2])
    np.testing.assert_array_equal(m.maps["height"], np.rint(deep / 257.0).astype(np.uint8))
    assert "brick_nor_gl_2k.exr" in m.report.unreadable and "normal" in m.report.missing
    assert m.report.found["roughness"] == "brick_arm_2k.png (ARM green)"


def test_unreadable_candidate_falls_back_to_the_next(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "Albedo.png").write_bytes(b"\x89PNG broken")
    _save(folder / "Albedo.jpg", _rgb(1))
    m = read_pbr(folder)
    assert m.report.found["color"] == "Albedo.jpg" and "Albedo.png" in m.report.unreadable


def test_poliigon_gloss_reflection_and_opacity_conventions(tmp_path):
    folder = tmp_path / "pl"
    folder.mkdir()
    _save(folder / "Tiles_COL_VAR1_3K.jpg", _rgb(0))
    gloss, refl, transp = _gray(1), _gray(2), _gray(3)
    _save(folder / "Tiles_GLOSS_3K.png", gloss)
    _save(folder / "Tiles_REFL_3K.png", refl)
    _save(folder / "Tiles_TRANSPARENCY_3K.png", transp)
    _save(folder / "Tiles_EMISSION_3K.png", _gray(4))
    (folder / "Tiles_COL_VAR1_3K.jpg.txt").write_text("readme")
    m = read_pbr(folder)
    np.testing.assert_array_equal(m.maps["roughness"], 255 - gloss)
    np.testing.assert_array_equal(m.maps["specular"], refl)
    np.testing.assert_array_equal(m.maps["opacity"], 255 - transp)
    assert m.report.ignored == {"Tiles_EMISSION_3K.png": "not used"}
    assert "gloss inverted" in m.report.found["roughness"]


def test_exif_orientation_is_applied(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    img = Image.fromarray(_rgb(0, 40)[:20])
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    img.save(folder / "Color.jpg", exif=exif)
    assert read_pbr(folder).maps["color"].shape == (40, 20, 3)


def test_max_side_shrinks_maps(tmp_path):
    folder = write_pbr(tmp_path / "m", {"color": _rgb(0, 128), "height": _gray(1, 128)})
    m = read_pbr(folder, max_side=48)
    assert m.maps["color"].shape == (48, 48, 3) and m.maps["height"].shape == (48, 48)


@pytest.mark.parametrize("content", ["nothing", "no_color", "corrupt_color"])
def test_folders_without_a_colour_map_are_a_clear_error(tmp_path, content):
    folder = tmp_path / "bad"
    folder.mkdir()
    if content == "no_color":
        _save(folder / "Roughness.png", _gray(0))
    if content == "corrupt_color":
        (folder / "OriginColor.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(PBRReadError, match=str(folder)) as info:
        read_pbr(folder)
    expected = {"nothing": "files: none", "no_color": "Roughness.png", "corrupt_color": "could be decoded"}[content]
    assert expected in str(info.value)
    with pytest.raises(PBRReadError, match="does not exist"):
        read_pbr(tmp_path / "missing")


def test_find_materials(tmp_path):
    write_pbr(tmp_path / "a", {"color": _rgb(0)})
    write_pbr(tmp_path / "group" / "b", {"color": _rgb(1)})
    (tmp_path / "maps_only").mkdir()
    _save(tmp_path / "maps_only" / "Roughness.png", _gray(0))
    write_pbr(tmp_path / ".incomplete" / "c", {"color": _rgb(2)})
    (tmp_path / "empty").mkdir()
    found, bad = find_materials(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a", "group/b"]
    assert bad == {str(tmp_path / "maps_only"): "no base-colour map (found roughness)"}
    with pytest.raises(FileNotFoundError):
        find_materials(tmp_path / "nope")


def test_normal_vectors_round_trip():
    v = np.random.default_rng(0).normal(size=(16, 16, 3)).astype(np.float32)
    v[0, 0] = 0.0  # degenerate -> (0, 0, 1)
    rgb = pbr.vectors_to_normal(v)
    back = pbr.normal_to_vectors(rgb)
    np.testing.assert_allclose(np.linalg.norm(back, axis=2), 1.0, atol=1e-5)
    unit = v[1:] / np.linalg.norm(v[1:], axis=2, keepdims=True)
    assert np.abs(back[1:] - unit).max() < 0.01  # 8-bit quantisation
    np.testing.assert_array_equal(rgb[0, 0], (128, 128, 255))


def test_published_pbr_folders():
    if not SHARED_PBR.is_dir():
        pytest.skip(f"reference data {SHARED_PBR} not available")
    found, bad = find_materials(SHARED_PBR)
    assert len(found) == len([p for p in SHARED_PBR.iterdir() if p.is_dir()]) and not bad
    for folder in found:
        m = read_pbr(folder)
        assert {"color", "normal", "height", "roughness"} <= set(m.maps), folder
        assert ("metallic" in m.maps) == (folder / "Metallic.jpg").exists()
        assert m.report.found["color"] == "OriginColor.jpg"
        assert all(v.dtype == np.uint8 and v.shape[:2] == (512, 512) for v in m.maps.values())
        assert m.maps["height"].ndim == 2 and m.maps["normal"].ndim == 3
    # The published ambientCG normals are DirectX-style though named Normal.jpg: detected, flipped.
    rocks = read_pbr(SHARED_PBR / "AmbientCG_Rocks004")
    assert any("DirectX" in n for n in rocks.report.notes)
    assert normal_convention_from_height(rocks.maps["normal"], rocks.maps["height"])[0] == "opengl"


def test_report_formats(tmp_path):
    folder = write_pbr(tmp_path / "m", {"color": _rgb(0)}, {"x": 1})
    report = read_pbr(folder).report
    text = report.format()
    assert "color     <- OriginColor.jpg" in text and "missing: normal, height" in text
    assert json.loads(json.dumps(report.to_dict()))["missing"][0] == "normal"
