"""synth3d without Blender: geometry, random draws, projection, AOV post-processing, config and CLI.

These run in every environment (the rendering tests are in test_render.py and need bpy).
"""

from __future__ import annotations

import colorsys
import json
import math
from pathlib import Path

import numpy as np
import pytest

from matseg.config import ConfigError, load_config
from matseg.io.sources import ImageSource
from matseg.synth3d.annotation import aov_names, weights_from_aovs
from matseg.synth3d.config import Synth3DConfig
from matseg.synth3d.materials import (
    blender_channels,
    draw_bsdf,
    draw_material_plan,
    draw_split,
    leaf_weight_paths,
    leaf_weights,
    ramp,
    scan_pbr_roots,
    split_tree,
)
from matseg.synth3d.objects import (
    SHAPES,
    MeshData,
    draw_main_layout,
    euler_matrix,
    join_meshes,
    list_mesh_files,
    merge_close_vertices,
    object_mesh,
    place_mesh,
    primitive,
)
from matseg.synth3d.world import (
    camera_parameters,
    choose_camera,
    draw_camera,
    draw_distractors,
    draw_hdri,
    draw_lights,
    fraction_in_view,
    list_hdris,
    look_at_euler,
    project_points,
)

CFG = Synth3DConfig()


def _faces(mesh: MeshData):
    start = 0
    for n in mesh.face_sizes:
        yield mesh.face_verts[start : start + n]
        start += n


def signed_volume(mesh: MeshData) -> float:
    vol = 0.0
    for idx in _faces(mesh):
        p = mesh.verts[idx]
        for k in range(1, len(idx) - 1):
            vol += float(np.dot(p[0], np.cross(p[k], p[k + 1]))) / 6
    return vol


def edge_use(mesh: MeshData) -> dict:
    """Directed edge counts: a closed, consistently wound surface uses each edge once per direction."""
    used: dict = {}
    for idx in _faces(mesh):
        for a, b in zip(idx, np.roll(idx, -1)):
            used[(int(a), int(b))] = used.get((int(a), int(b)), 0) + 1
    return used


# ----------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("name", SHAPES)
def test_primitives_are_closed_outward_and_unit_sized(name):
    mesh = primitive(name)
    used = edge_use(mesh)
    assert all(c == 1 for c in used.values()), "an edge is used twice in one direction (bad winding)"
    assert all((b, a) in used for (a, b) in used), "open boundary"
    expected = {"cube": 1.0, "sphere": 4 / 3 * math.pi / 8, "cylinder": math.pi / 4, "cone": math.pi / 12,
                "torus": 2 * math.pi**2 * 0.325 * 0.175**2}[name]  # fmt: skip
    assert signed_volume(mesh) == pytest.approx(expected, rel=0.03)  # positive: faces wound outward
    lo, hi = mesh.bbox()
    assert (hi - lo).max() == pytest.approx(1.0, abs=1e-9)


def test_merge_turns_collapsed_quads_into_triangles_and_drops_slivers():
    # Vertex 3 coincides with vertex 2: the quad 0-1-2-3 becomes the triangle 0-1-2 and the
    # triangle 2-3-4 collapses to a line and is dropped.
    verts = [[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1e-9], [0, 1, 0]]
    mesh = MeshData(verts, [4, 3], [0, 1, 2, 3, 2, 3, 4], [True, False])
    merged = merge_close_vertices(mesh)
    assert len(merged.verts) == 4
    assert merged.face_sizes.tolist() == [3] and merged.smooth.tolist() == [True]
    assert np.allclose(merged.verts[merged.face_verts], [[0, 0, 0], [1, 0, 0], [1, 1, 0]])


def test_euler_matrix_is_blenders_xyz_order():
    x, y, z = 0.3, -0.7, 1.9
    rx = euler_matrix((x, 0, 0))
    ry = euler_matrix((0, y, 0))
    rz = euler_matrix((0, 0, z))
    assert np.allclose(euler_matrix((x, y, z)), rz @ ry @ rx)
    assert np.allclose(rz @ [1, 0, 0], [math.cos(z), math.sin(z), 0])  # right-handed, counter-clockwise
    assert np.allclose(euler_matrix((x, y, z)).T @ euler_matrix((x, y, z)), np.eye(3))


