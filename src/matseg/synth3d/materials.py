"""Multi-material surfaces: a binary tree of Mix Shaders driven by photo maps (paper §3.1, digest §1.7.3).

A material with ``n > 1`` regions is a split whose first branch holds ``floor(n/2)`` regions
and whose second holds ``ceil(n/2)`` (the reference's recursion). A split reads one channel of a
natural photo (Separate Color in RGB, HSV or HSL mode) through a ramp: a hard step at a
threshold, or a truly soft linear ramp between a low and a high threshold (Map Range, clamped)
-- the reference's "soft" ColorRamp had its stops in the wrong order and was a step as well.
The ramp value ``f`` is the Mix Shader factor: the first branch gets ``1 - f``, the second ``f``.

Each leaf (a PBR material from a folder, or a random Principled BSDF with the reference's
parameter ranges) also gets its **exact weight**: the product of the factors along its branch,
computed by Math nodes from the very sockets that drive the Mix Shaders. The weights of all
leaves sum to 1 at every shading point; each leaf writes its weight times its alpha (opacity
map or BSDF Alpha) to a Shader AOV, the part of the hit the camera sees as that material.

Random draws are pure (NumPy, no Blender) and produce JSON-ready plans recorded in meta.json;
:func:`build_material` turns a plan into Blender nodes.
"""

from __future__ import annotations

import colorsys
import functools
import os
import uuid
from pathlib import Path

import cv2
import numpy as np

from matseg.io.images import ImageReadError

# ----------------------------------------------------------------------------- PBR folders


def scan_pbr_roots(roots: list[str | os.PathLike], probe_side: int = 16) -> tuple[list[dict], dict[str, str]]:
    """PBR materials under each root (the root itself or any folder below it), read with the
    shared reader :func:`matseg.materials.pbr.read_pbr` (every common naming convention).

    Each material is probed once at ``probe_side`` pixels, so a folder whose colour map cannot
    be decoded is reported here and never drawn.

    Returns ``(materials, bad)``: materials as ``{"id": folder, "found": {property: file}}``
    sorted by folder; ``bad`` maps a folder to the reason it was skipped. Raises
    FileNotFoundError/NotADirectoryError for a bad root and ValueError when no root holds a
    usable material.
    """
    from matseg.materials.pbr import PBRReadError, find_materials, read_pbr

    materials, bad = [], {}
    for root in roots:
        folders, not_pbr = find_materials(root)  # raises for a missing root, naming it
        bad.update(not_pbr)
        for folder in folders:
            try:
                report = read_pbr(folder, max_side=probe_side).report
            except PBRReadError as exc:
                bad[str(folder)] = str(exc)
                continue
            materials.append({"id": str(folder), "found": dict(report.found)})
    if not materials:
        raise ValueError(f"no usable PBR material folder under {', '.join(map(str, roots))}" + (f" ({len(bad)} skipped)" if bad else ""))
    materials.sort(key=lambda m: m["id"])
    return materials, bad


# ----------------------------------------------------------------------------- random draws


def _rgba(rng: np.random.Generator) -> list[float]:
    return [*np.round(rng.random(3), 5).tolist(), 1.0]


def _physical_specular(ior: float) -> float:
    # Specular IOR Level that reproduces the Fresnel reflectance of `ior` (0.5 <-> F0 = 0.04).
    return float(((ior - 1) / (ior + 1)) ** 2 / 0.08)


def _specular_level(rng: np.random.Generator, ior: float) -> float:
    r = rng.random()
    if r < 0.12:
        return float(rng.random())
    return 0.5 if r < 0.56 else _physical_specular(ior)


