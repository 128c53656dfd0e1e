"""Objects of a 3D scene: procedural shapes, user meshes, their layout (digest §1.7 step 2).

Geometry is handled as plain arrays (:class:`MeshData`) so that shapes, rotations, size
normalisation, joins and the random layout are pure NumPy (tested without Blender); only
:func:`import_mesh_file` and :func:`make_blender_object` touch Blender.

Procedural shapes are joins of 1..N primitives (cube, sphere, cylinder, cone, torus) built as
parametric grids with a uniform vertex density, optionally bent by a smooth random space warp
(a sum of random sinusoidal displacement waves: it cannot tear the mesh, needs no normals and
works on any topology) and smoothed by a subdivision-surface modifier.

Rotations are real: each object's vertices are rotated by a random Euler XYZ rotation before its
size is normalised (the reference wrote ``rotation_quaternion`` of Euler-mode objects, which
Blender ignores, so OBJ objects were never rotated).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SHAPES = ("cube", "sphere", "cylinder", "cone", "torus")
MESH_EXTENSIONS = (".obj", ".gltf", ".glb", ".ply", ".stl")


class MeshImportError(RuntimeError):
    """A user mesh file could not be imported (message names the file and Blender's reason)."""


@dataclass
class MeshData:
    """A polygon mesh as arrays.

    Attributes:
        verts: ``(N, 3)`` float64 vertex positions.
        face_sizes: ``(F,)`` int64 corners per face (>= 3).
        face_verts: ``(sum(face_sizes),)`` int64 vertex index of each corner, faces one after another.
        smooth: ``(F,)`` bool, smooth shading per face.
    """

    verts: np.ndarray
    face_sizes: np.ndarray
    face_verts: np.ndarray
    smooth: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self):
        self.verts = np.asarray(self.verts, np.float64).reshape(-1, 3)
        self.face_sizes = np.asarray(self.face_sizes, np.int64).ravel()
        self.face_verts = np.asarray(self.face_verts, np.int64).ravel()
        if self.smooth is None:
            self.smooth = np.ones(len(self.face_sizes), bool)
        self.smooth = np.asarray(self.smooth, bool).ravel()
        if int(self.face_sizes.sum()) != len(self.face_verts) or len(self.smooth) != len(self.face_sizes):
            raise ValueError(
                f"inconsistent mesh: {len(self.face_sizes)} faces with {int(self.face_sizes.sum())} corners, "
                f"{len(self.face_verts)} corner indices, {len(self.smooth)} smooth flags"
            )
        if len(self.face_verts) and (self.face_verts.min() < 0 or self.face_verts.max() >= len(self.verts)):
            raise ValueError(f"face indices outside 0..{len(self.verts) - 1}")

    @property
    def num_faces(self) -> int:
        return len(self.face_sizes)

    def transformed(self, matrix: np.ndarray, offset=(0.0, 0.0, 0.0)) -> "MeshData":
        """Copy with ``verts @ matrix.T + offset`` (``matrix`` ``(3, 3)``)."""
        return MeshData(self.verts @ np.asarray(matrix).T + np.asarray(offset), self.face_sizes, self.face_verts, self.smooth)

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        return self.verts.min(axis=0), self.verts.max(axis=0)


def join_meshes(meshes: list[MeshData]) -> MeshData:
    """One mesh holding all of ``meshes`` (vertex indices shifted)."""
    if not meshes:
        raise ValueError("join_meshes needs at least one mesh")
    offsets = np.cumsum([0] + [len(m.verts) for m in meshes[:-1]])
    return MeshData(
        np.concatenate([m.verts for m in meshes]),
        np.concatenate([m.face_sizes for m in meshes]),
        np.concatenate([m.face_verts + off for m, off in zip(meshes, offsets)]),
        np.concatenate([m.smooth for m in meshes]),
    )


