"""Lighting, surroundings and camera of a 3D scene (digest §1.7 steps 4-8).

HDRI panorama (random file, strength and rotation), optional ground plane, distractor objects
and point/spot lights, and the random camera. Draws are pure NumPy and return JSON-ready plans;
``build_*`` functions create the Blender objects.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import numpy as np

from matseg.synth3d.objects import draw_object, euler_matrix, list_input_files

HDRI_EXTENSIONS = (".hdr", ".exr")


# ----------------------------------------------------------------------------- HDRIs


def default_hdri_folder() -> Path | None:
    """The studio-light HDRIs that ship inside the bpy package (``<bpy>/<ver>/datafiles/studiolights/world``),
    found without importing bpy; None when bpy is not installed."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*/datafiles/studiolights/world"))
        if found:
            return found[-1]
    return None


def list_hdris(folder: str | os.PathLike | None) -> list[Path]:
    """HDRI files (.hdr, .exr, any case) under ``folder`` (None: :func:`default_hdri_folder`), sorted.

    Raises FileNotFoundError / NotADirectoryError for a bad folder and ValueError when it holds
    no HDRI (the reference crashed on ``randint(0)``).
    """
    if folder is None:
        folder = default_hdri_folder()
        if folder is None:
            raise FileNotFoundError("no HDRI folder given and bpy's built-in HDRIs not found (is bpy installed?)")
    return list_input_files(folder, HDRI_EXTENSIONS, "HDRI")


# ----------------------------------------------------------------------------- draws


def draw_hdri(rng: np.random.Generator, cfg, hdris: list[Path]) -> dict:
    """HDRI file, strength and mapping rotation (digest §1.7 step 5; ``cfg``: WorldConfig).

    Rotation (x, y, z): z = U * 2 pi; with probability ``p_tilt`` x and y are uniform in
    +-tilt_max_deg, else (0, base_tilt_y). The reference's base y rotation of 180 degrees
    turned the panorama upside down whenever it was not tilted; the default base is 0.
    """
    path = hdris[int(rng.integers(len(hdris)))]
    strength = 1.0 + cfg.strength_boost * rng.random() if rng.random() < cfg.p_strength_boost else 1.0
    z = rng.random() * 2 * math.pi
    if rng.random() < cfg.p_tilt:
        x, y = np.radians(rng.uniform(-cfg.tilt_max_deg, cfg.tilt_max_deg, 2))
    else:
        x, y = 0.0, math.radians(cfg.base_tilt_y_deg)
    return {"file": str(path), "strength": round(float(strength), 5), "rotation": [round(float(v), 5) for v in (x, y, z)]}


def draw_ground(rng: np.random.Generator, cfg) -> dict | None:
    """Ground plane (probability ``p_ground``): half-sizes per axis and a z rotation (digest §1.7 step 4)."""
    if rng.random() >= cfg.p_ground:
        return None
    half = rng.uniform(*cfg.ground_half_size, 2)
    return {"half_size": half.round(5).tolist(), "rotation_z": round(float(rng.random() * math.pi), 5)}


def draw_distractors(rng: np.random.Generator, world_cfg, objects_cfg, mesh_files: list[Path], max_tries: int = 100) -> list[dict]:
    """Distractor objects (probability ``p_distractors``; digest §1.7 step 6).

    1..N objects of size U(lo, hi) with lo = (0.2 + 0.8U) * 20 and hi = 20 * (1 + 4U) drawn per
    scene, placed uniformly in a box of half-sizes 10 * (2 + 4U) per axis and z in [-1, 3],
    redrawn until the centre is farther from the origin than the object's size (at most
    ``max_tries`` draws, then the farthest is kept: the reference looped forever when the box
    was too small for the size).
    """
    if rng.random() >= world_cfg.p_distractors:
        return []
    lo = (0.2 + 0.8 * rng.random()) * 20
    hi = 20 * (1 + 4 * rng.random())
    half_x, half_y = 10 * (2 + 4 * rng.random()), 10 * (2 + 4 * rng.random())
    plans = []
    for _ in range(int(rng.integers(1, world_cfg.distractors_max + 1))):
        size = rng.uniform(lo, hi)
        best = None
        for _try in range(max_tries):
            location = np.array([rng.uniform(-half_x, half_x), rng.uniform(-half_y, half_y), rng.uniform(-1, 3)])
            if best is None or np.linalg.norm(location) > np.linalg.norm(best):
                best = location
            if np.linalg.norm(location) > size:
                break
        plans.append(draw_object(rng, objects_cfg, mesh_files, size, best))
    return plans