def test_place_mesh_rotates_then_normalises_size_and_centre():
    mesh = primitive("cube").transformed(np.diag([2.0, 1.0, 0.5]))
    placed = place_mesh(mesh, (0, 0, math.pi / 2), 10.0, (1, 2, 3))
    lo, hi = placed.bbox()
    assert np.allclose((lo + hi) / 2, [1, 2, 3])
    assert np.allclose(hi - lo, [5.0, 10.0, 2.5])  # the long x side is now along y, largest side = 10


def test_join_shifts_indices():
    a = MeshData([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [3], [0, 1, 2])
    joined = join_meshes([a, a.transformed(np.eye(3), (5, 0, 0))])
    assert list(joined.face_verts) == [0, 1, 2, 3, 4, 5] and joined.verts[3, 0] == 5


def test_layout_follows_the_reference_ranges():
    rng = np.random.default_rng(0)
    layouts = [draw_main_layout(rng, CFG.objects, []) for _ in range(400)]
    kinds = [lay["layout"] for lay in layouts]
    assert 0.42 < kinds.count("single") / 400 < 0.58 and "few" in kinds and "many" in kinds
    for lay in layouts:
        for ob in lay["objects"]:
            assert ob["kind"] == "shape" and len(ob["rotation"]) == 3
            lo_size = {"single": 40, "few": 10, "many": 10}[lay["layout"]]
            hi_size = {"single": 60, "few": 60, "many": 30}[lay["layout"]]
            assert lo_size <= ob["size"] <= hi_size
        if lay["layout"] == "single":
            assert lay["objects"][0]["location"][:2] == [0.0, 0.0]
        if lay["layout"] == "many":
            assert len(lay["objects"]) <= 11
    # Real rotations: angles spread over the circle, and the placed geometry is rotated.
    angles = np.array([ob["rotation"] for lay in layouts for ob in lay["objects"]])
    assert angles.min() >= 0 and angles.max() <= 2 * math.pi and angles.std() > 1.5
    ob = layouts[0]["objects"][0]
    assert np.isclose((np.subtract(*object_mesh(ob).bbox()[::-1])).max(), ob["size"])


def test_user_meshes_are_drawn_when_given(tmp_path):
    (tmp_path / "a.obj").write_text("v 0 0 0\n")
    (tmp_path / "b.GLB").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    files = list_mesh_files(tmp_path)
    assert [f.name for f in files] == ["a.obj", "b.GLB"]
    rng = np.random.default_rng(1)
    kinds = [ob["kind"] for _ in range(50) for ob in draw_main_layout(rng, CFG.objects, files)["objects"]]
    assert "mesh" in kinds and "shape" in kinds
    (tmp_path / "sub").mkdir()
    with pytest.raises(ValueError, match="no mesh files"):
        list_mesh_files(tmp_path / "sub")


# ----------------------------------------------------------------------------- materials


def test_split_tree_halves_like_the_reference():
    def leaves(node):
        return [node["leaf"]] if "leaf" in node else leaves(node["children"][0]) + leaves(node["children"][1])

    for n in range(1, 9):
        tree = split_tree(n)
        assert leaves(tree) == list(range(n))
        if n > 1:
            assert len(leaves(tree["children"][0])) == n // 2
            assert len(leaves(tree["children"][1])) == n - n // 2


def test_leaf_weights_are_products_that_sum_to_one():
    rng = np.random.default_rng(3)
    photos = ImageSource.from_arrays("photos", [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)])
    plan = draw_material_plan(rng, CFG.materials, CFG.splits, [], photos)
    paths = leaf_weight_paths(plan["tree"])
    n_splits = len(plan["leaves"]) - 1
    factors = {i: rng.random(1000) for i in range(n_splits)}
    weights = leaf_weights(plan["tree"], factors)
    assert np.allclose(sum(weights.values()), 1.0)
    # A hand-checked case: 3 leaves -> leaf 0 on the first branch of the root (1 - f0),
    # leaves 1 and 2 under the second branch: f0 (1 - f1) and f0 f1.
    tree = split_tree(3)
    tree["split"], tree["children"][1]["split"] = {"id": 0}, {"id": 1}
    w = leaf_weights(tree, {0: np.array(0.25), 1: np.array(0.5)})
    assert [float(w[i]) for i in range(3)] == [0.75, 0.125, 0.125]
    assert len(paths) == len(plan["leaves"])