def merge_close_vertices(mesh: MeshData, decimals: int = 6) -> MeshData:
    """Weld vertices whose coordinates agree to ``decimals`` places; faces that collapse lose the
    repeated corners (a quad with one collapsed edge becomes a triangle, fewer than 3 -> dropped).

    The parametric grids below produce duplicates along seams and poles; welding them makes
    each primitive one closed surface (what the reference's ``remove_doubles`` did).
    """
    key = np.round(mesh.verts, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    verts = mesh.verts[first]
    remapped = inverse[mesh.face_verts]
    sizes, corners, smooth = [], [], []
    # Faces are few (thousands) and mostly regular; group by size to stay vectorised.
    starts = np.concatenate([[0], np.cumsum(mesh.face_sizes)[:-1]])
    for n in np.unique(mesh.face_sizes):
        idx = np.flatnonzero(mesh.face_sizes == n)
        block = remapped[starts[idx, None] + np.arange(n)]  # (k, n)
        # Drop corners equal to their predecessor (cyclically): collapsed edges.
        keep = block != np.roll(block, 1, axis=1)
        counts = keep.sum(axis=1)
        for m in np.unique(counts):
            if m < 3:
                continue
            rows = counts == m
            sizes.append(np.full(int(rows.sum()), m))
            corners.append(block[rows][keep[rows]].reshape(-1))
            smooth.append(mesh.smooth[idx][rows])
    if not sizes:
        raise ValueError("mesh has no faces left after welding")
    # Order of faces changes (grouped by size); harmless for rendering and UV projection.
    return MeshData(verts, np.concatenate(sizes), np.concatenate(corners), np.concatenate(smooth))


def _grid(points: np.ndarray, wrap_u: bool = False, wrap_v: bool = False, flip: bool = False, smooth: bool = True) -> MeshData:
    """Quad mesh over a ``(nu, nv, 3)`` grid of points; ``wrap_*`` joins the last row/column to the first."""
    nu, nv = points.shape[:2]
    idx = np.arange(nu * nv).reshape(nu, nv)
    if wrap_u:
        idx = np.concatenate([idx, idx[:1]], axis=0)
    if wrap_v:
        idx = np.concatenate([idx, idx[:, :1]], axis=1)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    quads = np.stack([a, b, c, d], axis=-1).reshape(-1, 4)
    if flip:
        quads = quads[:, ::-1]
    return MeshData(points.reshape(-1, 3), np.full(len(quads), 4), quads.ravel(), np.full(len(quads), smooth))


def _cube_faces(n: int) -> list[MeshData]:
    """Six ``n x n`` grids on the faces of the cube [-0.5, 0.5]^3, wound outward."""
    t = np.linspace(-0.5, 0.5, n + 1)
    u, v = np.meshgrid(t, t, indexing="ij")
    faces = []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            pts = np.empty(u.shape + (3,))
            a1, a2 = (axis + 1) % 3, (axis + 2) % 3
            pts[..., axis] = 0.5 * sign
            pts[..., a1] = u
            pts[..., a2] = v
            # (a1, a2, axis) is right-handed, so u x v points along +axis; flip for the -axis face.
            faces.append(_grid(pts, flip=sign < 0, smooth=False))
    return faces


def primitive(name: str, resolution: int = 12) -> MeshData:
    """A closed primitive of unit size (bounding box about [-0.5, 0.5]^3), faces wound outward.

    ``resolution`` sets the grid density (cells along a cube edge; around-counts scale with it).
    """
    n = max(2, int(resolution))
    if name == "cube":
        return merge_close_vertices(join_meshes(_cube_faces(n)))
    if name == "sphere":
        cube = merge_close_vertices(join_meshes(_cube_faces(n)))
        verts = cube.verts / np.linalg.norm(cube.verts, axis=1, keepdims=True) * 0.5
        return MeshData(verts, cube.face_sizes, cube.face_verts, np.ones(cube.num_faces, bool))
    around = 4 * n
    theta = np.linspace(0.0, 2 * np.pi, around, endpoint=False)
    if name in ("cylinder", "cone"):
        h = np.linspace(-0.5, 0.5, n + 1)
        top_radius = 0.5 if name == "cylinder" else 0.0
        radius = 0.5 + (top_radius - 0.5) * (h + 0.5)
        side = np.stack([np.cos(theta)[:, None] * radius, np.sin(theta)[:, None] * radius,
                         np.broadcast_to(h, (around, n + 1))], axis=-1)  # fmt: skip
        parts = [_grid(side, wrap_u=True)]
        r = np.linspace(0.0, 0.5, max(2, n // 2) + 1)
        for z, flip in ((-0.5, True), (0.5, False)):
            if z > 0 and top_radius == 0.0:
                continue
            cap = np.stack([np.cos(theta)[:, None] * r, np.sin(theta)[:, None] * r, np.full((around, len(r)), z)], axis=-1)
            parts.append(_grid(cap, wrap_u=True, flip=not flip, smooth=False))
        return merge_close_vertices(join_meshes(parts))
    if name == "torus":
        minor, major = 0.175, 0.325  # tube and ring radius: outer radius 0.5
        phi = np.linspace(0.0, 2 * np.pi, 2 * n, endpoint=False)
        ring = major + minor * np.cos(phi)
        pts = np.stack([np.cos(theta)[:, None] * ring, np.sin(theta)[:, None] * ring,
                        np.broadcast_to(minor * np.sin(phi), (around, len(phi)))], axis=-1)  # fmt: skip
        return _grid(pts, wrap_u=True, wrap_v=True)
    raise ValueError(f"unknown primitive {name!r}; valid: {', '.join(SHAPES)}")


def euler_matrix(angles) -> np.ndarray:
    """``(3, 3)`` rotation of Blender's Euler XYZ mode: ``Rz @ Ry @ Rx`` (x applied first)."""
    x, y, z = (float(a) for a in angles)
    cx, sx, cy, sy, cz, sz = math.cos(x), math.sin(x), math.cos(y), math.sin(y), math.cos(z), math.sin(z)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def warp_points(points: np.ndarray, waves: list[dict]) -> np.ndarray:
    """Smooth random space warp: ``p + sum_k a_k * d_k * sin(f_k * (w_k . p) + phase_k)``.

    Args:
        points: ``(N, 3)``.
        waves: dicts with ``amplitude`` (float), ``direction`` (3, displacement direction),
            ``wavevector`` (3, spatial direction times frequency in radians per unit), ``phase``.
    """
    out = np.array(points, np.float64, copy=True)
    for w in waves:
        arg = points @ np.asarray(w["wavevector"], np.float64) + w["phase"]
        out += w["amplitude"] * np.sin(arg)[:, None] * np.asarray(w["direction"], np.float64)
    return out


def _unit_vector(rng: np.random.Generator) -> list[float]:
    v = rng.normal(size=3)
    return (v / max(np.linalg.norm(v), 1e-12)).tolist()


def draw_shape(rng: np.random.Generator, cfg) -> dict:
    """A procedural shape plan (``cfg``: :class:`~matseg.synth3d.config.ObjectsConfig`), JSON-ready.

    Parts are unit primitives with random per-axis scale (0.3-1), rotation and offset (within
    half a unit), so joins overlap into one compound shape.
    """
    parts = []
    for i in range(int(rng.integers(1, cfg.parts_max + 1))):
        parts.append({
            "primitive": str(cfg.shapes[int(rng.integers(len(cfg.shapes)))]),
            "scale": rng.uniform(0.3, 1.0, 3).round(5).tolist(),
            "rotation": rng.uniform(0.0, 2 * np.pi, 3).round(5).tolist(),
            "offset": ([0.0, 0.0, 0.0] if i == 0 else rng.uniform(-0.5, 0.5, 3).round(5).tolist()),
        })  # fmt: skip
    waves = []
    if rng.random() < cfg.p_displace:
        amplitude = float(rng.uniform(*cfg.displace_amplitude))
        for _ in range(4):
            freq = float(rng.uniform(*cfg.displace_frequency)) * 2 * np.pi
            waves.append({
                "amplitude": round(amplitude / 2, 5),
                "direction": np.round(_unit_vector(rng), 5).tolist(),
                "wavevector": (np.asarray(_unit_vector(rng)) * freq).round(5).tolist(),
                "phase": round(float(rng.uniform(0, 2 * np.pi)), 5),
            })  # fmt: skip
    return {"kind": "shape", "parts": parts, "warp": waves, "subdivision": bool(rng.random() < cfg.p_subdivision)}


def shape_mesh(plan: dict) -> MeshData:
    """Geometry of a :func:`draw_shape` plan (before the object's rotation and size)."""
    meshes = []
    for part in plan["parts"]:
        base = primitive(part["primitive"])
        matrix = euler_matrix(part["rotation"]) @ np.diag(part["scale"])
        meshes.append(base.transformed(matrix, part["offset"]))
    mesh = join_meshes(meshes)
    if plan["warp"]:
        lo, hi = mesh.bbox()
        size = float((hi - lo).max())
        # Waves are defined on the unit-size shape: scale in, warp, scale out.
        mesh = MeshData(warp_points(mesh.verts / size, plan["warp"]) * size, mesh.face_sizes, mesh.face_verts,
                        np.ones(mesh.num_faces, bool))  # fmt: skip
    return mesh


def place_mesh(mesh: MeshData, rotation, size: float, location) -> MeshData:
    """Rotate (Euler XYZ), then scale so the largest bounding-box side is ``size`` and move the
    bounding-box centre to ``location`` (digest §1.7 step 2: size normalisation, origin at the
    bbox centre)."""
    rotated = mesh.transformed(euler_matrix(rotation))
    lo, hi = rotated.bbox()
    extent = float((hi - lo).max())
    if not extent > 0:
        raise ValueError("mesh has zero extent (all vertices at one point)")
    scale = size / extent
    centre = (lo + hi) / 2
    return MeshData((rotated.verts - centre) * scale + np.asarray(location, np.float64),
                    rotated.face_sizes, rotated.face_verts, rotated.smooth)  # fmt: skip


def list_input_files(folder: str | os.PathLike, extensions: tuple[str, ...], what: str) -> list[Path]:
    """Files under ``folder`` whose extension (any case) is in ``extensions``, sorted.

    Raises FileNotFoundError / NotADirectoryError naming the ``what`` folder when it is missing
    or not a folder, and ValueError when it holds no such file.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: {what} folder does not exist")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: {what} path is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
    if not files:
        raise ValueError(f"{folder}: no {what} files found (looked for {', '.join(extensions)})")
    return files


def list_mesh_files(folder: str | os.PathLike) -> list[Path]:
    """Mesh files (obj, gltf, glb, ply, stl; any case) under ``folder``, sorted (see :func:`list_input_files`)."""
    return list_input_files(folder, MESH_EXTENSIONS, "mesh")


def draw_object(rng: np.random.Generator, cfg, mesh_files: list[Path], size: float, location) -> dict:
    """One object of a layout: a user mesh (probability ``cfg.p_user_mesh`` when files exist)
    or a procedural shape, with a random Euler rotation, the given size and location."""
    if mesh_files and rng.random() < cfg.p_user_mesh:
        plan = {"kind": "mesh", "file": str(mesh_files[int(rng.integers(len(mesh_files)))])}
    else:
        plan = draw_shape(rng, cfg)
    plan["rotation"] = rng.uniform(0.0, 2 * np.pi, 3).round(5).tolist()
    plan["size"] = round(float(size), 5)
    plan["location"] = np.round(np.asarray(location, np.float64), 5).tolist()
    return plan


def draw_main_layout(rng: np.random.Generator, cfg, mesh_files: list[Path]) -> dict:
    """The main object(s) as digest §1.7 step 2: one object (p_single) or a 'few'/'many' group.

    Returns ``{"layout": "single"|"few"|"many", "objects": [object plans]}``.
    """
    def z_of(z: float, size: float) -> float:
        return z + rng.random() * size / 2

    if rng.random() < cfg.p_single:
        size = rng.uniform(*cfg.single_size)
        return {"layout": "single", "objects": [draw_object(rng, cfg, mesh_files, size, (0.0, 0.0, z_of(0.0, size)))]}
    if rng.random() < cfg.p_few:
        layout, count_max, size_range, xy, z_range = "few", cfg.few_count_max, cfg.few_size, cfg.few_xy, cfg.few_z
    else:
        layout, count_max, size_range, xy, z_range = "many", cfg.many_count_max, cfg.many_size, cfg.many_xy, cfg.many_z
    objects = []
    for _ in range(int(rng.integers(1, count_max + 1))):
        size = rng.uniform(*size_range)
        x, y = rng.uniform(-xy, xy, 2)
        objects.append(draw_object(rng, cfg, mesh_files, size, (x, y, z_of(rng.uniform(*z_range), size))))
    return {"layout": layout, "objects": objects}


def object_mesh(plan: dict, importer=None) -> MeshData:
    """Placed geometry of one object plan; ``importer(path) -> MeshData`` loads user meshes."""
    if plan["kind"] == "mesh":
        if importer is None:
            raise ValueError("a user-mesh object needs an importer")
        base = importer(plan["file"])
    else:
        base = shape_mesh(plan)
    return place_mesh(base, plan["rotation"], plan["size"], plan["location"])


# ----------------------------------------------------------------------------- Blender side


def import_mesh_file(path: str | os.PathLike) -> MeshData:
    """Import a user mesh (obj, gltf, glb, ply, stl) with Blender's importers; every mesh object
    of the file is joined in world space (glTF hierarchies and their rotations applied).

    Raises :class:`MeshImportError` naming the file when Blender fails or finds no polygons.
    The imported objects are deleted again; only the arrays are kept.
    """
    from matseg.synth3d.blender import log_tail, quiet_output, require_bpy

    bpy = require_bpy()
    path = Path(path)
    ext = path.suffix.lower()
    importers = {
        ".obj": lambda p: bpy.ops.wm.obj_import(filepath=p),
        ".ply": lambda p: bpy.ops.wm.ply_import(filepath=p),
        ".stl": lambda p: bpy.ops.wm.stl_import(filepath=p),
        ".gltf": lambda p: bpy.ops.import_scene.gltf(filepath=p),
        ".glb": lambda p: bpy.ops.import_scene.gltf(filepath=p),
    }
    if ext not in importers:
        raise MeshImportError(f"{path}: unsupported mesh format {ext!r} (supported: {', '.join(MESH_EXTENSIONS)})")
    if not path.is_file():
        raise MeshImportError(f"{path}: mesh file not found")
    before = set(bpy.data.objects)
    log = None
    try:
        with quiet_output() as log:
            result = importers[ext](str(path))
            reason = log_tail(log)
    except Exception as exc:  # Blender raises RuntimeError with its report text
        raise MeshImportError(f"{path}: cannot import mesh ({' '.join(str(exc).split())[:300]})") from None
    new = [ob for ob in bpy.data.objects if ob not in before]
    try:
        if "FINISHED" not in result:
            raise MeshImportError(f"{path}: cannot import mesh (importer returned {sorted(result)}; {reason})")
        meshes = []
        depsgraph = bpy.context.evaluated_depsgraph_get()
        for ob in new:
            if ob.type != "MESH":
                continue
            data = ob.evaluated_get(depsgraph).data
            n_v, n_f, n_l = len(data.vertices), len(data.polygons), len(data.loops)
            if n_f == 0:
                continue
            co = np.empty(n_v * 3, np.float32)
            data.vertices.foreach_get("co", co)
            sizes = np.empty(n_f, np.int32)
            data.polygons.foreach_get("loop_total", sizes)
            corners = np.empty(n_l, np.int32)
            data.loops.foreach_get("vertex_index", corners)
            smooth = np.empty(n_f, bool)
            data.polygons.foreach_get("use_smooth", smooth)
            world = np.array(ob.matrix_world, np.float64)
            verts = co.reshape(-1, 3).astype(np.float64) @ world[:3, :3].T + world[:3, 3]
            meshes.append(MeshData(verts, sizes, corners, smooth))
        if not meshes:
            raise MeshImportError(f"{path}: the file holds no mesh with faces")
        mesh = join_meshes(meshes)
        if not np.isfinite(mesh.verts).all():
            raise MeshImportError(f"{path}: mesh has non-finite vertex coordinates")
        return mesh
    finally:
        if new:
            bpy.data.batch_remove(new)
            bpy.context.view_layer.update()  # else the view layer still lists the removed objects


def make_blender_object(name: str, mesh: MeshData, collection=None, subdivision: int = 0, uv_margin: float | None = 0.03):
    """Create a Blender mesh object from ``mesh``; optional subdivision-surface modifier and
    smart UV projection (island margin ``uv_margin``; None = no UVs)."""
    from matseg.synth3d.blender import quiet_output, require_bpy

    bpy = require_bpy()
    data = bpy.data.meshes.new(name)
    data.vertices.add(len(mesh.verts))
    data.loops.add(len(mesh.face_verts))
    data.polygons.add(mesh.num_faces)
    data.vertices.foreach_set("co", mesh.verts.astype(np.float32).ravel())
    data.loops.foreach_set("vertex_index", mesh.face_verts.astype(np.int32))
    starts = np.concatenate([[0], np.cumsum(mesh.face_sizes)[:-1]]).astype(np.int32)
    data.polygons.foreach_set("loop_start", starts)
    data.polygons.foreach_set("use_smooth", mesh.smooth)
    data.update()
    data.validate(clean_customdata=False)
    ob = bpy.data.objects.new(name, data)
    (collection or bpy.context.scene.collection).objects.link(ob)
    if subdivision > 0:
        mod = ob.modifiers.new("Subdivision", "SUBSURF")
        mod.levels = mod.render_levels = subdivision
    if uv_margin is not None:
        with quiet_output():
            smart_uv_project(ob, uv_margin)
    return ob


def smart_uv_project(ob, island_margin: float) -> None:
    """UV-unwrap ``ob`` with Blender's Smart UV Project (as the reference, island margin 0.03)."""
    from matseg.synth3d.blender import require_bpy

    bpy = require_bpy()
    view_layer = bpy.context.view_layer
    for other in view_layer.objects:
        if other is not None:
            other.select_set(False)
    view_layer.objects.active = ob
    ob.select_set(True)
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        bpy.ops.mesh.select_all(action="SELECT")
        bpy.ops.uv.smart_project(island_margin=island_margin)
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
        ob.select_set(False)