def draw_lights(rng: np.random.Generator, cfg) -> list[dict]:
    """Point/spot lights (probability ``p_lights``, then one more with ``p_another_light``; §1.7 step 7).

    A spot points at the origin (where the main object is), or with ``p_spot_random_direction``
    in a random direction; its cone angle is U(spot_size_deg). The reference wrote the light's
    position into its rotation and its radius into the cone angle.
    """
    lights: list[dict] = []
    if rng.random() >= cfg.p_lights:
        return lights
    while True:
        location = rng.uniform(-cfg.light_box, cfg.light_box, 3)
        r = rng.random()
        radius = 0.0 if r < 0.5 else (rng.uniform(0, 1.8) if r < 0.9 else rng.uniform(0, 3))
        light = {
            "type": "SPOT" if rng.random() < cfg.p_spot else "POINT",
            "location": location.round(5).tolist(),
            "energy": round(float(rng.uniform(*cfg.light_energy)), 3),
            "radius": round(float(radius), 5),
        }
        if light["type"] == "SPOT":
            if rng.random() < cfg.p_spot_random_direction:
                light["rotation"] = rng.uniform(0, 2 * math.pi, 3).round(5).tolist()
            else:
                light["rotation"] = [round(v, 5) for v in look_at_euler(location, np.zeros(3))]
            light["spot_size"] = round(math.radians(float(rng.uniform(*cfg.spot_size_deg))), 5)
        lights.append(light)
        if rng.random() >= cfg.p_another_light:
            return lights


def look_at_euler(source, target) -> tuple[float, float, float]:
    """Euler XYZ angles that turn Blender's -Z (the view/emit axis of cameras and spots) from
    ``source`` toward ``target`` (no roll)."""
    d = np.asarray(target, np.float64) - np.asarray(source, np.float64)
    n = float(np.linalg.norm(d))
    if n == 0:
        return 0.0, 0.0, 0.0
    d /= n
    # -Z rotated by Rx(a) then Rz(c) is (-sin a sin c, sin a cos c, -cos a).
    a = math.acos(max(-1.0, min(1.0, -d[2])))
    c = math.atan2(-d[0], d[1]) if abs(math.sin(a)) > 1e-12 else 0.0
    return a, 0.0, c


def draw_camera(rng: np.random.Generator, cfg) -> dict:
    """Random camera of digest §1.7 step 8 (``cfg``: CameraConfig).

    ``R = U(radius)``, angle from the zenith ``A = (1 - spread * U^2) * pi/2``, location
    ``(0, sin(A) R + 2 jy U - jy, cos(A) R + jz U)``, rotation ``(A, (0.5U - 0.5U) U, pi)``.
    """
    radius = rng.uniform(*cfg.radius)
    angle = (1 - cfg.elevation_spread * rng.random() * rng.random()) * math.pi / 2
    y = math.sin(angle) * radius + 2 * cfg.jitter_y * rng.random() - cfg.jitter_y
    z = math.cos(angle) * radius + cfg.jitter_z * rng.random()
    roll = (0.5 * rng.random() - 0.5 * rng.random()) * rng.random()
    return {"location": [0.0, round(y, 5), round(z, 5)], "rotation": [round(angle, 5), round(roll, 5), round(math.pi, 5)]}


