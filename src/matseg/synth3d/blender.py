"""Blender as a Python module: the one guarded import, scene reset, render settings, read-back.

``bpy`` is imported only by :func:`require_bpy`; every other module of :mod:`matseg.synth3d`
calls it inside the functions that touch Blender, so importing the subpackage (its config and
CLI) works without Blender installed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

INSTALL_HINT = "pip install 'matseg[synth3d]' on Python 3.11 (Blender's bpy 5.0.1 wheel needs Python 3.11 and numpy<2)"


class BlenderError(RuntimeError):
    """Blender refused an operation (import, render); the message carries Blender's own words."""


def _blender_script_path(entry: str) -> bool:
    parts = Path(entry).parts
    return "scripts" in parts and "bpy" in parts or (".config" in parts and "blender" in parts)


def require_bpy():
    """Import and return ``bpy``; raise ImportError saying how to install it when it is missing."""
    if "bpy" in sys.modules:
        return sys.modules["bpy"]
    # Importing bpy puts Blender's script folders on sys.path, and a spawned worker process
    # inherits that sys.path: there the package bpy/<ver>/scripts/modules/bpy would shadow the
    # real module (and fail with "No module named '_bpy'"). Blender adds them back itself.
    sys.path[:] = [p for p in sys.path if not _blender_script_path(p)]
    try:
        import bpy  # noqa: PLC0415 - the single place matseg imports Blender
    except ImportError as exc:
        raise ImportError(f"bpy not installed: {INSTALL_HINT} ({exc})") from None
    return bpy


def bpy_available() -> bool:
    """True when ``bpy`` can be imported (does not import it)."""
    import importlib.util

    return importlib.util.find_spec("bpy") is not None


def blender_version() -> str:
    return require_bpy().app.version_string


@contextlib.contextmanager
def quiet_output(log_path: str | os.PathLike | None = None):
    """Send what Blender prints to C-level stdout/stderr into a log file while the block runs.

    Blender reports progress ("Fra:1 Mem:...", "Saved: ...") on the process's file descriptors,
    which would tear the progress bar of a batch. The log (default: a temporary file) is kept
    so that an error can quote it; see :func:`log_tail`.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    fd, path = (os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), str(log_path)) if log_path else tempfile.mkstemp(prefix="matseg-blender-", suffix=".log")
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield path
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        _flush_c_stdio()  # Blender's own buffered printf output belongs in the log too
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (*saved, fd):
            os.close(f)
        if not log_path:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _flush_c_stdio() -> None:
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)


def log_tail(path: str | os.PathLike, lines: int = 3) -> str:
    """The last ``lines`` non-empty lines of a log file, joined with ' | ' ('' if unreadable)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(kept[-lines:])


# Data-block collections emptied between scenes. Order matters little: batch_remove unlinks users.
_RESET_COLLECTIONS = (
    "objects", "meshes", "materials", "textures", "images", "lights", "cameras", "worlds",
    "node_groups", "curves", "collections", "actions",
)  # fmt: skip


def reset_scene():
    """Remove every object and data-block a previous scene made; return the (single) scene.

    A worker renders many scenes in one Blender session; starting each from the same empty
    state makes a scene's pixels independent of what the worker rendered before.
    """
    bpy = require_bpy()
    if bpy.context.object is not None and bpy.context.object.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    doomed = []
    for name in _RESET_COLLECTIONS:
        coll = getattr(bpy.data, name, None)
        if coll is not None:
            doomed.extend(coll)
    if doomed:
        bpy.data.batch_remove(doomed)
    bpy.data.orphans_purge(do_local_ids=True, do_linked_ids=True, do_recursive=True)
    scene = bpy.context.scene
    for aov in list(scene.view_layers[0].aovs):
        scene.view_layers[0].aovs.remove(aov)
    return scene