def test_ramp_soft_is_linear_and_hard_is_a_step():
    v = np.array([0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 1.0])
    assert np.allclose(ramp(v, 0.3, 0.7, hard=False), [0, 0, 0.25, 0.5, 0.75, 1, 1])
    assert list(ramp(v, 0.5, 0.5, hard=True)) == [0, 0, 0, 0, 1, 1, 1]


def test_soft_splits_have_low_below_high_and_hard_ones_a_single_threshold():
    rng = np.random.default_rng(0)
    photos = ImageSource.from_arrays("p", [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)])
    splits = [draw_split(rng, CFG.splits, photos) for _ in range(300)]
    hard = [s for s in splits if s["hard"]]
    soft = [s for s in splits if not s["hard"]]
    assert 0.65 < len(hard) / 300 < 0.85
    assert all(s["low"] == s["high"] and 0.3 <= s["high"] <= 0.7 for s in hard)
    assert all(0.75 * s["high"] - 1e-5 <= s["low"] < s["high"] and 0.4 <= s["high"] <= 0.8 for s in soft)
    assert {s["mode"] for s in splits} == {"RGB", "HSV", "HSL"}
    assert {s["coordinates"] for s in splits} == {"generated", "object", "uv"}


def test_unbalanced_splits_are_redrawn():
    # A photo that is almost all dark: most thresholds leave the second branch empty.
    dark = np.zeros((64, 64, 3), np.uint8)
    dark[:8] = 255
    photos = ImageSource.from_arrays("p", [dark])
    rng = np.random.default_rng(5)
    splits = [draw_split(rng, CFG.splits, photos) for _ in range(30)]
    assert all(min(s["second_branch_share"], 1 - s["second_branch_share"]) > 0.01 for s in splits)
    assert any(s["attempts"] > 1 for s in splits)


def test_blender_channels_match_colorsys():
    rng = np.random.default_rng(0)
    rgb = rng.random((200, 3)).astype(np.float32)
    rgb[0] = [0.5, 0.5, 0.5]
    hsv = blender_channels(rgb, "HSV")
    hsl = blender_channels(rgb, "HSL")
    for px, a, b in zip(rgb, hsv, hsl):
        h, s, v = colorsys.rgb_to_hsv(*px)
        h2, l2, s2 = colorsys.rgb_to_hls(*px)
        assert np.allclose(a, [h, s, v], atol=1e-5)
        assert np.allclose(b, [h2, s2, l2], atol=1e-5)
    assert np.array_equal(blender_channels(rgb, "RGB"), rgb)


def test_bsdf_draws_follow_the_digest_and_blender5_names():
    rng = np.random.default_rng(0)
    draws = [draw_bsdf(rng, 0.1) for _ in range(2000)]
    blender5 = {"Base Color", "Metallic", "Roughness", "IOR", "Alpha", "Subsurface Weight", "Specular IOR Level",
                "Specular Tint", "Anisotropic", "Anisotropic Rotation", "Transmission Weight", "Coat Weight",
                "Coat Roughness", "Sheen Weight", "Sheen Tint", "Emission Color", "Emission Strength"}  # fmt: skip
    assert all(set(d) - {"kind"} == blender5 for d in draws)
    transparent = [d for d in draws if d["kind"] == "transparent"]
    opaque = [d for d in draws if d["kind"] == "opaque"]
    assert 0.07 < len(transparent) / 2000 < 0.13
    assert all(0.6 <= d["Alpha"] <= 1 and d["Emission Strength"] == 0 for d in transparent)
    assert all(d["Alpha"] == 1 and 1 <= d["IOR"] <= 3.5 for d in opaque)
    assert 0.01 < np.mean([d["Emission Strength"] > 0 for d in opaque]) < 0.05


