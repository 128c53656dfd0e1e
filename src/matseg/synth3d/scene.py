"""One 3D scene from a seed: draw the plan, build it in Blender, render once, annotate from the AOVs.

Steps (paper appendix C, digest §1.7): main object(s) with a multi-material driven by photo
maps, HDRI, optional ground plane, distractors and lights, a random camera, one Cycles render.
Every random draw comes from one ``numpy.random.Generator`` seeded by the scene seed (and the
attempt number), and is recorded in the returned ``info`` (written to meta.json).

A scene whose main object covers too little of the image or shows fewer than
``quality.min_visible_materials`` materials is drawn again (attempt 1, 2, ...), at most
``quality.max_scene_attempts`` renders.
"""

from __future__ import annotations

import resource
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from matseg.io.dataset import default_min_visible_pixels
from matseg.io.images import ImageReadError
from matseg.io.sources import ImageSource
from matseg.synth3d.materials import PbrLibrary, shrink_to_side


class Scene3DError(RuntimeError):
    """The scene could not be made (bad input file, no acceptable draw); reported per item."""


@dataclass
class SceneInputs:
    """Input collections shared by all scenes of a job (picklable; scanned once in the driver)."""

    photos: ImageSource
    hdris: list[Path]
    pbrs: list[dict] = field(default_factory=list)
    mesh_files: list[Path] = field(default_factory=list)
    photo_max_side: int = 1024
    pbr_library: PbrLibrary = field(default_factory=PbrLibrary)


@dataclass
class Scene3D:
    """A rendered scene: ``image`` (H, W, 3) uint8 RGB, ``weights`` (M, H, W) float32 in [0, 1]
    summing to ``roi`` (H, W) float32 (visible coverage of the main object), ``info`` (meta)."""

    image: np.ndarray
    weights: np.ndarray
    roi: np.ndarray
    info: dict


def attempt_rng(seed: int, attempt: int) -> np.random.Generator:
    """The generator of one attempt of a scene (attempt 0 is the scene's first draw)."""
    return np.random.default_rng(np.random.SeedSequence([seed, attempt]))


def cycles_seed(seed: int, attempt: int) -> int:
    return int(np.random.SeedSequence([seed, attempt, 1]).generate_state(1)[0] & 0x7FFFFFFF)


def draw_plan(rng: np.random.Generator, cfg, inputs: SceneInputs) -> dict:
    """Every draw that does not need geometry: materials, objects, world (pure NumPy)."""
    from matseg.synth3d.materials import draw_leaf, draw_material_plan
    from matseg.synth3d.objects import draw_main_layout
    from matseg.synth3d.world import draw_distractors, draw_ground, draw_hdri, draw_lights

    material = draw_material_plan(rng, cfg.materials, cfg.splits, inputs.pbrs, inputs.photos)
    main = draw_main_layout(rng, cfg.objects, inputs.mesh_files)
    hdri = draw_hdri(rng, cfg.world, inputs.hdris)
    ground = draw_ground(rng, cfg.world)
    if ground is not None:
        # The reference always gave the ground a PBR; without PBR folders a random BSDF.
        ground["material"] = draw_leaf(rng, _always_pbr(cfg.materials), inputs.pbrs)
    distractors = draw_distractors(rng, cfg.world, cfg.objects, inputs.mesh_files)
    for d in distractors:
        d["material"] = draw_leaf(rng, cfg.materials, inputs.pbrs)
    lights = draw_lights(rng, cfg.world)
    return {"material": material, "main": main, "hdri": hdri, "ground": ground, "distractors": distractors, "lights": lights}


def _always_pbr(cfg):
    import dataclasses

    return dataclasses.replace(cfg, p_pbr=1.0)


def _split_photos(tree: dict) -> list[int]:
    found: list[int] = []

    def walk(node):
        if "split" in node:
            found.append(node["split"]["photo_index"])
        for child in node.get("children", ()):
            walk(child)

    walk(tree)
    return sorted(set(found))


