"""Shaded previews of PBR materials: a lit sphere rendered from the maps, on the CPU.

An orthographic unit sphere seen along -Z; the visible hemisphere is mapped once onto the
texture (longitude -> u, latitude -> v, texture row 0 at the top). Each pixel looks up its
texels (nearest, from maps shrunk to about the sphere's size), perturbs the sphere normal with
the OpenGL tangent-space normal map (tangent = +u, bitangent = +v = up), and is shaded with
GGX / Cook-Torrance (Smith-Schlick geometry, Schlick Fresnel) under two directional lights plus
a constant ambient term scaled by the AO map. ``F0 = lerp(0.08 * specular, base colour,
metallic)`` (specular 0.5 -> 0.04, Blender's convention); opacity blends over a checkerboard.
A 128-px sphere takes a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from matseg.materials.pbr import DEFAULT_VALUES, FLAT_NORMAL, resize_map

__all__ = ["Light", "DEFAULT_LIGHTS", "render_sphere", "map_thumbnail"]


@dataclass(frozen=True)
class Light:
    """A directional light: ``direction`` towards the light (x right, y up, z to the viewer), RGB intensity."""

    direction: tuple[float, float, float]
    intensity: tuple[float, float, float]


#: Key light from the upper left, weaker cool fill from the right.
DEFAULT_LIGHTS = (
    Light((-0.5, 0.6, 0.75), (3.0, 2.9, 2.8)),
    Light((0.8, -0.1, 0.45), (0.6, 0.7, 0.8)),
)
AMBIENT = 0.18
BACKGROUND = 48


@dataclass(frozen=True)
class _Sphere:
    inside: np.ndarray  # (S, S) bool
    coverage: np.ndarray  # (S, S) float32 anti-aliased silhouette
    normal: np.ndarray  # (P, 3) sphere normals of the inside pixels
    tangent: np.ndarray  # (P, 3) +u
    bitangent: np.ndarray  # (P, 3) +v (up)
    u: np.ndarray  # (P,) in [0, 1)
    v: np.ndarray  # (P,) in [0, 1), 0 = top row


@lru_cache(maxsize=8)
def _sphere(size: int) -> _Sphere:
    c = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    x, y = np.meshgrid(c, -c)  # y up
    r2 = x * x + y * y
    coverage = np.clip((1.0 - np.sqrt(r2)) * size / 2.0 + 0.5, 0.0, 1.0).astype(np.float32)
    inside = r2 < 1.0
    x, y = x[inside], y[inside]
    z = np.sqrt(np.maximum(0.0, 1.0 - x * x - y * y))
    n = np.stack([x, y, z], axis=1)
    ring = np.sqrt(x * x + z * z)
    safe = np.maximum(ring, 1e-6)
    tangent = np.stack([z / safe, np.zeros_like(x), -x / safe], axis=1)  # d/d(longitude)
    bitangent = np.cross(n, tangent)  # d/d(latitude), points up
    u = np.arctan2(x, z) / np.pi * 0.5 + 0.5
    v = 0.5 - np.arcsin(np.clip(y, -1.0, 1.0)) / np.pi
    return _Sphere(inside, coverage, n, tangent.astype(np.float32), bitangent.astype(np.float32),
                   u.astype(np.float32), v.astype(np.float32))  # fmt: skip


def _lookup(image: np.ndarray, sphere: _Sphere, tex: int) -> np.ndarray:
    """Nearest texel of each inside pixel from ``image`` shrunk to ``tex x tex``: ``(P,)`` or ``(P, C)``."""
    small = resize_map(image, tex, tex)
    col = np.minimum((sphere.u * tex).astype(np.int32), tex - 1)
    row = np.minimum((sphere.v * tex).astype(np.int32), tex - 1)
    return small[row, col]


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.power(c, 2.2, dtype=np.float32)


def render_sphere(maps: dict[str, np.ndarray], size: int = 128, lights: tuple[Light, ...] = DEFAULT_LIGHTS) -> np.ndarray:
    """Render a material as a lit sphere.

    Args:
        maps: ``"color"`` ``(H, W, 3)`` uint8 sRGB (required); optional ``"normal"`` ``(H, W, 3)``
            uint8 OpenGL, ``"roughness"``, ``"metallic"``, ``"ao"``, ``"specular"``,
            ``"opacity"`` ``(H, W)`` uint8 (missing ones take their defaults; height is not used).
        size: output side in pixels (>= 8).
        lights: directional lights.

    Returns:
        ``(size, size, 3)`` uint8 RGB: the sphere on a dark grey background. Deterministic.
    """
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    color = maps.get("color")
    if not isinstance(color, np.ndarray) or color.dtype != np.uint8 or color.ndim != 3 or color.shape[2] != 3:
        got = f"{color.dtype} {color.shape}" if isinstance(color, np.ndarray) else repr(type(color).__name__)
        raise ValueError(f"maps['color'] must be an (H, W, 3) uint8 array, got {got}")
    sph = _sphere(size)
    tex = min(max(color.shape[:2]), 2 * size)
    albedo = _srgb_to_linear(_lookup(color, sph, tex).astype(np.float32) / 255.0)

    def scalar(name: str) -> np.ndarray:
        if name in maps:
            return _lookup(maps[name], sph, tex).astype(np.float32) / 255.0
        return np.full(len(sph.u), DEFAULT_VALUES[name] / 255.0, np.float32)

    rough, metal, ao, spec, opacity = (scalar(k) for k in ("roughness", "metallic", "ao", "specular", "opacity"))
    t = _lookup(maps["normal"], sph, tex) if "normal" in maps else np.array(FLAT_NORMAL, np.uint8)
    t = t.astype(np.float32) * (2.0 / 255.0) - 1.0
    t = np.broadcast_to(t, sph.normal.shape)
    n = t[:, :1] * sph.tangent + t[:, 1:2] * sph.bitangent + t[:, 2:3] * sph.normal
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-6)

    alpha = np.maximum(rough * rough, 2e-3)[:, None]
    k = ((rough + 1.0) ** 2 / 8.0)[:, None]
    f0 = 0.08 * spec[:, None] * (1.0 - metal[:, None]) + albedo * metal[:, None]
    n_v = np.clip(n[:, 2:3], 1e-4, 1.0)  # view direction (0, 0, 1)
    g_v = n_v / (n_v * (1.0 - k) + k)
    radiance = np.zeros_like(albedo)
    for light in lights:
        ldir = np.asarray(light.direction, np.float32)
        ldir = ldir / np.linalg.norm(ldir)
        half = ldir + np.array([0.0, 0.0, 1.0], np.float32)
        half /= np.linalg.norm(half)
        n_l = np.clip(n @ ldir, 0.0, 1.0)[:, None]
        n_h = np.clip(n @ half, 0.0, 1.0)[:, None]
        v_h = float(np.clip(half[2], 0.0, 1.0))
        d = alpha * alpha / (np.pi * (n_h * n_h * (alpha * alpha - 1.0) + 1.0) ** 2)
        g = g_v * n_l / (n_l * (1.0 - k) + k)
        fresnel = f0 + (1.0 - f0) * (1.0 - v_h) ** 5
        specular = d * g * fresnel / (4.0 * n_l * n_v + 1e-4)
        diffuse = (1.0 - fresnel) * (1.0 - metal[:, None]) * albedo / np.pi
        radiance += (diffuse + specular) * n_l * np.asarray(light.intensity, np.float32)
    ambient = AMBIENT * ao[:, None] * (albedo * (1.0 - metal[:, None]) + f0)
    radiance += ambient
    shaded = np.power(radiance / (1.0 + radiance), 1.0 / 2.2) * 255.0  # Reinhard, then sRGB-ish gamma

    bg = _background(size)
    out = bg.copy()
    # Opacity blends over the checkerboard; the silhouette is anti-aliased by coverage.
    over = opacity[:, None] * shaded + (1.0 - opacity[:, None]) * bg[sph.inside]
    out[sph.inside] = over
    cov = sph.coverage[:, :, None]
    result = cov * out + (1.0 - cov) * bg
    return np.clip(np.rint(result), 0, 255).astype(np.uint8)


@lru_cache(maxsize=8)
def _background(size: int) -> np.ndarray:
    """Dark grey with a faint checkerboard (so opacity is visible), ``(size, size, 3)`` float32."""
    cell = max(4, size // 8)
    yy, xx = np.indices((size, size))
    checker = ((yy // cell + xx // cell) % 2).astype(np.float32)
    bg = BACKGROUND + 16.0 * checker
    out = np.repeat(bg[:, :, None], 3, axis=2)
    out.setflags(write=False)
    return out


def map_thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """A ``(size, size, 3)`` uint8 RGB thumbnail of a colour, normal or scalar map (area averaging)."""
    small = resize_map(image, size, size)
    return np.repeat(small[:, :, None], 3, axis=2) if small.ndim == 2 else np.ascontiguousarray(small)