def test_bsdf_specular_is_physical_from_the_draws_own_ior(monkeypatch):
    # Specular IOR Level (digest §1.7.3): U (p=0.12), 0.5 (p=0.44), else the "physical"
    # ((IOR - 1) / (IOR + 1))^2 / 0.08 of the draw's own IOR; the reference computed the
    # transparent kind's from the specular value. Which branch each draw took is read by peeking
    # at the generator (a copy) when the level is drawn, so every draw's value is checked.
    import copy

    from matseg.synth3d import materials

    peeked: list[tuple[float, float]] = []
    real = materials._specular_level

    def spy(rng, ior):
        ahead = copy.deepcopy(rng)
        peeked.append((ahead.random(), ahead.random()))  # the branch draw, and U if that branch
        return real(rng, ior)

    monkeypatch.setattr(materials, "_specular_level", spy)
    rng = np.random.default_rng(1)
    draws = [draw_bsdf(rng, 0.3) for _ in range(1500)]
    assert len(peeked) == len(draws)
    branches = {}
    for d, (r, u) in zip(draws, peeked):
        ior, level = d["IOR"], d["Specular IOR Level"]
        if r < 0.12:
            branch, expected = "uniform", u
        elif r < 0.56:
            branch, expected = "default", 0.5
        else:
            branch, expected = "physical", ((ior - 1) / (ior + 1)) ** 2 / 0.08
        assert level == pytest.approx(expected, abs=2e-5), (d["kind"], branch, ior)
        branches[d["kind"], branch] = branches.get((d["kind"], branch), 0) + 1
    # Both kinds reach every branch, the physical one often enough to matter.
    for kind in ("opaque", "transparent"):
        assert all(branches.get((kind, b), 0) >= 5 for b in ("uniform", "default", "physical")), branches
    assert branches["transparent", "physical"] >= 100
    # Hand values: IOR 1.5 is F0 = 0.04, Blender's default level 0.5; IOR 2 is F0 = 1/9, level 25/18.
    assert materials._physical_specular(1.5) == pytest.approx(0.5)
    assert materials._physical_specular(2.0) == pytest.approx(25 / 18)


def test_pbr_folders_are_found_with_the_shared_reader(tmp_path, photo_maker):
    from PIL import Image

    rng = np.random.default_rng(0)

    def images(folder: Path, names):
        folder.mkdir(parents=True)
        for name in names:
            Image.fromarray(photo_maker(rng, 16, 16)).save(folder / name)

    images(tmp_path / "m1", ["AmbientColor.jpg", "OriginColor.jpg", "Roughness.jpg", "Normal.jpg", "Height.jpg"])
    images(tmp_path / "nested" / "m2", ["wood_albedo.png", "wood_gloss.png", "wood_disp.png"])
    images(tmp_path / "nocolour", ["Roughness.jpg"])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "Color.jpg").write_bytes(b"not a jpeg")
    materials, bad = scan_pbr_roots([tmp_path])
    assert [Path(m["id"]).name for m in materials] == ["m1", "m2"]
    assert materials[0]["found"]["color"] == "OriginColor.jpg"  # never AmbientColor when a plain colour exists
    assert materials[1]["found"]["roughness"].startswith("wood_gloss.png")  # gloss, inverted by the reader
    assert {Path(p).name for p in bad} == {"nocolour", "broken"}
    with pytest.raises(ValueError, match="no usable PBR"):
        scan_pbr_roots([tmp_path / "nocolour"])
    with pytest.raises(FileNotFoundError):
        scan_pbr_roots([tmp_path / "missing"])