def _memory_mb() -> dict:
    """Resident memory of this process now and at its peak (MiB)."""
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    try:
        with open("/proc/self/statm") as fh:
            rss = int(fh.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        rss = float("nan")
    return {"rss_mb": round(rss, 1), "peak_rss_mb": round(peak_kb / 1024, 1)}


def build_and_render(plan: dict, rng: np.random.Generator, cfg, inputs: SceneInputs, seed: int, threads: int,
                     annotate: bool = True, workdir: str | Path | None = None) -> tuple[np.ndarray, dict, dict]:  # fmt: skip
    """Build ``plan`` in Blender, choose the camera (draws continue on ``rng``), render once.

    Returns ``(rgb, passes, info)``: the RGB image, the AOV passes (empty when not
    ``annotate``) and what was built (camera, render settings, timings).
    """
    from matseg.synth3d.objects import MeshImportError

    try:
        return _build_and_render(plan, rng, cfg, inputs, seed, threads, annotate, workdir)
    except (MeshImportError, ImageReadError) as exc:
        raise Scene3DError(str(exc)) from None


def _build_and_render(plan, rng, cfg, inputs, seed, threads, annotate, workdir):
    from matseg.synth3d.annotation import AOV_PREFIX, read_passes, setup_outputs
    from matseg.synth3d.blender import BlenderError, configure_render, image_from_array, log_tail, quiet_output, require_bpy, reset_scene
    from matseg.synth3d.materials import build_leaf_material, build_material
    from matseg.synth3d.objects import MeshData, import_mesh_file, join_meshes, make_blender_object, object_mesh
    from matseg.synth3d.world import build_camera, build_ground, build_lights, build_world, camera_parameters, choose_camera

    bpy = require_bpy()
    t0 = time.perf_counter()
    scene = reset_scene()
    settings = configure_render(scene, cfg.render, seed, threads)
    mat_cfg = cfg.materials
    cache: dict[str, MeshData] = {}

    def importer(path: str) -> MeshData:
        if path not in cache:
            cache[path] = import_mesh_file(path)
        return cache[path]

    main_mesh = join_meshes([object_mesh(p, importer) for p in plan["main"]["objects"]])
    distractor_meshes = [object_mesh(p, importer) for p in plan["distractors"]]
    photo_images = {i: image_from_array(f"photo{i}", shrink_to_side(inputs.photos.get(i), inputs.photo_max_side))
                    for i in _split_photos(plan["material"]["tree"])}  # fmt: skip
    coords = plan["material"]["coordinates"]
    scene_images: dict = {}

    def pbr_images(folder: str) -> dict:
        return inputs.pbr_library.blender_images(folder, scene_images)

    material = build_material("Multiphase", plan["material"], photo_images, mat_cfg,
                              aov_prefix=AOV_PREFIX if annotate else None, pbr_images=pbr_images)  # fmt: skip
    # One modifier for the joined mesh: only when every part is a (light) procedural shape.
    objects = plan["main"]["objects"]
    subdivide = any(o.get("subdivision") for o in objects) and all(o["kind"] == "shape" for o in objects)
    main = make_blender_object("MainObject", main_mesh, subdivision=1 if subdivide else 0, uv_margin=cfg.objects.uv_island_margin)
    main.data.materials.append(material)

    for i, (dplan, mesh) in enumerate(zip(plan["distractors"], distractor_meshes)):
        ob = make_blender_object(f"Distractor{i}", mesh, subdivision=1 if dplan.get("subdivision") else 0,
                                 uv_margin=cfg.objects.uv_island_margin)  # fmt: skip
        ob.data.materials.append(build_leaf_material(f"DistractorMaterial{i}", dplan["material"], coords, mat_cfg, pbr_images))
    if plan["ground"] is not None:
        build_ground(plan["ground"], coords, cfg.world, mat_cfg, pbr_images, cfg.objects.uv_island_margin)
    build_world(plan["hdri"], cfg.render.world_map_resolution)
    build_lights(plan["lights"])

    # Camera last: it must see the main object, whose vertices are known now.
    verts = main_mesh.verts[:: max(1, len(main_mesh.verts) // 5000)]
    camera = choose_camera(rng, cfg.camera, verts, cfg.render.width, cfg.render.height)
    build_camera(camera, cfg.camera)
    t_build = time.perf_counter() - t0

    own_dir = workdir is None
    folder = Path(tempfile.mkdtemp(prefix="matseg-synth3d-")) if own_dir else Path(workdir)
    try:
        files = setup_outputs(scene, folder, len(plan["material"]["leaves"]), annotate)
        t1, c1 = time.perf_counter(), time.process_time()
        log = folder / "blender.log"
        try:
            with quiet_output(log):
                bpy.ops.render.render(write_still=False)
        except RuntimeError as exc:
            raise BlenderError(f"render failed: {' '.join(str(exc).split())} {log_tail(log)}") from None
        t_render, c_render = time.perf_counter() - t1, time.process_time() - c1
        t2, c2 = time.perf_counter(), time.process_time()
        if annotate:
            rgb, passes = read_passes(files)
        else:
            from matseg.io.images import read_image_rgb

            rgb, passes = read_image_rgb(files.rgb), {}
        t_read, c_read = time.perf_counter() - t2, time.process_time() - c2
    finally:
        if own_dir:
            shutil.rmtree(folder, ignore_errors=True)
    info = {
        "camera": camera_parameters(camera, cfg.camera, cfg.render),
        "camera_draw": {"tries": camera["tries"], "vertices_in_view": camera["in_view"]},
        "render": settings,
        # CPU seconds (all threads of this process) beside wall seconds: on a shared machine the
        # wall time of a render varies several-fold with the load, its CPU time much less.
        "timing": {"build_s": round(t_build, 4), "render_s": round(t_render, 4), "read_passes_s": round(t_read, 4),
                   "render_cpu_s": round(c_render, 4), "read_passes_cpu_s": round(c_read, 4)},  # fmt: skip
    }
    return rgb, passes, info


def visible_materials(weights: np.ndarray, roi: np.ndarray) -> list[int]:
    """Materials that ``matseg check`` counts as visible in the written 8-bit files: fraction
    ``mask / sum(masks) > 0.5`` on at least ``max(16, 0.1 % of the ROI)`` ROI pixels."""
    masks = np.rint(np.clip(weights, 0, 1) * 255).astype(np.uint16)
    roi_in = np.rint(np.clip(roi, 0, 1) * 255) >= 128
    total = masks.sum(axis=0)
    roi_in &= total > 0
    need = default_min_visible_pixels(int(roi_in.sum()))
    counts = ((2 * masks > total[None]) & roi_in[None]).sum(axis=(1, 2))
    return [i for i, c in enumerate(counts) if c >= need]


#: Quality-gate rejection kinds (the summary counts them; meta.json has the numbers).
REJECT_SMALL = "main object too small in the image"
REJECT_MATERIALS = "too few visible materials"


class SceneRejectedError(Scene3DError):
    """Every attempt failed the quality gate; ``next_attempt`` is where a retry should go on."""

    def __init__(self, message: str, next_attempt: int):
        super().__init__(message)
        self.next_attempt = next_attempt


def generate_scene(seed: int, cfg, inputs: SceneInputs, threads: int = 0, first_attempt: int = 0) -> Scene3D:
    """Draw, build and render a scene from ``seed``; redraw (next attempt) while the quality
    gate fails, at most ``quality.max_scene_attempts`` renders from ``first_attempt`` on.

    Raises :class:`Scene3DError` for bad inputs, :class:`SceneRejectedError` when no attempt passes.
    """
    from matseg.synth3d.annotation import aov_names, weights_from_aovs

    start = time.perf_counter()
    rejected = []
    last = first_attempt + cfg.quality.max_scene_attempts
    for attempt in range(first_attempt, last):
        rng = attempt_rng(seed, attempt)
        try:
            plan = draw_plan(rng, cfg, inputs)
        except ImageReadError as exc:  # every photo drawn for a split was unreadable
            raise Scene3DError(str(exc)) from None
        rgb, passes, built = build_and_render(plan, rng, cfg, inputs, cycles_seed(seed, attempt), threads)
        names = aov_names(len(plan["material"]["leaves"]))
        raw = np.stack([passes[n] for n in names[:-1]])
        weights, roi, stats = weights_from_aovs(raw, passes[names[-1]])
        coverage = float(roi.mean())
        visible = visible_materials(weights, roi)
        if coverage < cfg.quality.min_roi_fraction:
            rejected.append({"attempt": attempt, "reason": REJECT_SMALL, "roi_fraction": round(coverage, 5)})
        elif len(visible) < cfg.quality.min_visible_materials:
            rejected.append({"attempt": attempt, "reason": REJECT_MATERIALS, "visible_materials": len(visible)})
        else:
            info = {
                "attempt": attempt,
                "rejected_attempts": rejected,
                "plan": plan,
                **built,
                "annotation": {**stats, "roi_fraction": round(coverage, 5), "visible_materials": [i + 1 for i in visible]},
                "memory": _memory_mb(),
            }
            info["timing"]["scene_s"] = round(time.perf_counter() - start, 4)
            return Scene3D(rgb, weights, roi, info)
    reasons = "; ".join(sorted({r["reason"] for r in rejected}))
    raise SceneRejectedError(f"no acceptable scene in attempts {first_attempt}-{last - 1} ({reasons})", last)
