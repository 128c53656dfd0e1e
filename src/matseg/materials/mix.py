"""Mixing PBR materials into new ones (paper appendix F, digest §1.6).

Two or more distinct materials are brought to one size and combined map by map: a weighted
average with one weight per material (``equal``, the same weights for every map), a weight per
material and map (``flexible``), or the pixel-wise maximum (``max``).

Rules (docs/formats.md, docs/deviations.md):
- sources are drawn without replacement (reference: with replacement, so a material could be
  mixed with itself); their count is geometric as in the reference: 2 (p=0.5), 3 (p=0.25), ...;
- common size: the largest source's colour-map size (by pixel count; the first of equal ones),
  shrunk so its longer side is at most ``max_size``; every map is resized to it (area
  averaging when shrinking, bilinear when enlarging). The reference used the first file it read;
- normals are decoded to vectors, mixed and re-normalised (reference: RGB averaged, not
  re-normalised); in ``max`` mode each pixel takes the normal of the source whose height is the
  largest there (the top surface), or the weighted mean when no source has a height map;
- a property that some sources lack is mixed with its default value (:data:`DEFAULT_VALUES`,
  flat normal) standing in for the missing map, so e.g. a dielectric without a metallic map
  dilutes its partner's metallic map; a property no source has stays absent;
- ``AmbientColor`` is not a separate property: the base colour is each source's colour map
  (``OriginColor`` preferred, see :mod:`matseg.materials.pbr`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from matseg.config import check_probabilities, option
from matseg.materials.pbr import PROPERTIES, PBRMaterial, default_map, encode_normal, normal_planes

MIX_MODES = ("equal", "max", "flexible")
# A mixed normal shorter than this (before re-normalisation) is taken as flat (0, 0, 1).
DEGENERATE_LENGTH = 0.05


@dataclass
class MixConfig:
    """How materials are mixed (digest §1.6, appendix F)."""

    p_more_sources: float = option(0.5, "after two sources, probability of adding one more (repeated): 2 sources p=0.5, 3 p=0.25, ...", "§1.6")
    max_sources: int | None = option(None, "most sources per mix; null = no limit but the number of materials", "ours")
    p_equal: float = option(0.28, "probability of mode 'equal': one random weight per material, shared by all maps", "§1.6")
    p_max: float = option(0.27, "probability of mode 'max': pixel-wise maximum (else 'flexible': a random weight per material and map)", "§1.6")
    max_size: int | None = option(2048, "longest side of the mixed maps (the largest source's size, shrunk to this); null = keep", "ours")

    def __post_init__(self):
        check_probabilities(self)
        if self.p_equal + self.p_max > 1.0:
            raise ValueError(f"p_equal + p_max must be <= 1, got {self.p_equal} + {self.p_max}")
        if self.max_sources is not None and self.max_sources < 2:
            raise ValueError(f"max_sources must be >= 2 (or null), got {self.max_sources}")
        if self.p_more_sources >= 1.0 and self.max_sources is None:
            raise ValueError("p_more_sources = 1 needs max_sources (else every mix would take all materials)")
        if self.max_size is not None and self.max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {self.max_size}")


def choose_sources(num_materials: int, rng: np.random.Generator, cfg: MixConfig) -> list[int]:
    """Indices of the materials to mix: distinct, at least 2, geometric count.

    Returns:
        Sorted list of ``k`` distinct indices in ``[0, num_materials)``, ``2 <= k <=
        min(num_materials, cfg.max_sources)``; ``P(k = 2) = 1 - p``, ``P(k = 3) = p (1 - p)``, ...
        (truncated at the limit).

    Raises:
        ValueError: fewer than two materials.
    """
    if num_materials < 2:
        raise ValueError(f"mixing needs at least 2 materials, got {num_materials}")
    limit = num_materials if cfg.max_sources is None else min(num_materials, cfg.max_sources)
    k = 2
    while k < limit and rng.random() < cfg.p_more_sources:
        k += 1
    return sorted(int(i) for i in rng.choice(num_materials, size=k, replace=False))


def choose_mode(rng: np.random.Generator, cfg: MixConfig) -> str:
    """``"equal"`` with p_equal, ``"max"`` with p_max, else ``"flexible"``."""
    r = rng.random()
    if r < cfg.p_equal:
        return "equal"
    return "max" if r < cfg.p_equal + cfg.p_max else "flexible"


def mix_size(sizes: list[tuple[int, int]], max_size: int | None) -> tuple[int, int]:
    """Common ``(H, W)``: the largest of ``sizes`` by pixel count (first on ties), shrunk to ``max_size``."""
    if not sizes:
        raise ValueError("no sizes given")
    h, w = max(sizes, key=lambda s: s[0] * s[1])  # max() keeps the first of equal keys
    if max_size is not None and max(h, w) > max_size:
        s = max_size / max(h, w)
        h, w = max(1, round(h * s)), max(1, round(w * s))
    return h, w


def normalized_weights(raw: np.ndarray) -> np.ndarray:
    """Weights divided by their sum (equal weights if the sum is 0). ``raw``: ``(K,)`` >= 0."""
    raw = np.asarray(raw, np.float64)
    if raw.ndim != 1 or raw.size == 0 or np.any(raw < 0) or not np.all(np.isfinite(raw)):
        raise ValueError(f"weights must be a non-empty 1-D array of finite values >= 0, got {raw!r}")
    total = raw.sum()
    return raw / total if total > 0 else np.full(raw.size, 1.0 / raw.size)


def weighted_average(maps: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """``sum_k w_k * maps[k]`` of uint8 maps of one shape, rounded to uint8 (weights sum to 1)."""
    acc = maps[0].astype(np.float32)
    acc *= np.float32(weights[0])
    for m, w in zip(maps[1:], weights[1:]):
        cv2.scaleAdd(m.astype(np.float32), float(w), acc, dst=acc)  # acc += w * m, in place
    # Weights are >= 0, so acc >= 0: convertScaleAbs is a round-to-nearest, saturating cast.
    return cv2.convertScaleAbs(acc)


def mix_normals(normals: list[np.ndarray], weights: np.ndarray | None = None, heights: list[np.ndarray] | None = None) -> np.ndarray:
    """Mix RGB normal maps as vectors.

    Args:
        normals: ``K`` maps ``(H, W, 3)`` uint8 (OpenGL).
        weights: ``(K,)`` weights summing to 1: the weighted mean vector, re-normalised.
        heights: instead of weights, ``K`` height maps ``(H, W)``: each pixel takes the normal
            of the source whose height is largest (first on ties).

    Returns:
        ``(H, W, 3)`` uint8 normal map of unit vectors; texels whose weighted mean vector is
        shorter than :data:`DEGENERATE_LENGTH` (opposite normals cancelling) are flat.
    """
    if (weights is None) == (heights is None):
        raise ValueError("give exactly one of weights or heights")
    if heights is not None:
        out, best = normals[0].copy(), heights[0]
        for normal, height in zip(normals[1:], heights[1:]):
            higher = height > best  # strictly: ties stay with the earlier source
            out[higher] = normal[higher]
            best = np.maximum(best, height)
        return out
    acc = [np.zeros(normals[0].shape[:2], np.float32) for _ in range(3)]
    for n, w in zip(normals, weights):
        for total, plane in zip(acc, normal_planes(n)):
            total += np.float32(w) * plane
    # Opposite normals cancel to a vector as short as 8-bit rounding (0 is stored as 128, i.e.
    # +0.004): its direction would be noise, so such texels become flat.
    return encode_normal(*acc, min_length=DEGENERATE_LENGTH)


def mix_materials(
    materials: list[PBRMaterial], rng: np.random.Generator, cfg: MixConfig, mode: str | None = None
) -> tuple[dict[str, np.ndarray], dict]:
    """Mix two or more materials into one (appendix F).

    Args:
        materials: ``K >= 2`` materials (any sizes).
        rng: random generator for the mode and weights.
        cfg: parameters.
        mode: force ``"equal"``, ``"max"`` or ``"flexible"``; None = draw it.

    Returns:
        ``(maps, info)``: maps of every property present in some source, all at
        :func:`mix_size`, uint8; ``info`` = mode, per-property weights (``flexible``) or one
        weight list (``equal``), size, and which sources lacked which property (filled with
        its default).
    """
    if len(materials) < 2:
        raise ValueError(f"mixing needs at least 2 materials, got {len(materials)}")
    if mode is None:
        mode = choose_mode(rng, cfg)
    if mode not in MIX_MODES:
        raise ValueError(f"mode must be one of {', '.join(MIX_MODES)}, got {mode!r}")
    h, w = mix_size([m.size for m in materials], cfg.max_size)
    present = [p for p in PROPERTIES if any(p in m.maps for m in materials)]
    resized = [{p: v for p, v in m.resized(h, w).items() if p in present} for m in materials]
    filled: dict[str, list[int]] = {}
    for k, maps in enumerate(resized):
        for p in present:
            if p not in maps:
                maps[p] = default_map(p, h, w)
                filled.setdefault(p, []).append(k)
    info: dict = {"mode": mode, "size": [h, w], "filled_with_default": filled}
    out: dict[str, np.ndarray] = {}
    if mode == "equal":
        weights = normalized_weights(rng.random(len(materials)))
        info["weights"] = [round(float(x), 6) for x in weights]
        per_prop = {p: weights for p in present}
    elif mode == "flexible":
        per_prop = {p: normalized_weights(rng.random(len(materials))) for p in present}
        info["weights"] = {p: [round(float(x), 6) for x in wts] for p, wts in per_prop.items()}
    else:
        per_prop = {}
    for p in present:
        layers = [maps[p] for maps in resized]
        if mode == "max":
            if p == "normal":
                has_height = any("height" in m.maps for m in materials)
                heights = [maps["height"] for maps in resized] if has_height else None
                even = None if has_height else np.full(len(layers), 1.0 / len(layers))
                out[p] = mix_normals(layers, weights=even, heights=heights)
            else:
                out[p] = np.maximum.reduce(layers)
        elif p == "normal":
            out[p] = mix_normals(layers, weights=per_prop[p])
        else:
            out[p] = weighted_average(layers, per_prop[p])
    return out, info
