"""Exact soft annotation from the RGB render itself: Shader AOVs, read back through OpenEXR files.

The main object's material writes, at every camera-ray hit, each material's weight (the
product of the Mix Shader factors along its branch) to the AOV ``matseg_wNNN`` and 1.0 to
``matseg_roi``. Cycles accumulates AOVs like the RGB: same samples, same pixel filter, so a
pixel's AOV value is the sample-average of the weight at the surface seen there, and ``roi`` is
the main object's visible coverage (0 where another object, the ground or the sky is seen, a
fraction on anti-aliased borders). No second render, no EEVEE, no emission trick.

The compositor writes the RGB (8-bit PNG through the view transform) and each AOV (32-bit float
OpenEXR, linear) next to each other; :func:`read_passes` loads them into arrays in the same
top-down pixel grid.

Transparency (opacity maps, the Principled BSDF's Alpha) is annotated as the camera sees it.
At each hit the material writes every leaf's weight times its alpha, and the ROI their sum, so
a cut-out texel writes 0 and a half-transparent one half its weight. Cycles writes AOVs at
every surface of a camera ray until one whose alpha reaches the view layer's alpha threshold;
with the threshold at 1 the ray goes on writing through every partly transparent surface, so
whatever is seen through a hole or a veil is annotated too (0 for the ground, the sky or a
distractor; its own weights for a part of the main object). AOVs are not weighted by the path
throughput: a surface behind a partly transparent one (0 < alpha < 1) is counted with the
probability that Cycles' closure sampling passes the ray through, which is close to
``1 - alpha`` but not equal (it depends on the colours of the front surface), so only there
the annotation is approximate. Cut-outs (alpha 0 or 1) and a single veil over anything that is
not the main object are exact.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

AOV_PREFIX = "matseg_"
RGB_FILE_STEM = "rgb_"
PASS_FILE_STEM = "pass_"


def aov_names(num_materials: int) -> list[str]:
    """AOV names: ``matseg_001 ... matseg_NNN`` (material weights) then ``matseg_roi``."""
    return [f"{AOV_PREFIX}{i + 1:03d}" for i in range(num_materials)] + [f"{AOV_PREFIX}roi"]


@dataclass
class PassFiles:
    """Where the compositor writes one render's outputs."""

    rgb: Path
    aovs: dict[str, Path]


def setup_outputs(scene, folder: str | os.PathLike, num_materials: int, annotate: bool = True) -> PassFiles:
    """Register the view-layer AOVs and build the compositor that writes RGB + AOV files.

    Args:
        scene: the Blender scene.
        folder: where the files go (a per-render temporary folder).
        num_materials: number of weight AOVs.
        annotate: False builds the RGB output only (used to measure the annotation's cost).
    """
    from matseg.synth3d.blender import require_bpy

    bpy = require_bpy()
    folder = Path(folder)
    view_layer = scene.view_layers[0]
    for aov in list(view_layer.aovs):
        view_layer.aovs.remove(aov)
    names = aov_names(num_materials) if annotate else []
    for name in names:
        aov = view_layer.aovs.add()
        aov.name = name
        aov.type = "VALUE"
    # Only a fully opaque surface ends AOV writing: see the module docstring.
    view_layer.pass_alpha_threshold = 1.0
    view_layer.use_pass_combined = True

    old = scene.compositing_node_group
    if old is not None:
        bpy.data.node_groups.remove(old)
    tree = bpy.data.node_groups.new("MatSegCompositor", "CompositorNodeTree")
    scene.compositing_node_group = tree
    scene.render.use_compositing = True
    layers = tree.nodes.new("CompositorNodeRLayers")
    layers.scene = scene

    # RGB: 8-bit PNG through the scene's view transform (Standard by default), no compression.
    rgb_out = _file_output(tree, folder, RGB_FILE_STEM, "PNG", "RGB", "8", save_as_render=True)
    rgb_out.format.compression = 0
    rgb_out.file_output_items.new("RGBA", "Image")
    tree.links.new(layers.outputs["Image"], rgb_out.inputs["Image"])
    files = PassFiles(rgb=folder / f"{RGB_FILE_STEM}Image.png", aovs={})
    if names:
        # AOVs: linear 32-bit float, one uncompressed single-channel EXR each.
        aov_out = _file_output(tree, folder, PASS_FILE_STEM, "OPEN_EXR", "BW", "32", save_as_render=False)
        aov_out.format.exr_codec = "NONE"
        for name in names:
            aov_out.file_output_items.new("FLOAT", name)
            tree.links.new(layers.outputs[name], aov_out.inputs[name])
            files.aovs[name] = folder / f"{PASS_FILE_STEM}{name}.exr"
    return files