def available_gpu_devices(backends: tuple[str, ...] = ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")) -> tuple[str | None, list[str]]:
    """``(backend, device names)`` of the first Cycles GPU backend with a device, else ``(None, [])``."""
    bpy = require_bpy()
    prefs = bpy.context.preferences.addons["cycles"].preferences
    for backend in backends:
        try:
            prefs.compute_device_type = backend
        except TypeError:  # backend not compiled into this build
            continue
        prefs.refresh_devices()
        devices = [d for d in prefs.devices if d.type == backend]
        if devices:
            for d in prefs.devices:
                d.use = d.type == backend
            return backend, [d.name for d in devices]
    prefs.compute_device_type = "NONE"
    return None, []


def configure_render(scene, cfg, seed: int, threads: int) -> dict:
    """Apply the render settings of ``cfg`` (a :class:`~matseg.synth3d.config.RenderConfig`).

    Returns the settings as recorded in ``meta.json`` (device actually used included; not the
    thread count, which changes no pixel and is recorded with the timing).
    Raises :class:`BlenderError` when ``device == "gpu"`` and no GPU is found.
    """
    # Quiet: the first device query makes Cycles log its GPU-library probes ("CUEW initialization failed").
    with quiet_output():
        return _configure_render(scene, cfg, seed, threads)


def _configure_render(scene, cfg, seed: int, threads: int) -> dict:
    cycles = scene.cycles
    scene.render.engine = "CYCLES"
    device, backend = "CPU", None
    if cfg.device in ("gpu", "auto"):
        backend, names = available_gpu_devices()
        if backend is not None:
            device = "GPU"
        elif cfg.device == "gpu":
            raise BlenderError("render.device=gpu but Cycles found no GPU (OptiX, CUDA, HIP, oneAPI, Metal)")
    cycles.device = device
    scene.render.resolution_x = cfg.width
    scene.render.resolution_y = cfg.height
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    scene.render.film_transparent = False
    scene.render.use_persistent_data = cfg.persistent_data
    scene.render.threads_mode = "FIXED" if threads > 0 else "AUTO"
    if threads > 0:
        scene.render.threads = threads
    # Dither adds noise to 8-bit output; off, so a flat colour stays one value and pixels are reproducible.
    scene.render.dither_intensity = 0.0
    scene.render.filter_size = cfg.pixel_filter_width
    cycles.samples = cfg.samples
    cycles.use_adaptive_sampling = cfg.adaptive_threshold > 0
    if cfg.adaptive_threshold > 0:
        cycles.adaptive_threshold = cfg.adaptive_threshold
    cycles.use_denoising = cfg.denoiser != "none"
    if cfg.denoiser != "none":
        cycles.denoiser = "OPENIMAGEDENOISE" if cfg.denoiser == "oidn" else "OPTIX"
        cycles.denoising_prefilter = cfg.denoise_prefilter.upper()
        cycles.denoising_input_passes = "RGB_ALBEDO_NORMAL"
    cycles.seed = seed % (2**31 - 1)
    cycles.use_animated_seed = False
    cycles.max_bounces = cfg.max_bounces
    cycles.diffuse_bounces = cfg.diffuse_bounces
    cycles.glossy_bounces = cfg.glossy_bounces
    cycles.transmission_bounces = cfg.transmission_bounces
    cycles.transparent_max_bounces = cfg.transparent_bounces
    cycles.volume_bounces = 0
    cycles.caustics_reflective = cycles.caustics_refractive = cfg.caustics
    cycles.blur_glossy = cfg.filter_glossy
    cycles.use_light_tree = True
    scene.view_settings.view_transform = cfg.view_transform
    scene.view_settings.look = cfg.look
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    scene.display_settings.display_device = "sRGB"
    settings = {
        "engine": "CYCLES",
        "device": device,
        "gpu_backend": backend,
        "blender": blender_version(),
        "width": cfg.width,
        "height": cfg.height,
        "samples": cfg.samples,
        "adaptive_threshold": cfg.adaptive_threshold,
        "denoiser": cfg.denoiser,
        "denoise_prefilter": cfg.denoise_prefilter if cfg.denoiser != "none" else None,
        "bounces": {"max": cfg.max_bounces, "diffuse": cfg.diffuse_bounces, "glossy": cfg.glossy_bounces,
                    "transmission": cfg.transmission_bounces, "transparent": cfg.transparent_bounces},  # fmt: skip
        "caustics": cfg.caustics,
        "view_transform": cfg.view_transform,
        "look": cfg.look,
        "pixel_filter_width": cfg.pixel_filter_width,
        "world_map_resolution": cfg.world_map_resolution,
        "persistent_data": cfg.persistent_data,
        "cycles_seed": cycles.seed,
    }
    return settings


def load_float_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file through Blender as float32 ``(H, W, C)``, row 0 = top of the picture.

    Blender stores pixels bottom row first; the flip puts them in the same grid as an image
    read by OpenCV/Pillow. Used for the OpenEXR passes (linear, no colour transform).
    """
    bpy = require_bpy()
    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        width, height = image.size
        channels = image.channels
        if width == 0 or height == 0:
            raise BlenderError(f"{path}: Blender could not read the image")
        buf = np.empty(width * height * channels, np.float32)
        image.pixels.foreach_get(buf)
    finally:
        bpy.data.images.remove(image)
    return np.ascontiguousarray(buf.reshape(height, width, channels)[::-1])


def image_from_array(name: str, rgb: np.ndarray, non_color: bool = True):
    """A Blender image holding ``rgb`` (``(H, W, 3)`` or gray ``(H, W)`` uint8), in memory only (no file).

    ``non_color`` keeps the stored values as they are (no sRGB decoding), so a shader reading
    channel values sees ``value / 255`` exactly like the 2D pattern maps.
    """
    bpy = require_bpy()
    if rgb.ndim == 2:
        rgb = rgb[:, :, None]
    h, w = rgb.shape[:2]
    image = bpy.data.images.new(name, width=w, height=h, alpha=False, float_buffer=False)
    # Colour space first: changing it on a generated image regenerates (blanks) its pixels.
    image.colorspace_settings.name = "Non-Color" if non_color else "sRGB"
    rgba = np.empty((h, w, 4), np.float32)
    rgba[:, :, :3] = rgb[::-1] / np.float32(255.0)
    rgba[:, :, 3] = 1.0
    image.pixels.foreach_set(rgba.ravel())
    return image


def load_image_file(path: str, non_color: bool):
    """Load an image file into Blender (once per scene); raise ImageReadError if Blender cannot."""
    from matseg.io.images import ImageReadError

    bpy = require_bpy()
    try:
        image = bpy.data.images.load(path, check_existing=True)
    except RuntimeError as exc:
        raise ImageReadError(f"{path}: Blender cannot read the image ({' '.join(str(exc).split())})") from None
    if image.size[0] == 0 or image.size[1] == 0:
        raise ImageReadError(f"{path}: Blender cannot decode the image")
    image.colorspace_settings.name = "Non-Color" if non_color else "sRGB"
    return image