def test_published_pbr_folders_are_read(train_sample):
    root = train_sample.parent / "pbr"
    materials, bad = scan_pbr_roots([root])
    assert len(materials) == 10 and not bad
    assert all(m["found"]["color"] == "OriginColor.jpg" for m in materials)


# ----------------------------------------------------------------------------- world and camera


def test_empty_or_missing_hdri_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no HDRI files"):
        list_hdris(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_hdris(tmp_path / "nope")
    (tmp_path / "a.HDR").write_bytes(b"")
    assert [p.name for p in list_hdris(tmp_path)] == ["a.HDR"]


def test_world_draws():
    rng = np.random.default_rng(0)
    hdris = [Path("a.hdr"), Path("b.exr")]
    plans = [draw_hdri(rng, CFG.world, hdris) for _ in range(500)]
    assert all(1 <= p["strength"] <= 2.5 for p in plans)
    untilted = [p for p in plans if p["rotation"][0] == 0]
    assert 0.4 < len(untilted) / 500 < 0.6 and all(p["rotation"][1] == 0 for p in untilted)  # not upside down
    lights = [draw_lights(rng, CFG.world) for _ in range(2000)]
    with_lights = [ls for ls in lights if ls]
    assert 0.12 < len(with_lights) / 2000 < 0.18 and np.mean([len(ls) for ls in with_lights]) == pytest.approx(2, rel=0.2)
    for ls in with_lights:
        for light in ls:
            if light["type"] == "SPOT":
                assert math.radians(20) - 1e-4 <= light["spot_size"] <= math.radians(120) + 1e-4
    def share_far(max_tries):
        r = np.random.default_rng(1)
        ds = [d for _ in range(300) for d in draw_distractors(r, CFG.world, CFG.objects, [], max_tries)]
        return len(ds), np.mean([np.linalg.norm(d["location"]) > d["size"] for d in ds])

    (n, redrawn), (_, once) = share_far(100), share_far(1)
    assert n > 150 and redrawn > once + 0.2  # redrawn to keep away from the main object


def test_look_at_points_minus_z_at_the_target():
    for source, target in [((1, 2, 3), (0, 0, 0)), ((-5, 0, 1), (3, 3, 3)), ((0, 0, 5), (0, 0, 0))]:
        d = np.subtract(target, source) / np.linalg.norm(np.subtract(target, source))
        assert np.allclose(euler_matrix(look_at_euler(source, target)) @ [0, 0, -1], d)


def test_projection_of_known_points():
    # Camera at z=10 looking straight down (rotation 0): 50 mm lens, 36 mm sensor, 200x100 px.
    cam = {"location": [0, 0, 10], "rotation": [0, 0, 0]}
    pts = np.array([[0, 0, 0], [3.6, 0, 0], [0, 1.8, 0], [0, 0, 20]])
    xy, front = project_points(pts, cam, 50, (36, 24), 200, 100)
    # Focal length in pixels = 50/36 * 200; x = 100 + f * 3.6/10 = 200 (right edge); +y is up -> row 50 - f*0.18 = 0.
    assert np.allclose(xy[:3], [[100, 50], [200, 50], [100, 0]])
    assert list(front) == [True, True, True, False]
    assert fraction_in_view(pts, cam, 50, (36, 24), 200, 100) == 0.75


def test_camera_follows_the_digest_and_sees_the_object():
    rng = np.random.default_rng(0)
    cams = [draw_camera(rng, CFG.camera) for _ in range(500)]
    for c in cams:
        assert c["location"][0] == 0 and c["rotation"][2] == pytest.approx(math.pi, abs=1e-5)
        assert -math.pi * 0.05 - 1e-6 <= c["rotation"][0] <= math.pi / 2 + 1e-6
    pts = primitive("sphere").verts * 50
    chosen = [choose_camera(rng, CFG.camera, pts, 64, 64) for _ in range(20)]
    assert np.mean([c["in_view"] >= 0.5 for c in chosen]) > 0.9
    params = camera_parameters(chosen[0], CFG.camera, CFG.render)
    assert params["Rotation"] == chosen[0]["rotation"] and params["resolution_x"] == 512


def test_camera_parameters_have_the_published_keys(train_sample):
    published = json.loads((train_sample / "0" / "CameraParameters.json").read_text())
    ours = camera_parameters({"location": [0, 1, 2], "rotation": [0.1, 0.2, 3.0]}, CFG.camera, CFG.render)
    assert set(ours) == set(published)
    assert {k: type(v) for k, v in ours.items()} == {k: type(v) for k, v in published.items()}


# ----------------------------------------------------------------------------- annotation


def test_weights_are_rescaled_to_sum_to_the_coverage():
    raw = np.array([[[0.5, 0.2, 0.0, 0.3]], [[0.5000001, 0.2, 0.0, 0.0]]], np.float32)  # (M=2, H=1, W=4)
    roi = np.array([[1.0, 0.4, 0.3, 0.3]], np.float32)
    weights, out_roi, stats = weights_from_aovs(raw, roi)
    assert np.allclose(weights.sum(0), out_roi, atol=1e-7)
    assert np.allclose(weights[:, 0, 0], 0.5, atol=1e-6)  # a 50/50 blend stays 50/50
    assert out_roi[0, 2] == 0 and stats["roi_without_weight"] == pytest.approx(0.3)  # coverage without weight dropped
    assert stats["max_sum_error"] == pytest.approx(0.3)
    assert aov_names(2) == ["matseg_001", "matseg_002", "matseg_roi"]
    # Seen through a veil of itself, the object can sum to more than full coverage: the ROI
    # becomes 1 and the weights keep their proportions (no false sum error).
    weights, out_roi, stats = weights_from_aovs(np.array([[[0.5]], [[0.75]]], np.float32), np.array([[1.25]], np.float32))
    assert out_roi[0, 0] == 1 and np.allclose(weights[:, 0, 0], [0.4, 0.6]) and stats["max_sum_error"] == 0


# ----------------------------------------------------------------------------- config and CLI


def test_config_validation_and_overrides():
    cfg = load_config(Synth3DConfig, None, ["render.samples=4", "materials.count_max=3", "splits.p_hard=1.0"])
    assert cfg.render.samples == 4 and cfg.materials.count_max == 3
    for bad in ("materials.count_min=9", "splits.color_modes=[LAB]", "objects.shapes=[teapot]", "render.denoiser=magic",
                "materials.p_camera_coords=0.8", "world.p_another_light=1.0"):  # fmt: skip
        overrides = [bad, "materials.p_object_coords=0.5"] if "p_camera" in bad else [bad]
        with pytest.raises(ConfigError):
            load_config(Synth3DConfig, None, overrides)


def test_cli_help_and_config_work_without_blender(capsys, tmp_path):
    from matseg.cli import main

    assert main(["config", "synth3d"]) == 0
    text = capsys.readouterr().out
    assert "p_hard: 0.75" in text and "§1.7.3" in text
    assert main(["synth3d", "--print-config", "--size", "64", "--pbr", str(tmp_path), "-o", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out
    assert "width: 64" in printed and str(tmp_path) in printed
    with pytest.raises(SystemExit) as exc:
        main(["synth3d", "--help"])
    assert exc.value.code == 0 and "pip install 'matseg[synth3d]'" in capsys.readouterr().out


def test_cli_without_bpy_says_how_to_install(capsys, tmp_path):
    from matseg.cli import main
    from matseg.synth3d.blender import bpy_available

    if bpy_available():
        pytest.skip("bpy is installed here; this checks the message shown where it is not")
    assert main(["synth3d", "-n", "1", "-o", str(tmp_path / "o")]) == 2
    assert "pip install 'matseg[synth3d]' on Python 3.11" in capsys.readouterr().err
    with pytest.raises(ImportError, match="bpy not installed"):
        from matseg.synth3d.blender import require_bpy

        require_bpy()
