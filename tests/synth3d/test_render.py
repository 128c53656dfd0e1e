"""synth3d with Blender: AOV masks against the RGB of the same render, end to end, determinism.

Skipped where bpy is not installed (it needs Python 3.11: pip install 'matseg[synth3d]').
Renders are tiny (32-64 px, 1-4 samples, no denoiser) to keep the file well under two minutes
on two shared cores.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from matseg.synth3d.blender import INSTALL_HINT, bpy_available

pytestmark = pytest.mark.skipif(not bpy_available(), reason=f"bpy not installed: {INSTALL_HINT}")

TINY = ["--size", "40", "--samples", "2", "--set", "render.denoiser=none", "--set", "render.adaptive_threshold=0",
        "--set", "render.world_map_resolution=64", "--set", "quality.min_roi_fraction=0.02", "--no-progress"]  # fmt: skip


def srgb_to_linear(u8: np.ndarray) -> np.ndarray:
    c = u8.astype(np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def emissive(rgb) -> dict:
    """A leaf whose colour is exactly ``rgb`` under no light: black base, no specular, emission 1."""
    return {"mode": "bsdf", "id": "x", "data": {"Base Color": [0, 0, 0, 1], "Specular IOR Level": 0.0, "Roughness": 1.0,
            "Metallic": 0.0, "Transmission Weight": 0.0, "Emission Color": [*rgb, 1.0], "Emission Strength": 1.0}}  # fmt: skip


IDENTITY = {"location": [0, 0, 0], "rotation": [0, 0, 0], "scale": [1, 1, 1]}


def square(half: float, z: float = 0.0):
    """A square facing the camera of :func:`render_constructed`, as MeshData."""
    from matseg.synth3d.objects import MeshData

    return MeshData([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]], [4], [0, 1, 2, 3], [False])


def constructed_material(name: str, photo: np.ndarray, split: dict | list[dict] | None, leaves: list[dict], pbr_images=None):
    """A main-object material (writing the ``matseg_`` AOVs) of ``leaves`` in the package's tree
    shape; ``split`` (one, or a list in the order the package numbers them: root first, depth
    first) reads channels of ``photo`` in generated coordinates."""
    from matseg.synth3d.blender import image_from_array
    from matseg.synth3d.config import MaterialsConfig
    from matseg.synth3d.materials import build_material, split_tree

    tree = split_tree(len(leaves))
    splits = list(split) if isinstance(split, list) else [split] if split is not None else []
    todo = list(splits)

    def fill(node):
        if "children" in node and todo:
            node["split"] = {"id": len(splits) - len(todo), "photo_index": 0, "coordinates": "generated", "mapping": IDENTITY,
                             **todo.pop(0)}  # fmt: skip
            for child in node["children"]:
                fill(child)

    fill(tree)
    plan = {"coordinates": "object", "leaves": leaves, "tree": tree}
    return build_material(name, plan, {0: image_from_array(f"{name}:photo", photo)}, MaterialsConfig(), aov_prefix="matseg_",
                          pbr_images=pbr_images)  # fmt: skip


def render_constructed(tmp_path: Path, photo: np.ndarray, split: dict | list[dict] | None, leaves: list[dict], size=(48, 48),
                       shape: str = "plane", samples: int = 4, pbr_images=None, behind=None):  # fmt: skip
    """Render a hand-made scene through the package's builders: one object, no world, no lights,
    a top-down camera at z = 3 (the 2-unit plane spans pixels ~2-46 of 48). ``behind()``: makes
    (after the scene reset) the material of a 6-unit square at z = -1 that fills the view
    behind the object. Returns (rgb, passes) as read back by the package."""
    from matseg.synth3d.annotation import read_passes, setup_outputs
    from matseg.synth3d.blender import configure_render, quiet_output, require_bpy, reset_scene
    from matseg.synth3d.config import CameraConfig, RenderConfig
    from matseg.synth3d.objects import make_blender_object, primitive
    from matseg.synth3d.world import build_camera

    bpy = require_bpy()
    scene = reset_scene()
    configure_render(scene, RenderConfig(width=size[0], height=size[1], samples=samples, denoiser="none", adaptive_threshold=0), 7, 1)
    scene.world = None
    material = constructed_material("M", photo, split, leaves, pbr_images)
    mesh = square(1.0) if shape == "plane" else primitive("sphere").transformed(np.eye(3) * 1.6)
    ob = make_blender_object("Main", mesh, uv_margin=None)
    ob.data.materials.append(material)
    if behind is not None:
        make_blender_object("Behind", square(3.0, -1.0), uv_margin=None).data.materials.append(behind())
    build_camera({"location": [0, 0, 3], "rotation": [0, 0, 0]}, CameraConfig())
    files = setup_outputs(scene, tmp_path, len(leaves))
    with quiet_output():
        bpy.ops.render.render(write_still=False)
    return read_passes(files)


def test_masks_are_pixel_aligned_with_the_rgb(tmp_path):
    # Photo: only the top-left quadrant is bright. Hard split at 0.5 on the red channel:
    # leaf 2 (emits red) there, leaf 1 (emits blue) elsewhere.
    photo = np.zeros((64, 64, 3), np.uint8)
    photo[:32, :32] = 255
    rgb, passes = render_constructed(tmp_path, photo, {"mode": "RGB", "channel": 0, "hard": True, "low": 0.5, "high": 0.5},
                                     [emissive((0, 0, 1)), emissive((1, 0, 0))])  # fmt: skip
    w1, w2, roi = passes["matseg_001"], passes["matseg_002"], passes["matseg_roi"]
    red, blue = srgb_to_linear(rgb[..., 0]), srgb_to_linear(rgb[..., 2])
    # Every pixel: the RGB is exactly the weighted mix of the two emissions (same samples, same filter).
    assert np.abs(red - w2).max() < 0.02 and np.abs(blue - w1).max() < 0.02
    assert np.allclose(w1 + w2, roi, atol=1e-5)
    # Orientation: the bright quadrant of the photo is the top-left of the picture (row 0 = top).
    # (The plane spans pixels ~2-46 of 48; the photo's quadrant boundary falls on pixel 24.)
    assert w2[4:20, 4:20].min() > 0.99 and w2[28:, :].max() < 0.01 and w2[:, 28:].max() < 0.01
    # The plane (2 units wide at 3 units, 50 mm lens) leaves a dark border: roi 0 there, 1 inside.
    assert roi[24, 24] == pytest.approx(1.0) and roi[0, 0] == 0 and rgb[0, 0].max() == 0
    # Soft values only on the anti-aliased boundary, and there in both.
    edge = (w2 > 0.05) & (w2 < 0.95)
    assert 0 < edge.sum() < 0.1 * edge.size
    assert np.array_equal(edge, (red > 0.05) & (red < 0.95))


def test_constant_half_mix_gives_half_weights_and_128(tmp_path):
    value = 128 / 255
    photo = np.full((16, 16, 3), 128, np.uint8)
    rgb, passes = render_constructed(tmp_path, photo, {"mode": "RGB", "channel": 1, "hard": False, "low": value - 0.2, "high": value + 0.2},
                                     [emissive((0, 0, 1)), emissive((1, 0, 0))], samples=2)  # fmt: skip
    from matseg.synth3d.annotation import weights_from_aovs

    weights, roi, _ = weights_from_aovs(np.stack([passes["matseg_001"], passes["matseg_002"]]), passes["matseg_roi"])
    inside = roi > 0.999
    assert inside.sum() > 500
    masks = np.rint(weights * 255)
    assert np.abs(masks[:, inside] - 128).max() <= 2
    # The RGB agrees: half red, half blue in linear light (sRGB 188).
    assert np.abs(rgb[inside][:, [0, 2]].astype(int) - 188).max() <= 2


def test_semi_transparent_object_is_annotated_as_seen(tmp_path):
    from matseg.synth3d.materials import draw_bsdf

    glassy = {"mode": "bsdf", "id": "g", "data": {**draw_bsdf(np.random.default_rng(0), 1.0), "Alpha": 0.5}}
    _, passes = render_constructed(tmp_path, np.zeros((8, 8, 3), np.uint8), None, [glassy], shape="sphere", samples=16)
    roi = passes["matseg_roi"]
    # Over the empty world a ray sees the front face (alpha 0.5) and, through it, the back face:
    # 0.5 + 0.5 * 0.5. (The back face is counted with Cycles' pass-through probability, ~0.56
    # for this BSDF, hence the tolerance.) Not 1 (opaque) and not 0.5 (front face only).
    assert abs(float(roi[14:34, 14:34].mean()) - 0.75) < 0.08
    assert np.allclose(passes["matseg_001"], roi, atol=1e-6)


def opacity_leaves(opacity: dict[str, int]) -> tuple[list[dict], Callable[[str], dict]]:
    """Black, unlit PBR leaves with uniform opacity maps (values 0-255), and their ``pbr_images``
    (the Blender images are made when the material is built, after the scene reset)."""
    from matseg.synth3d.blender import image_from_array

    def pbr_images(name: str) -> dict:
        def grey(value: int) -> np.ndarray:
            return np.full((8, 8, 3), value, np.uint8)

        return {"color": image_from_array(f"{name}:color", grey(0), non_color=False),
                "opacity": image_from_array(f"{name}:opacity", grey(opacity[name]))}  # fmt: skip

    return [{"mode": "pbr", "id": name, "mapping": IDENTITY} for name in opacity], pbr_images


# Three regions of the plane (generated coordinates, row 0 = top): the left half, the bottom-right
# and the top-right quadrants, from two hard splits of a photo whose red channel is bright on the
# right and green channel on the top.
REGION_PHOTO = np.zeros((64, 64, 3), np.uint8)
REGION_PHOTO[:, 32:, 0] = 255
REGION_PHOTO[:32, :, 1] = 255
REGION_SPLITS = [{"mode": "RGB", "channel": c, "hard": True, "low": 0.5, "high": 0.5} for c in (0, 1)]
LEFT, BOTTOM_RIGHT, TOP_RIGHT = np.s_[6:42, 6:20], np.s_[28:42, 28:42], np.s_[6:20, 28:42]


def render_cut_out_plane(tmp_path: Path, behind_leaves: list[dict], behind_is_main: bool, samples: int = 16):
    """The plane: material 1 half transparent (opacity 128) on the left, material 2 cut out
    (opacity 0) at the bottom right, material 3 opaque emitting red at the top right; behind it
    a square emitting green, part of the main object (its own weights) or not."""
    from matseg.synth3d.config import MaterialsConfig
    from matseg.synth3d.materials import build_leaf_material

    pbr_leaves, pbr_images = opacity_leaves({"half": 128, "cut": 0})

    def behind():
        if behind_is_main:
            # Thresholds below 0: every split takes its second branch, so the last leaf has weight 1.
            always_last = [{**s, "low": -1.0, "high": -1.0} for s in REGION_SPLITS]
            return constructed_material("Behind", REGION_PHOTO, always_last, behind_leaves)
        return build_leaf_material("Behind", behind_leaves[0], "object", MaterialsConfig())

    return render_constructed(tmp_path, REGION_PHOTO, REGION_SPLITS, [*pbr_leaves, emissive((1, 0, 0))], samples=samples,
                              pbr_images=pbr_images, behind=behind)  # fmt: skip


def test_cut_out_and_half_transparent_texels_are_annotated_as_seen(tmp_path):
    from matseg.synth3d.annotation import weights_from_aovs

    rgb, passes = render_cut_out_plane(tmp_path, [emissive((0, 1, 0))], behind_is_main=False)
    raw = np.stack([passes[f"matseg_00{i}"] for i in (1, 2, 3)])
    roi = passes["matseg_roi"]
    half = 128 / 255
    # Half transparent: material 1 covers half of what the camera sees there.
    assert np.abs(raw[0][LEFT] - half).max() < 0.01 and np.abs(roi[LEFT] - half).max() < 0.01
    # Cut out: the camera sees the green square through the hole, which is not the main object.
    assert raw[:, *BOTTOM_RIGHT].max() < 0.01 and roi[BOTTOM_RIGHT].max() < 0.01
    assert raw[2][TOP_RIGHT].min() > 0.99 and roi[TOP_RIGHT].min() > 0.99
    # Everywhere (edges included) the green seen is what the ROI leaves uncovered (sample noise aside).
    green = srgb_to_linear(rgb[..., 1])
    assert np.abs(green + roi - 1).mean() < 0.01 and np.abs(green + roi - 1).max() < 0.1
    weights, out_roi, stats = weights_from_aovs(raw, roi)
    assert stats["max_sum_error"] < 1e-5 and np.allclose(weights.sum(0), out_roi, atol=1e-6)
    assert np.allclose(out_roi, roi, atol=1e-5)


def test_main_object_seen_through_its_own_cut_out(tmp_path):
    # Behind the plane: another part of the main object whose weight is all material 3.
    _, passes = render_cut_out_plane(tmp_path, [emissive((0, 0, 1))] * 2 + [emissive((0, 1, 0))], behind_is_main=True)
    w1, w2, w3, roi = (passes[n] for n in ("matseg_001", "matseg_002", "matseg_003", "matseg_roi"))
    # Through the hole the camera sees material 3 of the part behind, fully.
    assert w2[BOTTOM_RIGHT].max() < 0.01 and w3[BOTTOM_RIGHT].min() > 0.99 and np.abs(roi[BOTTOM_RIGHT] - 1).max() < 0.01
    # Through the veil: material 1 at its alpha (exact at the first surface), and some of material 3
    # (with Cycles' pass-through probability, not exactly 1 - alpha).
    assert np.abs(w1[LEFT] - 128 / 255).max() < 0.01 and w3[LEFT].min() > 0.25


def render_on_ground(tmp_path: Path, displacement: str, name: str, threads: int = 1):
    """A main-object square at z = 0.5 filling the view of the top-down camera, over a ground
    (drawn by the package, seed 5) whose PBR height map is a 2 x 2 checker of heights 0 and 1,
    in camera texture coordinates. Returns (rgb, passes)."""
    import cv2

    from matseg.synth3d.annotation import read_passes, setup_outputs
    from matseg.synth3d.blender import configure_render, quiet_output, require_bpy, reset_scene
    from matseg.synth3d.config import CameraConfig, MaterialsConfig, RenderConfig, WorldConfig
    from matseg.synth3d.materials import PbrLibrary
    from matseg.synth3d.objects import make_blender_object
    from matseg.synth3d.world import build_camera, build_ground, draw_ground

    pbr = tmp_path / "pbr"
    if not pbr.is_dir():
        pbr.mkdir()
        height = np.zeros((16, 16), np.uint8)
        height[:8, :8] = height[8:, 8:] = 255
        cv2.imwrite(str(pbr / "Height.png"), height)
        cv2.imwrite(str(pbr / "Color.png"), np.full((16, 16, 3), 90, np.uint8))
    bpy = require_bpy()
    scene = reset_scene()
    configure_render(scene, RenderConfig(width=48, height=48, samples=2, denoiser="none", adaptive_threshold=0), 7, threads)
    scene.world = None
    make_blender_object("Main", square(1.0, 0.5), uv_margin=None).data.materials.append(
        constructed_material("M", np.zeros((8, 8, 3), np.uint8), None, [emissive((1, 0, 0))]))
    world_cfg = WorldConfig(p_ground=1.0, ground_half_size=[3.0, 3.0], ground_displacement=displacement)
    plan = draw_ground(np.random.default_rng(5), world_cfg)
    # No turn, 0.5 texture scale: the checker's squares fill the view's quadrants.
    plan = {**plan, "rotation_z": 0.0, "material": {"mode": "pbr", "id": str(pbr), "mapping": {**IDENTITY, "scale": [0.5] * 3}}}
    images: dict = {}
    build_ground(plan, "camera", world_cfg, MaterialsConfig(), lambda folder: PbrLibrary().blender_images(folder, images))
    build_camera({"location": [0, 0, 3], "rotation": [0, 0, 0]}, CameraConfig())
    files = setup_outputs(scene, tmp_path / name, 1)
    with quiet_output():
        bpy.ops.render.render(write_still=False)
    return read_passes(files)


def test_ground_is_displaced_deterministically(tmp_path):
    _, flat = render_on_ground(tmp_path, "bump", "bump")
    rgb, displaced = render_on_ground(tmp_path, "both", "both")
    # Bump only: the ground stays below the square (z = 0.5), which covers the whole view.
    assert flat["matseg_roi"].min() > 0.99
    # True displacement: the checker's height-1 squares rise through it (top right, bottom left
    # in the picture) and hide it; the height-0 squares stay below.
    roi = displaced["matseg_roi"]
    assert roi[4:20, 28:44].max() < 0.01 and roi[28:44, 4:20].max() < 0.01
    assert roi[4:20, 4:20].min() > 0.99 and roi[28:44, 28:44].min() > 0.99
    # Reproducible, also with another number of render threads (the dicing runs in parallel).
    rgb_again, again = render_on_ground(tmp_path, "both", "again", threads=2)
    assert np.array_equal(rgb, rgb_again) and np.array_equal(roi, again["matseg_roi"])


def test_projection_matches_blender():
    from matseg.synth3d.blender import require_bpy, reset_scene
    from matseg.synth3d.config import CameraConfig
    from matseg.synth3d.world import build_camera, draw_camera, project_points

    bpy = require_bpy()
    import bpy_extras.object_utils
    from mathutils import Vector

    scene = reset_scene()
    scene.render.resolution_x, scene.render.resolution_y = 96, 64
    cfg = CameraConfig()
    cam = draw_camera(np.random.default_rng(2), cfg)
    ob = build_camera(cam, cfg)
    bpy.context.view_layer.update()
    pts = np.random.default_rng(0).uniform(-30, 30, (20, 3))
    xy, front = project_points(pts, cam, cfg.lens_mm, cfg.sensor_mm, 96, 64)
    for p, (x, y), f in zip(pts, xy, front):
        ndc = bpy_extras.object_utils.world_to_camera_view(scene, ob, Vector(p))
        assert f == (ndc.z > 0)
        if f:
            assert x == pytest.approx(ndc.x * 96, abs=1e-3) and y == pytest.approx((1 - ndc.y) * 64, abs=1e-3)


PBR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "pbr"


def synth3d_args(out: Path, n: int = 3) -> list[str]:
    """Three tiny scenes (PBRs from the shared data when present), one worker recycled every 2 scenes."""
    args = ["synth3d", "-n", str(n), "-o", str(out), "-w", "1", "--scenes-per-worker", "2", "--seed", "11", *TINY]
    return args + (["--pbr", str(PBR)] if PBR.is_dir() else [])


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    from matseg.cli import main

    root = tmp_path_factory.mktemp("synth3d")
    return root, main(synth3d_args(root / "a"))


def test_generated_dataset_passes_check_and_records_everything(generated, train_sample):
    from PIL import Image

    from matseg.io.dataset import read_sample
    from matseg.tools.check import check_dataset

    root, rc = generated
    out = root / "a"
    assert rc == 0
    report = check_dataset(out)
    assert report.ok and len(report.passed) == 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done"] == 3 and summary["backend"] == "processes"
    assert summary["memory"]["scenes"] == 3 and summary["memory"]["rss_mb_max"] > 50
    published_camera = json.loads((train_sample / "0" / "CameraParameters.json").read_text())
    for name in ("000000", "000001", "000002"):
        sample = read_sample(out / name)
        meta = sample.meta
        assert set(meta["camera"]) == set(published_camera) and meta["camera"]["resolution_x"] == 40
        assert len(meta["materials"]) == sample.num_materials >= 2
        assert meta["render"]["engine"] == "CYCLES" and meta["render"]["device"] == "CPU" and meta["render"]["samples"] == 2
        assert meta["memory"]["rss_mb"] > 50 and meta["timing"]["render_s"] > 0
        assert meta["annotation"]["max_sum_error"] < 1e-3
        # Weights sum to 1 on the object (the reader's fractions) and the files to the ROI file.
        assert np.allclose(sample.fractions.sum(0)[sample.roi], 1, atol=1e-5)
        mask_sum = sum(np.asarray(Image.open(out / name / m), np.int32) for m in meta["masks"])
        roi_file = np.asarray(Image.open(out / name / "ObjectMaskOcluded.png"), np.int32)
        assert np.abs(mask_sum - roi_file).max() <= math.ceil(len(meta["masks"]) / 2) + 1


def test_same_seed_same_scene_and_resume(generated, output_digest):
    import shutil

    from matseg.cli import main

    root, _ = generated
    first = output_digest(root / "a")
    assert main(synth3d_args(root / "a")) == 0  # rerun: everything skipped
    assert json.loads((root / "a" / "summary.json").read_text())["skipped"] == 3
    # The same seed into another folder (two scenes), and one scene regenerated after deletion.
    assert main(synth3d_args(root / "b", n=2)) == 0
    shutil.rmtree(root / "a" / "000001")
    assert main(synth3d_args(root / "a")) == 0
    assert json.loads((root / "a" / "summary.json").read_text())["done"] == 1
    again, other = output_digest(root / "a"), output_digest(root / "b")
    metas = [k for k in first if k.endswith("meta.json")]
    assert all(again[k] == first[k] for k in metas) and all(other[k] == first[k] for k in other if k in metas)
    # Cycles on the CPU with a fixed seed: the pixels are reproducible too (byte-identical files).
    assert again == first
    assert other == {k: first[k] for k in other}


def test_bad_inputs(tmp_path, capsys):
    from matseg.cli import main

    empty = tmp_path / "hdri"
    empty.mkdir()
    assert main(["synth3d", "-n", "1", "-o", str(tmp_path / "o1"), "--hdri", str(empty), *TINY]) == 2
    assert f"{empty}: no HDRI files" in capsys.readouterr().err
    assert main(["synth3d", "-n", "1", "-o", str(tmp_path / "o2"), "--pbr", str(tmp_path / "none"), *TINY]) == 2
    assert f"{tmp_path / 'none'}: folder does not exist" in capsys.readouterr().err
    # A corrupt mesh: the scene fails (after one retry), is listed, the exit code is 1.
    meshes = tmp_path / "meshes"
    meshes.mkdir()
    (meshes / "broken.glb").write_bytes(b"glTF" + bytes(range(60)))
    out = tmp_path / "o3"
    rc = main(["synth3d", "-n", "1", "-o", str(out), "--objects", str(meshes), "-w", "1",
               "--set", "objects.p_user_mesh=1.0", "--set", "objects.p_single=1.0", *TINY])  # fmt: skip
    assert rc == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done"] == 0 and len(summary["failed"]) == 1
    reason = summary["failed"][0]["reason"]
    assert "broken.glb" in reason and "after 2 attempts" in reason


def test_quality_gate_redraws_and_a_retry_draws_new_attempts(tmp_path):
    from matseg.cli import main

    out = tmp_path / "o"
    # No scene can cover 99.9 % of the image with its main object: every attempt is rejected.
    rc = main(["synth3d", "-n", "1", "-o", str(out), "-w", "1", *TINY, "--size", "24", "--samples", "1",
               "--set", "quality.min_roi_fraction=0.999", "--set", "quality.max_scene_attempts=2"])  # fmt: skip
    assert rc == 1
    reason = json.loads((out / "summary.json").read_text())["failed"][0]["reason"]
    # The retry (--retries 1) went on with attempts 2-3 instead of repeating 0-1.
    assert "attempts 2-3 (main object too small in the image)" in reason and "[after 2 attempts]" in reason


def test_without_pbr_folders_every_material_is_a_random_bsdf(tmp_path, capsys):
    from matseg.cli import main
    from matseg.io.dataset import read_sample

    out = tmp_path / "o"
    assert main(["synth3d", "-n", "1", "-o", str(out), "-w", "1", "--seed", "3", *TINY]) == 0
    meta = read_sample(out / "000000").meta
    assert {m["mode"] for m in meta["materials"]} == {"bsdf"}
    assert all("Transmission Weight" in m["data"] for m in meta["materials"])
    # A PBR folder without any material is a usage error, not a silent fallback.
    empty = tmp_path / "pbr"
    empty.mkdir()
    assert main(["synth3d", "-n", "1", "-o", str(tmp_path / "o2"), "--pbr", str(empty), *TINY]) == 2
    assert "no usable PBR material folder" in capsys.readouterr().err


CUBE_V = [(x, y, z) for x in (0, 2) for y in (0, 1) for z in (0, 1)]
CUBE_F = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]


def _write_meshes(folder: Path) -> None:
    folder.mkdir()
    obj = [f"v {x} {y} {z}" for x, y, z in CUBE_V] + ["f " + " ".join(str(i + 1) for i in f) for f in CUBE_F]
    (folder / "box.obj").write_text("\n".join(obj) + "\n")
    ply = ["ply", "format ascii 1.0", f"element vertex {len(CUBE_V)}", "property float x", "property float y",
           "property float z", f"element face {len(CUBE_F)}", "property list uchar int vertex_indices", "end_header"]  # fmt: skip
    ply += [f"{x} {y} {z}" for x, y, z in CUBE_V] + [f"4 {' '.join(map(str, f))}" for f in CUBE_F]
    (folder / "box.ply").write_text("\n".join(ply) + "\n")
    tris = [(f[0], f[1], f[2]) for f in CUBE_F] + [(f[0], f[2], f[3]) for f in CUBE_F]
    stl = ["solid box"] + [line for t in tris for line in (
        "facet normal 0 0 0", "outer loop", *[f"vertex {' '.join(map(str, CUBE_V[i]))}" for i in t], "endloop", "endfacet")]
    (folder / "box.stl").write_text("\n".join(stl + ["endsolid box"]) + "\n")  # fmt: skip


def test_user_meshes_are_imported_and_rendered(tmp_path):
    from matseg.cli import main
    from matseg.io.dataset import read_sample
    from matseg.synth3d.objects import import_mesh_file, place_mesh

    from matseg.synth3d.blender import quiet_output, require_bpy, reset_scene

    meshes = tmp_path / "meshes"
    _write_meshes(meshes)
    bpy = require_bpy()
    reset_scene()
    bpy.ops.mesh.primitive_cube_add(size=1)
    bpy.context.active_object.scale = (2, 1, 1)
    with quiet_output():
        bpy.ops.export_scene.gltf(filepath=str(meshes / "box.glb"), export_format="GLB")
    reset_scene()
    for name in ("box.obj", "box.ply", "box.stl", "box.glb"):
        mesh = import_mesh_file(meshes / name)
        lo, hi = mesh.bbox()
        # OBJ and glTF are y-up, Blender z-up: the importers turn the 2 x 1 x 1 box; its extents are kept.
        assert sorted(np.round(hi - lo, 5)) == [1, 1, 2], name
        placed = place_mesh(mesh, (0, 0, 0), 50, (0, 0, 0))
        assert np.isclose(np.ptp(placed.verts, axis=0).max(), 50)
    out = tmp_path / "o"
    assert main(["synth3d", "-n", "1", "-o", str(out), "-w", "1", "--objects", str(meshes), *TINY,
                 "--set", "objects.p_user_mesh=1.0", "--set", "objects.p_single=1.0"]) == 0  # fmt: skip
    obj = read_sample(out / "000000").meta["scene"]["main"]["objects"][0]
    assert obj["kind"] == "mesh" and Path(obj["file"]).parent == meshes


def test_shard_output_holds_the_folder_scenes(generated, tmp_path, output_digest):
    from matseg.cli import main
    from matseg.io.shards import unpack

    root, _ = generated
    assert main([*synth3d_args(tmp_path / "shards", n=3), "--shard-size", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "shards").glob("shard-*.tar")) == ["shard-000000.tar", "shard-000001.tar"]
    unpack(tmp_path / "shards", tmp_path / "unpacked")
    assert output_digest(tmp_path / "unpacked") == output_digest(root / "a")