def draw_bsdf(rng: np.random.Generator, p_transparent: float) -> dict:
    """Random Principled BSDF inputs with the reference's ranges (digest §1.7.3), Blender 5 names.

    Returns a dict of socket name -> value (plus ``"kind"``: ``"opaque"`` or ``"transparent"``).
    Where the digest gives a probability only for the first alternative, the remaining mass is
    split equally among the others. Fixed: the transparent kind's physical specular is computed
    from its IOR (the reference used the specular value).
    """
    U = rng.random
    if U() >= p_transparent:
        h, s, v = U(), U(), U()
        ior = 1 + 2.5 * U()
        r = U()
        params = {
            "kind": "opaque",
            "Base Color": [*np.round(colorsys.hsv_to_rgb(h, s, v), 5).tolist(), 1.0],
            "Subsurface Weight": 0.0,
            "Transmission Weight": U() if U() < 0.98 else 1.0,
            "Roughness": U() if U() < 0.9 else 0.0,
            "Metallic": U() if r < 0.8 else (0.0 if r < 0.9 else 1.0),
            "IOR": ior,
            "Specular IOR Level": _specular_level(rng, ior),
            "Specular Tint": [1.0, 1.0, 1.0, 1.0],
            "Anisotropic": U() if U() < 0.4 else 0.0,
            "Anisotropic Rotation": U() if U() < 0.4 else 0.0,
            "Sheen Weight": U() if U() < 0.4 else 0.0,
            "Sheen Tint": [1.0, 1.0, 1.0, 1.0] if U() < 0.6 else _rgba(rng),
            "Coat Weight": 0.03 * U(),
            "Coat Roughness": 0.03 * U(),
            "Alpha": 1.0,
        }
        if U() < 0.03:
            params["Emission Color"] = _rgba(rng)
            params["Emission Strength"] = 100 * U() ** 2
        else:
            params["Emission Color"] = [0.0, 0.0, 0.0, 1.0]
            params["Emission Strength"] = 0.0
    else:
        grey = 1 - 0.3 * U()
        colour = _rgba(rng) if U() < 0.25 else [grey, grey, grey, 1.0]
        ior = 0.7 + 2 * U() if U() < 0.7 else 1.415 + 0.115 * U()
        c = U()
        params = {
            "kind": "transparent",
            "Base Color": colour,
            "Subsurface Weight": U() if U() < 0.1 else 0.0,
            "Transmission Weight": 1 - 0.2 * U() ** 4 if U() < 0.2 else 1.0,
            "Roughness": 0.2 * U() ** 3 if U() < 0.2 else 0.0,
            "IOR": ior,
            "Metallic": 0.15 * U() ** 3 if U() < 0.1 else 0.0,
            "Specular IOR Level": _specular_level(rng, ior),
            "Specular Tint": [1.0, 1.0, 1.0, 1.0],
            "Anisotropic": U() if U() < 0.12 else 0.0,
            "Anisotropic Rotation": 0.0,
            "Coat Weight": 0.1 * U() if c < 1 / 3 else (U() if c < 2 / 3 else 0.03),
            "Coat Roughness": 0.03,
            "Sheen Weight": 0.0,
            "Sheen Tint": [1.0, 1.0, 1.0, 1.0],
            "Emission Color": [0.0, 0.0, 0.0, 1.0],
            "Emission Strength": 0.0,
            "Alpha": float(rng.uniform(0.6, 1.0)),
        }
    return {k: (round(float(v), 5) if isinstance(v, float) else v) for k, v in params.items()}


def draw_texture_mapping(rng: np.random.Generator, location_max: float, log10_scale, p_axis_scale: float = 0.0) -> dict:
    """Mapping node values: location U(0, v)^3, rotation U(0, 2 pi)^3, scale 10^U(range) (uniform,
    or per axis with probability ``p_axis_scale``)."""
    location = rng.uniform(0.0, location_max, 3)
    rotation = rng.uniform(0.0, 2 * np.pi, 3)
    if rng.random() < p_axis_scale:
        scale = 10.0 ** rng.uniform(*log10_scale, 3)
    else:
        scale = np.full(3, 10.0 ** rng.uniform(*log10_scale))
    return {"location": location.round(5).tolist(), "rotation": rotation.round(5).tolist(), "scale": scale.round(6).tolist()}


def draw_leaf(rng: np.random.Generator, cfg, pbrs: list[dict]) -> dict:
    """One material: a PBR (probability ``cfg.p_pbr`` when ``pbrs`` is not empty) or a random BSDF.

    ``cfg``: :class:`~matseg.synth3d.config.MaterialsConfig`.
    """
    if pbrs and rng.random() < cfg.p_pbr:
        pbr = pbrs[int(rng.integers(len(pbrs)))]
        mapping = draw_texture_mapping(rng, cfg.pbr_location_max, cfg.pbr_log10_scale, cfg.p_pbr_axis_scale)
        return {"mode": "pbr", "id": pbr["id"], "found": dict(pbr["found"]), "mapping": mapping}
    return {"mode": "bsdf", "id": str(uuid.UUID(int=int(rng.integers(2**63)) << 64 | int(rng.integers(2**63)), version=4)),
            "data": draw_bsdf(rng, cfg.p_transparent_bsdf)}  # fmt: skip