def project_points(points: np.ndarray, camera: dict, lens_mm: float, sensor_mm, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Image positions of world ``points`` ``(N, 3)`` seen by a Blender perspective camera
    (Euler XYZ rotation, looking down its local -Z, sensor fit AUTO).

    Returns ``(xy, in_front)``: ``xy`` ``(N, 2)`` float in pixels (x = column, y = row from the
    top, pixel centres at +0.5), ``in_front`` ``(N,)`` bool.
    """
    rot = euler_matrix(camera["rotation"])
    local = (np.asarray(points, np.float64) - np.asarray(camera["location"], np.float64)) @ rot  # R^T (p - t)
    depth = -local[:, 2]
    in_front = depth > 1e-9
    safe = np.where(in_front, depth, 1.0)
    # AUTO fit: the sensor width spans the larger image side.
    focal = lens_mm / float(sensor_mm[0]) * max(width, height)  # in pixels
    x = width / 2 + focal * local[:, 0] / safe
    y = height / 2 - focal * local[:, 1] / safe
    return np.stack([x, y], axis=1), in_front


def fraction_in_view(points: np.ndarray, camera: dict, lens_mm: float, sensor_mm, width: int, height: int) -> float:
    """Share of ``points`` in front of the camera and inside the image."""
    if len(points) == 0:
        return 0.0
    xy, front = project_points(points, camera, lens_mm, sensor_mm, width, height)
    inside = front & (xy[:, 0] >= 0) & (xy[:, 0] <= width) & (xy[:, 1] >= 0) & (xy[:, 1] <= height)
    return float(inside.mean())


def choose_camera(rng: np.random.Generator, cfg, points: np.ndarray, width: int, height: int) -> dict:
    """Draw cameras (``draw_camera``) until at least ``cfg.min_in_view`` of ``points`` (the main
    object's vertices) are in the frame, at most ``cfg.tries`` draws; the best one is kept.

    Returns the camera plan with ``"tries"`` and ``"in_view"`` added.
    """
    best = None
    for attempt in range(1, cfg.tries + 1):
        cam = draw_camera(rng, cfg)
        share = fraction_in_view(points, cam, cfg.lens_mm, cfg.sensor_mm, width, height)
        if best is None or share > best["in_view"]:
            best = {**cam, "in_view": round(share, 4)}
        if share >= cfg.min_in_view:
            break
    best["tries"] = attempt
    return best


def camera_parameters(camera: dict, cfg, render_cfg) -> dict:
    """The camera as the published ``CameraParameters.json`` (same keys and spelling, digest §2.2)."""
    return {
        "name": "Camera",
        "Focal Length": float(cfg.lens_mm),
        "Location": [float(v) for v in camera["location"]],
        "Rotation": [float(v) for v in camera["rotation"]],
        "Perseption": "PERSP",
        "shift_x": 0.0,
        "shift_y": 0.0,
        "sensor_width": float(cfg.sensor_mm[0]),
        "sensor_height": float(cfg.sensor_mm[1]),
        "sensor_fit": "AUTO",
        "resolution_y": int(render_cfg.height),
        "resolution_x": int(render_cfg.width),
        "pixel_aspect_x": 1.0,
        "pixel_aspect_y": 1.0,
        "resolution_percentage": 100,
        "scale": [1.0, 1.0, 1.0],
    }


# ----------------------------------------------------------------------------- Blender side


def build_world(plan: dict, map_resolution: int = 512):
    """World with the HDRI: Generated coordinates -> Mapping (rotation) -> Environment Texture -> Background.

    ``map_resolution``: side of the importance map Cycles builds to sample the HDRI (manual;
    Blender's automatic size made this the most expensive step of a small CPU render)."""
    from matseg.synth3d.blender import load_image_file, require_bpy

    bpy = require_bpy()
    world = bpy.data.worlds.new("World")
    tree = world.node_tree
    tree.nodes.clear()
    coords = tree.nodes.new("ShaderNodeTexCoord")
    mapping = tree.nodes.new("ShaderNodeMapping")
    mapping.inputs["Rotation"].default_value = plan["rotation"]
    env = tree.nodes.new("ShaderNodeTexEnvironment")
    env.image = load_image_file(plan["file"], non_color=False)
    env.image.colorspace_settings.name = "Linear Rec.709"
    background = tree.nodes.new("ShaderNodeBackground")
    background.inputs["Strength"].default_value = plan["strength"]
    out = tree.nodes.new("ShaderNodeOutputWorld")
    tree.links.new(coords.outputs["Generated"], mapping.inputs["Vector"])
    tree.links.new(mapping.outputs["Vector"], env.inputs["Vector"])
    tree.links.new(env.outputs["Color"], background.inputs["Color"])
    tree.links.new(background.outputs["Background"], out.inputs["Surface"])
    world.cycles.sampling_method = "MANUAL"
    world.cycles.sample_map_resolution = map_resolution
    bpy.context.scene.world = world
    return world


def build_ground(plan: dict, coords: str, world_cfg, materials_cfg, pbr_images=None, uv_margin: float | None = 0.03):
    """The ground of :func:`draw_ground` (with its ``"material"`` leaf): a square at z = 0 turned about z.

    With a height map and ``world_cfg.ground_displacement`` other than bump, Cycles displaces
    it for real, as the reference's subdivided ground: the quad is diced adaptively
    (``ground_dicing_px`` pixels per micropolygon; simple subdivision, so the plane stays flat
    under the relief). ``coords``: the scene's texture coordinates.
    """
    from matseg.synth3d.materials import build_leaf_material, displaces_geometry
    from matseg.synth3d.objects import MeshData, make_blender_object

    hx, hy = plan["half_size"]
    quad = MeshData([[-hx, -hy, 0], [hx, -hy, 0], [hx, hy, 0], [-hx, hy, 0]], [4], [0, 1, 2, 3], [False])
    ground = make_blender_object("Ground", quad, uv_margin=uv_margin)
    ground.rotation_euler = (0.0, 0.0, plan["rotation_z"])
    material = build_leaf_material("GroundMaterial", plan["material"], coords, materials_cfg, pbr_images, world_cfg.ground_displacement)
    ground.data.materials.append(material)
    if displaces_geometry(material):
        mod = ground.modifiers.new("Dicing", "SUBSURF")
        mod.subdivision_type = "SIMPLE"
        mod.use_adaptive_subdivision = True
        mod.adaptive_space = "PIXEL"
        mod.adaptive_pixel_size = world_cfg.ground_dicing_px
    return ground


def build_lights(plans: list[dict]) -> list:
    from matseg.synth3d.blender import require_bpy

    bpy = require_bpy()
    made = []
    for i, plan in enumerate(plans):
        data = bpy.data.lights.new(f"Light{i}", plan["type"])
        data.energy = plan["energy"]
        data.shadow_soft_size = plan["radius"]
        if plan["type"] == "SPOT":
            data.spot_size = plan["spot_size"]
        ob = bpy.data.objects.new(f"Light{i}", data)
        ob.location = plan["location"]
        if "rotation" in plan:
            ob.rotation_mode = "XYZ"
            ob.rotation_euler = plan["rotation"]
        bpy.context.scene.collection.objects.link(ob)
        made.append(ob)
    return made


def build_camera(camera: dict, cfg):
    from matseg.synth3d.blender import require_bpy

    bpy = require_bpy()
    data = bpy.data.cameras.new("Camera")
    data.type = "PERSP"
    data.lens = cfg.lens_mm
    data.sensor_width, data.sensor_height = cfg.sensor_mm
    data.sensor_fit = "AUTO"
    data.shift_x = data.shift_y = 0.0
    data.clip_start, data.clip_end = 0.1, 10000.0
    ob = bpy.data.objects.new("Camera", data)
    ob.rotation_mode = "XYZ"
    ob.location = camera["location"]
    ob.rotation_euler = camera["rotation"]
    bpy.context.scene.collection.objects.link(ob)
    bpy.context.scene.camera = ob
    return ob