def _file_output(tree, folder: Path, stem: str, file_format: str, color_mode: str, depth: str, save_as_render: bool):
    """A compositor File Output node writing ``<folder>/<stem><input name>.<ext>``."""
    node = tree.nodes.new("CompositorNodeOutputFile")
    node.directory = str(folder)
    node.file_name = stem
    node.format.media_type = "IMAGE"
    node.format.file_format = file_format
    node.format.color_mode = color_mode
    node.format.color_depth = depth
    node.save_as_render = save_as_render
    return node


def read_passes(files: PassFiles) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(rgb (H, W, 3) uint8, {aov name: (H, W) float32})``, all top row first."""
    from matseg.io.images import read_image_rgb
    from matseg.synth3d.blender import BlenderError, load_float_image

    for path in [files.rgb, *files.aovs.values()]:
        if not path.is_file():
            raise BlenderError(f"the render did not write {path.name} (compositor output missing)")
    rgb = read_image_rgb(files.rgb)
    passes = {}
    for name, path in files.aovs.items():
        values = load_float_image(path)
        passes[name] = np.ascontiguousarray(values[:, :, 0])
        if passes[name].shape != rgb.shape[:2]:
            raise BlenderError(f"{path.name}: size {passes[name].shape} differs from the RGB {rgb.shape[:2]}")
    return rgb, passes


def weights_from_aovs(raw_weights: np.ndarray, raw_roi: np.ndarray, eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray, dict]:
    """Per-material weights and ROI in the MatSeg format from the AOV passes.

    Args:
        raw_weights: ``(M, H, W)`` float, the material-weight AOVs.
        raw_roi: ``(H, W)`` float, the coverage AOV.

    Returns:
        ``(weights, roi, stats)``: ``weights`` ``(M, H, W)`` float32 in [0, 1] summing to
        ``roi`` ``(H, W)`` float32 in [0, 1] at every pixel.

    At each hit on the main object the weight AOVs sum to the ROI AOV (both are scaled by the
    surface's alpha), so per pixel ``sum(weights) == roi`` up to float rounding. The ROI is
    clipped to [0, 1] (it can exceed 1 where the main object is seen through a partly
    transparent part of itself, see the module docstring) and the weights are rescaled by
    ``roi / sum(weights)`` wherever the sum exceeds ``eps``, which makes the identity exact
    (what :func:`~matseg.io.dataset.write_sample` requires) and keeps the weights' proportions;
    elsewhere the rescale changes no value by more than the rounding. Where the sum is
    ``<= eps`` both are set to 0. ``stats`` reports the largest deviation of the sum from the
    ROI AOV before the rescale (``max_sum_error``) and the ROI mass dropped for lack of weights
    (``roi_without_weight``), so a broken shader is visible in ``meta.json``.
    """
    w = np.maximum(np.asarray(raw_weights, np.float32), 0.0)
    raw_roi = np.maximum(np.asarray(raw_roi, np.float32), 0.0)
    if w.ndim != 3 or w.shape[1:] != raw_roi.shape:
        raise ValueError(f"raw_weights must be (M, H, W) matching raw_roi {raw_roi.shape}, got {w.shape}")
    total = w.sum(axis=0)
    has = total > eps
    error = float(np.abs(total - raw_roi).max()) if total.size else 0.0
    roi = np.minimum(raw_roi, 1.0)
    dropped = float(roi[~has].sum())
    scale = np.where(has, roi / np.where(has, total, 1.0), 0.0).astype(np.float32)
    weights = w * scale[None]
    roi = np.where(has, roi, 0.0).astype(np.float32)
    stats = {"max_sum_error": round(error, 7), "roi_without_weight": round(dropped, 4)}
    return weights.astype(np.float32), roi, stats