def draw_coordinates(rng: np.random.Generator, cfg) -> str:
    """Texture coordinates of the PBR leaves of a scene: camera / object / uv."""
    r = rng.random()
    if r < cfg.p_camera_coords:
        return "camera"
    return "object" if r < cfg.p_camera_coords + cfg.p_object_coords else "uv"


def blender_channels(rgb: np.ndarray, mode: str) -> np.ndarray:
    """Separate Color node outputs for ``rgb`` (``(..., 3)`` float in [0, 1]) in ``mode``.

    RGB: the channels; HSV: (hue, saturation, value); HSL: (hue, saturation, lightness), hue in
    [0, 1) -- Blender's ``rgb_to_hsv``/``rgb_to_hsl`` (same as :mod:`colorsys`). Returns ``(..., 3)``.
    """
    rgb = np.asarray(rgb, np.float32)
    if mode == "RGB":
        return rgb
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    cmax, cmin = rgb.max(axis=-1), rgb.min(axis=-1)
    delta = cmax - cmin
    safe = np.where(delta > 0, delta, 1.0)
    h = np.where(cmax == r, (g - b) / safe, np.where(cmax == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = np.where(delta > 0, (h / 6.0) % 1.0, 0.0)
    if mode == "HSV":
        s = np.where(cmax > 0, delta / np.where(cmax > 0, cmax, 1.0), 0.0)
        return np.stack([h, s, cmax], axis=-1).astype(np.float32)
    if mode == "HSL":
        light = (cmax + cmin) / 2
        denom = np.where(light > 0.5, 2.0 - cmax - cmin, cmax + cmin)
        s = np.where(delta > 0, delta / np.where(denom > 0, denom, 1.0), 0.0)
        return np.stack([h, s, light], axis=-1).astype(np.float32)
    raise ValueError(f"unknown colour mode {mode!r}; valid: RGB, HSV, HSL")


def ramp(values: np.ndarray, low: float, high: float, hard: bool) -> np.ndarray:
    """The split's ramp, as the shader evaluates it: hard: ``values > high``; soft: 0 below
    ``low``, 1 above ``high``, linear between (float32, same shape)."""
    values = np.asarray(values, np.float32)
    if hard:
        return (values > high).astype(np.float32)
    return np.clip((values - low) / max(high - low, 1e-7), 0.0, 1.0).astype(np.float32)


def draw_thresholds(rng: np.random.Generator, cfg) -> tuple[bool, float, float]:
    """``(hard, low, high)`` per digest §1.7.3, stops in the right order: hard -> low = high =
    U(hard_range); soft -> high = U(soft_high_range), low = high * (1 - soft_width_max * U)."""
    if rng.random() < cfg.p_hard:
        t = float(rng.uniform(*cfg.hard_range))
        return True, t, t
    high = float(rng.uniform(*cfg.soft_high_range))
    return False, high * (1 - cfg.soft_width_max * float(rng.random())), high


def shrink_to_side(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` (H, W[, C]) shrunk with area averaging so its longer side is at most ``max_side``
    (returned as is when it already fits)."""
    h, w = image.shape[:2]
    f = max_side / max(h, w)
    if f >= 1:
        return image
    return cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)


def draw_split(rng: np.random.Generator, cfg, photos) -> dict:
    """One split: photo, colour mode, channel, thresholds, coordinates and mapping.

    Photo, channel and thresholds are redrawn (up to ``cfg.tries``) while the ramp leaves
    either side with ``<= cfg.min_side_fraction`` of the photo's weight, so that both branches
    have a chance to be seen (the reference never checked). ``photos``: an
    :class:`~matseg.io.sources.ImageSource`. Raises ImageReadError only if every drawn photo
    is unreadable.
    """
    last_error = None
    plan = None
    for attempt in range(1, cfg.tries + 1):
        index = int(rng.integers(len(photos)))
        mode = str(cfg.color_modes[int(rng.integers(len(cfg.color_modes)))])
        channel = int(rng.integers(3))
        hard, low, high = draw_thresholds(rng, cfg)
        try:
            pixels = photos.get(index)
        except ImageReadError as exc:
            last_error = exc
            continue
        # The split balance is judged on a 128 px copy: a histogram needs no more.
        values = blender_channels(shrink_to_side(pixels, 128) / np.float32(255.0), mode)[..., channel]
        share = float(ramp(values, low, high, hard).mean())
        plan = {
            "photo": photos.entries[index].id,
            "photo_index": index,
            "mode": mode,
            "channel": channel,
            "hard": hard,
            "low": round(low, 5),
            "high": round(high, 5),
            "second_branch_share": round(share, 4),
            "attempts": attempt,
        }
        if min(share, 1 - share) > cfg.min_side_fraction:
            break
    if plan is None:
        raise last_error  # type: ignore[misc]
    plan["coordinates"] = str(cfg.coordinates[int(rng.integers(len(cfg.coordinates)))])
    plan["mapping"] = draw_texture_mapping(rng, cfg.location_max, cfg.log10_scale)
    return plan


def material_count(rng: np.random.Generator, cfg) -> int:
    """Number of regions: uniform in [count_min, count_max] with probability p_random_count, else count_min."""
    if rng.random() < cfg.p_random_count:
        return int(rng.integers(cfg.count_min, cfg.count_max + 1))
    return cfg.count_min


def split_tree(n: int, first_leaf: int = 0) -> dict:
    """Shape of the mix tree for ``n`` leaves numbered from ``first_leaf``: a leaf
    ``{"leaf": i}`` or a split ``{"children": [first, second]}`` with floor(n/2) / ceil(n/2) leaves."""
    if n < 1:
        raise ValueError(f"a tree needs >= 1 leaf, got {n}")
    if n == 1:
        return {"leaf": first_leaf}
    left = n // 2
    return {"children": [split_tree(left, first_leaf), split_tree(n - left, first_leaf + left)]}


def draw_material_plan(rng: np.random.Generator, materials_cfg, splits_cfg, pbrs: list[dict], photos) -> dict:
    """Everything random about the main object's multi-material: leaves, tree and splits.

    Returns ``{"coordinates", "leaves": [...], "tree": {...}}``; every split node of the tree
    carries its :func:`draw_split` plan under ``"split"``, numbered by ``"id"`` (0, 1, ...).
    """
    n = material_count(rng, materials_cfg)
    coordinates = draw_coordinates(rng, materials_cfg)
    leaves = [draw_leaf(rng, materials_cfg, pbrs) for _ in range(n)]
    tree = split_tree(n)

    def fill(node: dict) -> None:
        if "children" in node:
            node["split"] = {"id": fill.count, **draw_split(rng, splits_cfg, photos)}
            fill.count += 1
            for child in node["children"]:
                fill(child)

    fill.count = 0
    fill(tree)
    return {"coordinates": coordinates, "leaves": leaves, "tree": tree}


def leaf_weight_paths(tree: dict) -> dict[int, list[tuple[dict, int]]]:
    """Leaf -> list of ``(split plan, branch)`` from the root; branch 0 takes ``1 - f``, 1 takes ``f``."""
    paths: dict[int, list] = {}

    def walk(node: dict, path: list) -> None:
        if "leaf" in node:
            paths[node["leaf"]] = path
            return
        for branch, child in enumerate(node["children"]):
            walk(child, [*path, (node["split"], branch)])

    walk(tree, [])
    return paths


def leaf_weights(tree: dict, factors: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Leaf weights from the split factors (split ``id`` -> factor array): the product along each
    branch. The shader computes exactly this with Math nodes; this NumPy twin documents and tests it."""
    out = {}
    for leaf, path in leaf_weight_paths(tree).items():
        w = 1.0
        for split, branch in path:
            f = factors[split["id"]]
            w = w * (f if branch == 1 else 1.0 - f)
        out[leaf] = w
    return out


# ----------------------------------------------------------------------------- Blender nodes


class _Nodes:
    """Small helper around a material node tree: creation, linking and auto-layout columns."""

    def __init__(self, tree):
        self.tree = tree
        self.nodes = tree.nodes
        self.links = tree.links
        self._column: dict[int, int] = {}

    def new(self, kind: str, depth: int = 0, **props):
        node = self.nodes.new(kind)
        row = self._column.get(depth, 0)
        self._column[depth] = row + 1
        node.location = (-250.0 * depth, -180.0 * row)
        for key, value in props.items():
            setattr(node, key, value)
        return node

    def link(self, out_socket, in_socket) -> None:
        self.links.new(out_socket, in_socket)

    def math(self, op: str, a, b, depth: int = 0):
        """Math node ``a op b``; operands are sockets or numbers."""
        node = self.new("ShaderNodeMath", depth, operation=op)
        for i, value in enumerate((a, b)):
            if isinstance(value, (int, float)):
                node.inputs[i].default_value = float(value)
            else:
                self.link(value, node.inputs[i])
        return node.outputs[0]


_COORD_OUTPUT = {"camera": "Camera", "object": "Object", "uv": "UV", "generated": "Generated"}


def _mapped_vector(nodes: _Nodes, coords: str, mapping: dict, depth: int):
    tc = nodes.new("ShaderNodeTexCoord", depth + 2)
    mp = nodes.new("ShaderNodeMapping", depth + 1)
    nodes.link(tc.outputs[_COORD_OUTPUT[coords]], mp.inputs["Vector"])
    mp.inputs["Location"].default_value = mapping["location"]
    mp.inputs["Rotation"].default_value = mapping["rotation"]
    mp.inputs["Scale"].default_value = mapping["scale"]
    return mp.outputs["Vector"]


def _image_node(nodes: _Nodes, image, vector, box_blend: float | None, depth: int):
    """Image Texture node; ``box_blend`` None = flat projection, else box projection with that blend."""
    tex = nodes.new("ShaderNodeTexImage", depth, image=image, interpolation="Linear", extension="REPEAT")
    if box_blend is not None:
        tex.projection = "BOX"
        tex.projection_blend = box_blend
    nodes.link(vector, tex.inputs["Vector"])
    return tex


def _principled(nodes: _Nodes, values: dict, depth: int):
    bsdf = nodes.new("ShaderNodeBsdfPrincipled", depth)
    for name, value in values.items():
        socket = bsdf.inputs.get(name)
        if socket is not None and not isinstance(value, str):
            socket.default_value = value
    return bsdf


# Blender socket fed by each scalar PBR property (the colour and normal maps are wired apart).
_PBR_SOCKETS = {"roughness": "Roughness", "metallic": "Metallic", "specular": "Specular IOR Level", "opacity": "Alpha"}


class PbrLibrary:
    """PBR maps for the scenes of one worker process: decoded with the shared reader
    (:func:`matseg.materials.pbr.read_pbr`, so gloss, DirectX normals, packed ARM maps and
    16-bit files are already converted) and kept in a small LRU cache, then turned into
    Blender images once per scene."""

    def __init__(self, max_side: int = 1024, capacity: int = 16):
        from collections import OrderedDict

        self.max_side = max_side
        self.capacity = capacity
        self._maps: OrderedDict = OrderedDict()

    def __getstate__(self):  # the cache stays in its process
        return {"max_side": self.max_side, "capacity": self.capacity, "_maps": type(self._maps)()}

    def maps(self, folder: str) -> dict[str, np.ndarray]:
        """8-bit maps of ``folder`` by property (raises ImageReadError naming the folder)."""
        from matseg.materials.pbr import PBRReadError, read_pbr

        if folder in self._maps:
            self._maps.move_to_end(folder)
            return self._maps[folder]
        try:
            maps = read_pbr(folder, max_side=self.max_side).maps
        except PBRReadError as exc:
            raise ImageReadError(str(exc)) from None
        self._maps[folder] = maps
        while len(self._maps) > self.capacity:
            self._maps.popitem(last=False)
        return maps

    def blender_images(self, folder: str, scene_images: dict) -> dict:
        """``property -> bpy Image`` of ``folder``, made once per scene (``scene_images`` is the
        per-scene memo); the colour map is sRGB, every other map Non-Color."""
        from matseg.synth3d.blender import image_from_array

        if folder not in scene_images:
            name = Path(folder).name
            scene_images[folder] = {prop: image_from_array(f"{name}:{prop}", arr, non_color=prop != "color")
                                    for prop, arr in self.maps(folder).items() if prop != "ao"}  # fmt: skip
        return scene_images[folder]


def add_leaf_shader(nodes: _Nodes, leaf: dict, coords: str, box_blend: float, pbr_images=None, depth: int = 1):
    """Nodes of one material; returns ``(shader socket, height socket or None, alpha)``.

    ``alpha`` is what drives the Principled BSDF's Alpha: the opacity map's socket, or a
    number (1.0 when the material is opaque). ``pbr_images(folder) -> {property: bpy Image}``
    supplies the maps of a PBR leaf.
    """
    if leaf["mode"] == "bsdf":
        return _principled(nodes, leaf["data"], depth).outputs["BSDF"], None, float(leaf["data"].get("Alpha", 1.0))
    images = pbr_images(leaf["id"])
    vector = _mapped_vector(nodes, coords, leaf["mapping"], depth + 1)
    bsdf = _principled(nodes, {}, depth)
    # 3D coordinates get box projection, so no face sees a stretched projection (as the reference).
    blend = None if coords == "uv" else box_blend

    def tex(prop: str):
        return _image_node(nodes, images[prop], vector, blend, depth + 1).outputs["Color"]

    nodes.link(tex("color"), bsdf.inputs["Base Color"])
    scalars = {prop: tex(prop) for prop in _PBR_SOCKETS if prop in images}
    for prop, value in scalars.items():
        nodes.link(value, bsdf.inputs[_PBR_SOCKETS[prop]])
    if "normal" in images:
        normal_map = nodes.new("ShaderNodeNormalMap", depth + 1, space="TANGENT")
        normal_map.inputs["Strength"].default_value = 1.0
        nodes.link(tex("normal"), normal_map.inputs["Color"])
        nodes.link(normal_map.outputs["Normal"], bsdf.inputs["Normal"])
    return bsdf.outputs["BSDF"], (tex("height") if "height" in images else None), scalars.get("opacity", 1.0)


def _split_factor(nodes: _Nodes, split: dict, image, depth: int):
    vector = _mapped_vector(nodes, split["coordinates"], split["mapping"], depth + 2)
    tex = _image_node(nodes, image, vector, None, depth + 2)  # flat, as the reference
    sep = nodes.new("ShaderNodeSeparateColor", depth + 1, mode=split["mode"])
    nodes.link(tex.outputs["Color"], sep.inputs["Color"])
    value = sep.outputs[split["channel"]]
    if split["hard"]:
        return nodes.math("GREATER_THAN", value, split["high"], depth)
    mr = nodes.new("ShaderNodeMapRange", depth, data_type="FLOAT", interpolation_type="LINEAR", clamp=True)
    nodes.link(value, mr.inputs["Value"])
    mr.inputs["From Min"].default_value = split["low"]
    mr.inputs["From Max"].default_value = split["high"]
    mr.inputs["To Min"].default_value = 0.0
    mr.inputs["To Max"].default_value = 1.0
    return mr.outputs["Result"]


def _finish(nodes: _Nodes, material, shader, heights: list, weights: list, cfg, displacement: str | None = None) -> None:
    """Material output; the height maps (weighted like the shaders) drive its displacement,
    applied as ``displacement`` (default ``cfg.displacement``): bump, displacement or both."""
    out = nodes.new("ShaderNodeOutputMaterial", -1, target="ALL")
    nodes.link(shader, out.inputs["Surface"])
    material.displacement_method = {"bump": "BUMP", "displacement": "DISPLACEMENT", "both": "BOTH"}[displacement or cfg.displacement]
    terms = [(h, w) for h, w in zip(heights, weights) if h is not None]
    if not terms:
        return
    if material.displacement_method != "BUMP":
        # Heights are in [0, 1] with midlevel 0, so no vertex moves farther than the scale; Cycles
        # needs this bound to know where displaced geometry can be (adaptive dicing, culling).
        material.max_vertex_displacement = abs(cfg.height_scale)
    total = None
    for h, w in terms:
        term = h if w is None else nodes.math("MULTIPLY", h, w, 1)
        total = term if total is None else nodes.math("ADD", total, term, 1)
    disp = nodes.new("ShaderNodeDisplacement", 0, space="OBJECT")
    disp.inputs["Midlevel"].default_value = 0.0
    disp.inputs["Scale"].default_value = cfg.height_scale
    nodes.link(total, disp.inputs["Height"])
    nodes.link(disp.outputs["Displacement"], out.inputs["Displacement"])


def build_material(name: str, plan: dict, photo_images: dict, cfg, aov_prefix: str | None = None, pbr_images=None):
    """The multi-material of :func:`draw_material_plan` as a Blender material.

    Args:
        photo_images: ``photo_index -> bpy Image`` for the split photos.
        cfg: :class:`~matseg.synth3d.config.MaterialsConfig` (displacement settings, box blend).
        pbr_images: ``folder -> {property: bpy Image}`` for PBR leaves (:meth:`PbrLibrary.blender_images`).
        aov_prefix: if set, leaf ``i`` writes its weight times its alpha to the Shader AOV
            ``f"{aov_prefix}{i + 1:03d}"`` and the material writes the sum of those (its
            opacity; 1.0 when every leaf is opaque) to ``f"{aov_prefix}roi"``.

    Returns the material.
    """
    from matseg.synth3d.blender import require_bpy

    bpy = require_bpy()
    material = bpy.data.materials.new(name)
    nodes = _Nodes(material.node_tree)
    nodes.nodes.clear()
    leaves = plan["leaves"]
    weights: list = [None] * len(leaves)
    heights: list = [None] * len(leaves)
    alphas: list = [1.0] * len(leaves)

    def build(node: dict, weight, depth: int):
        """Shader socket of a subtree; ``weight`` = product of the factors above it (None = 1)."""
        if "leaf" in node:
            i = node["leaf"]
            shader, heights[i], alphas[i] = add_leaf_shader(nodes, leaves[i], plan["coordinates"], cfg.box_blend, pbr_images, depth + 1)
            weights[i] = weight
            return shader
        split = node["split"]
        fac = _split_factor(nodes, split, photo_images[split["photo_index"]], depth + 1)
        inverse = nodes.math("SUBTRACT", 1.0, fac, depth)
        branch_weights = [inverse, fac] if weight is None else [nodes.math("MULTIPLY", weight, inverse, depth),
                                                                nodes.math("MULTIPLY", weight, fac, depth)]  # fmt: skip
        mix = nodes.new("ShaderNodeMixShader", depth)
        nodes.link(fac, mix.inputs["Fac"])
        for k, child in enumerate(node["children"]):
            nodes.link(build(child, branch_weights[k], depth + 3), mix.inputs[1 + k])
        return mix.outputs["Shader"]

    shader = build(plan["tree"], None, 0)
    _finish(nodes, material, shader, heights, weights, cfg)
    if aov_prefix is not None:
        # What the camera sees of leaf i at a hit is its weight times its alpha (the rest of
        # the Principled BSDF is a Transparent BSDF): the AOVs carry that, and the ROI their sum
        # (= 1 - transparency). See annotation.setup_outputs for what lies behind.
        seen = [_times(nodes, w, a) for w, a in zip(weights, alphas)]
        for i, value in enumerate(seen):
            _aov(nodes, f"{aov_prefix}{i + 1:03d}", value)
        opaque = all(isinstance(a, float) and a == 1.0 for a in alphas)
        _aov(nodes, f"{aov_prefix}roi", 1.0 if opaque else functools.reduce(lambda a, b: nodes.math("ADD", a, b, -1), seen))
    return material


def _times(nodes: _Nodes, a, b):
    """``a * b`` for factors that are sockets, numbers or None (= 1); no node for a factor of 1."""
    a = 1.0 if a is None else a
    b = 1.0 if b is None else b
    if isinstance(a, float) and isinstance(b, float):
        return a * b
    if isinstance(a, float) and a == 1.0:
        return b
    if isinstance(b, float) and b == 1.0:
        return a
    return nodes.math("MULTIPLY", a, b, -1)


def _aov(nodes: _Nodes, name: str, value) -> None:
    """A Shader AOV output writing ``value`` (a socket or a number)."""
    aov = nodes.new("ShaderNodeOutputAOV", -1, aov_name=name)
    if isinstance(value, float):
        aov.inputs["Value"].default_value = value
    else:
        nodes.link(value, aov.inputs["Value"])


def build_leaf_material(name: str, leaf: dict, coords: str, cfg, pbr_images=None, displacement: str | None = None):
    """A single-region material (ground plane, distractors); ``displacement`` overrides
    ``cfg.displacement`` (bump, displacement, both)."""
    from matseg.synth3d.blender import require_bpy

    bpy = require_bpy()
    material = bpy.data.materials.new(name)
    nodes = _Nodes(material.node_tree)
    nodes.nodes.clear()
    shader, height, _alpha = add_leaf_shader(nodes, leaf, coords, cfg.box_blend, pbr_images)
    _finish(nodes, material, shader, [height], [None], cfg, displacement)
    return material


def displaces_geometry(material) -> bool:
    """True when Cycles moves the surface of ``material`` (a height input and a displacement
    method other than bump); such a surface needs vertices to move."""
    has_height = any(node.bl_idname == "ShaderNodeDisplacement" for node in material.node_tree.nodes)
    return has_height and material.displacement_method != "BUMP"
