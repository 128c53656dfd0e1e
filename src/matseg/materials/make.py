"""Texture -> PBR material (paper §3.2.2, digest §1.5).

Each property map (height, roughness, metallic, and optionally specular and opacity) is one
randomly chosen image channel (grey, relative RGB, HSV, or an RGB channel of a hue-rotated copy),
optionally inverted and blurred, then either kept at its own scale or rescaled into a random
``[low, high]`` range and optionally thresholded; some maps are constant. The normal map is the
height map's gradient with a random strength; the optional ambient-occlusion map is the height
map's cavities. Occasionally a material is textureless (appendix E): uniform random values.

Deviations from the reference ``Turn_Texture_To_PBR.py`` (also in docs/deviations.md):
- every channel is first brought to a float 0-255 scale, and the rescaling
  ``low + (high - low) * mp / (mp.max() + 1)`` is done in float64: NumPy 2 no longer wraps
  ``uint8 255 + 1`` to 0 here (the reference's broken maps, digest §3.4), and the result does not
  depend on NumPy's promotion rules;
- relative-RGB channels (about 0-2.6) are stretched by their own min-max range instead of being
  treated as 0-255 (which collapsed them to 1-3 grey levels, more so after inversion);
- HSV is computed from RGB data (the reference converted BGR data with RGB2HSV) and hue rotation
  wraps at OpenCV's 180 (reference: ``mod 255``);
- the "unnormalised" branch keeps the channel's 0-255 scale, rounded and clipped (reference: the
  raw float array written through ``imwrite``'s saturating cast);
- thresholding zeroes values below a random level in ``[low, high]`` (reference: ``mp[mp<low]=0``,
  a no-op);
- the "non-reflective" branch makes the non-metal pixels rough (reference: sets roughness where
  metallic > 160, i.e. on the metal pixels it just kept);
- the optional maps the reference drew but never produced are produced: specular and opacity
  like the other maps, ambient occlusion from the height map; emission is not;
- the normal map is written in the OpenGL convention (+Y up, what Blender expects); the
  reference's ``(-s dh/dx, -s dh/drow, 1)`` is DirectX-style;
- all maps are 8-bit (lossless PNG), the colour map is ``OriginColor.jpg``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from matseg.config import check_probabilities, option, section
from matseg.materials.pbr import FLAT_NORMAL, encode_normal

# Sources a property map can be drawn from (names recorded in meta.json).
RAW_CHANNELS = ("rel_R", "rel_G", "rel_B", "H", "S", "V")
# Added to the pixel mean before dividing (reference value): keeps dark pixels finite.
RELATIVE_RGB_OFFSET = 10.0


def _check_kernels(kernels: list[int], name: str) -> None:
    if not kernels or any(k < 1 or k % 2 == 0 for k in kernels):
        raise ValueError(f"{name} must be odd positive sizes, got {kernels}")


@dataclass
class AugmentConfig:
    """Augmentation of the texture before any map is drawn (digest §1.5 steps 1 and 3)."""

    p_hue_rotate: float = option(0.22, "probability of a random hue rotation of the texture (maps and colour)", "§1.5 step 1")
    p_rot90: float = option(0.5, "probability of rotating the texture by 90 degrees", "§1.5 step 1")
    p_fliplr: float = option(0.5, "probability of a left-right flip", "§1.5 step 1")
    p_flipud: float = option(0.5, "probability of an up-down flip", "§1.5 step 1")
    p_color_hue_rotate: float = option(0.2, "probability of another hue rotation of the colour map only (after the maps' channels were taken)", "§1.5 step 3")

    def __post_init__(self):
        check_probabilities(self, *("p_hue_rotate", "p_rot90", "p_fliplr", "p_flipud", "p_color_hue_rotate"))


@dataclass
class PropertyMapConfig:
    """How one property map is drawn from the texture (digest §1.5 step 5). Defaults: metallic."""

    probability: float = option(1.0, "probability that the material has this map at all", "§1.5 step 4")
    p_constant: float = option(0.14, "probability of a constant map", "§1.5 step 5")
    constant_value: int | None = option(None, "value of a constant map; null = random: p=0.5 uniform 0-255, else 0 or 255", "§1.5 step 5")
    source_cuts: list[float] = option([0.2, 0.64], "U below cut[0]: grey (channel mean); below cut[1]: one of rel_R/rel_G/rel_B/H/S/V; else an RGB channel of a hue-rotated copy", "§1.5 step 5")
    p_invert: float = option(0.3, "probability of inverting the channel (255 - v)", "§1.5 step 5")
    p_blur: float = option(0.11, "probability of a Gaussian blur", "§1.5 step 5")
    blur_kernels: list[int] = option([3, 5, 7, 9], "blur kernel sizes to choose from", "§1.5 step 5")
    p_unnormalised: float = option(0.2, "probability of keeping the channel's own 0-255 scale (no rescaling)", "§1.5 step 5, fixed")
    p_random_low: float = option(0.75, "probability that low = randint(0, low_max) (else 0)", "§1.5 step 5")
    low_max: int = option(250, "exclusive upper bound of the random low", "§1.5 step 5")
    p_random_high: float = option(0.75, "probability that high = randint(low, 256) (else 255)", "§1.5 step 5")
    p_threshold: float = option(0.11, "probability of zeroing values below a random level in [low, high]", "§1.5 step 5, fixed")

    def __post_init__(self):
        check_probabilities(self, *("probability", "p_constant", "p_invert", "p_blur", "p_unnormalised",
                                  "p_random_low", "p_random_high", "p_threshold"))  # fmt: skip
        _check_kernels(self.blur_kernels, "blur_kernels")
        if len(self.source_cuts) != 2 or not 0.0 <= self.source_cuts[0] <= self.source_cuts[1] <= 1.0:
            raise ValueError(f"source_cuts must be two increasing values in [0, 1], got {self.source_cuts}")
        if not 1 <= self.low_max <= 255:
            raise ValueError(f"low_max must be in 1..255, got {self.low_max}")
        if self.constant_value is not None and not 0 <= self.constant_value <= 255:
            raise ValueError(f"constant_value must be in 0..255, got {self.constant_value}")


@dataclass
class HeightMapConfig(PropertyMapConfig):
    """Height: constant maps are 0 (flat), grey more often, always the full 0-255 range, no thresholding."""

    constant_value: int | None = option(0, "value of a constant map (flat)", "§1.5 step 5")
    source_cuts: list[float] = option([0.4, 0.64], "see metallic.source_cuts (height uses grey more often)", "§1.5 step 5")
    p_random_low: float = option(0.0, "height always spans 0-255 (low = 0)", "§1.5 step 5")
    p_random_high: float = option(0.0, "height always spans 0-255 (high = 255)", "§1.5 step 5")
    p_threshold: float = option(0.0, "no thresholding of height (reference: a no-op there)", "§1.5 step 5")


@dataclass
class RoughnessMapConfig(PropertyMapConfig):
    """Roughness: inverted more often."""

    p_invert: float = option(0.6, "probability of inverting the channel (255 - v)", "§1.5 step 5")


@dataclass
class SpecularMapConfig(PropertyMapConfig):
    """Specular: drawn by the reference (p=0.13) but never generated; here generated like metallic."""

    probability: float = option(0.13, "probability that the material has a specular map", "§1.5 step 4, fixed")


@dataclass
class OpacityMapConfig(PropertyMapConfig):
    """Opacity: drawn by the reference (p=0.13) but never generated; mostly opaque here."""

    probability: float = option(0.13, "probability that the material has an opacity map", "§1.5 step 4, fixed")
    p_cutout: float = option(0.17, "probability of a binary cut-out (opacity >= 128 -> 255, else 0); the reference drew this (p=0.17) without an opacity map", "§1.5 step 6, ours")
    min_mean: float = option(0.5, "an opacity map whose mean is below this (0-1) is inverted, so materials stay mostly visible", "ours")

    def __post_init__(self):
        super().__post_init__()
        check_probabilities(self, *("p_cutout", "min_mean"))


@dataclass
class AOConfig:
    """Ambient occlusion from the height map's cavities: ``1 - strength * max(0, blur(h) - h) / 255``."""

    probability: float = option(0.1, "probability that the material has an AO map (reference: drawn, never generated)", "§1.5 step 4, fixed")
    radius: list[float] = option([0.01, 0.05], "blur radius range as a fraction of the longer side", "ours")
    strength: list[float] = option([2.0, 6.0], "strength range", "ours")

    def __post_init__(self):
        check_probabilities(self, *("probability",))
        for name in ("radius", "strength"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1]:
                raise ValueError(f"{name} must be [low, high] with 0 < low <= high, got {lo_hi}")


@dataclass
class ReflectiveConfig:
    """Metal / non-metal post-processing (digest §1.5 step 6)."""

    p_reflective: float = option(0.14, "probability of making metallic > threshold fully metallic", "§1.5 step 6")
    p_non_reflective: float = option(0.1, "probability of making metallic < threshold zero", "§1.5 step 6")
    p_roughness_follows: float = option(0.66, "then probability of roughness 0 on the metal / 255 on the non-metal pixels", "§1.5 step 6, fixed")
    threshold: int = option(160, "metallic level that separates metal from non-metal", "§1.5 step 6")

    def __post_init__(self):
        check_probabilities(self, *("p_reflective", "p_non_reflective", "p_roughness_follows"))


@dataclass
class NormalConfig:
    """Normal from the height gradient: strength p=0.76 ``16*U*U``, else p=0.77 ``24*U*U``, else 1."""

    strength_scales: list[float] = option([16.0, 24.0], "scales of the two random strengths (scale * U * U)", "§1.5 step 7")
    strength_probs: list[float] = option([0.76, 0.77], "probability of the first scale, then of the second among the rest; else strength 1", "§1.5 step 7")

    def __post_init__(self):
        if len(self.strength_scales) != 2 or len(self.strength_probs) != 2:
            raise ValueError("strength_scales and strength_probs need two values each")
        if not all(0.0 <= p <= 1.0 for p in self.strength_probs):
            raise ValueError(f"strength_probs must be in [0, 1], got {self.strength_probs}")


@dataclass
class TexturelessConfig:
    """Textureless materials (appendix E): one random value per property."""

    count: int = option(0, "extra textureless materials to make (textureless_000000 ...); --textureless N", "appendix E, ours")
    probability: float = option(0.0, "probability that a texture's material becomes textureless (colour = the texture's mean colour)", "appendix E, ours")
    size: int = option(256, "side of the (uniform) maps of textureless materials", "ours")
    p_random_roughness: float = option(0.9, "roughness U (else 0)", "§1.7 (Blender BSDF)")
    p_random_metallic: float = option(0.8, "metallic U (else 0 or 1)", "§1.7 (Blender BSDF)")
    p_random_specular: float = option(0.12, "specular U (else 0.5)", "§1.7 (Blender BSDF)")

    def __post_init__(self):
        check_probabilities(self, *("probability", "p_random_roughness", "p_random_metallic", "p_random_specular"))
        if self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")


@dataclass
class MakeConfig:
    """Everything that defines how a texture becomes a PBR material."""

    augment: AugmentConfig = section(AugmentConfig, "texture augmentation")
    height: HeightMapConfig = section(HeightMapConfig, "height map")
    roughness: RoughnessMapConfig = section(RoughnessMapConfig, "roughness map")
    metallic: PropertyMapConfig = section(PropertyMapConfig, "metallic map")
    specular: SpecularMapConfig = section(SpecularMapConfig, "optional specular map")
    opacity: OpacityMapConfig = section(OpacityMapConfig, "optional opacity map")
    ao: AOConfig = section(AOConfig, "optional ambient-occlusion map")
    reflective: ReflectiveConfig = section(ReflectiveConfig, "metal / non-metal post-processing")
    normal: NormalConfig = section(NormalConfig, "normal map")
    textureless: TexturelessConfig = section(TexturelessConfig, "textureless materials")
    min_size: int = option(16, "textures with a side below this many pixels are rejected", "ours")
    max_size: int | None = option(2048, "textures whose longer side exceeds this are shrunk to it first (StandartizePBR's limit); null = keep", "§1.6")

    def __post_init__(self):
        if self.min_size < 2:
            raise ValueError(f"min_size must be >= 2, got {self.min_size}")
        if self.max_size is not None and self.max_size < self.min_size:
            raise ValueError(f"max_size ({self.max_size}) must be >= min_size ({self.min_size})")


# ----------------------------------------------------------------------------- channels


def rotate_hue(rgb: np.ndarray, shift: int) -> np.ndarray:
    """Rotate the hue of an RGB image by ``shift`` OpenCV hue units (0-179, i.e. 2 degrees each).

    Args:
        rgb: ``(H, W, 3)`` uint8 RGB.
        shift: any integer; applied modulo 180.

    Returns:
        ``(H, W, 3)`` uint8 RGB with ``H' = (H + shift) mod 180``; S and V unchanged.
    """
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    lut = ((np.arange(256) + shift) % 180).astype(np.uint8)  # hue bytes are 0..179
    hsv[:, :, 0] = cv2.LUT(hsv[:, :, 0], lut)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def relative_rgb(rgb: np.ndarray, channel: int, pixel_mean: np.ndarray | None = None) -> np.ndarray:
    """One channel divided by the pixel's mean + 10, stretched by its own range.

    Args:
        rgb: ``(H, W, 3)`` uint8.
        channel: 0, 1, 2 = R, G, B.
        pixel_mean: ``(H, W)`` float32 mean of the three channels (computed if None).

    Returns:
        ``(H, W)`` float32 in [0, 255]: ``c / (mean_rgb + 10)`` (about 0-2.6), then
        ``(x - min) / (max - min) * 255`` (all 0 where the channel is constant).
    """
    if pixel_mean is None:
        pixel_mean = TextureChannels(rgb).gray()
    rel = rgb[:, :, channel].astype(np.float32) / (pixel_mean + RELATIVE_RGB_OFFSET)
    lo, hi, _, _ = cv2.minMaxLoc(rel)
    if hi <= lo:
        return np.zeros_like(rel)
    return (rel - np.float32(lo)) * np.float32(255.0 / (hi - lo))


class TextureChannels:
    """The channels property maps are drawn from, each computed on first use (float32, 0-255 scale).

    ``gray()``: mean of R, G, B; ``raw(i)`` for ``RAW_CHANNELS[i]``: relative R, G, B
    (:func:`relative_rgb`), then H (OpenCV's 0-179 scaled by 255/180), S, V of the RGB data.
    """

    def __init__(self, rgb: np.ndarray):
        self.rgb = rgb
        self._gray: np.ndarray | None = None
        self._hsv: np.ndarray | None = None
        self._raw: dict[int, np.ndarray] = {}

    def gray(self) -> np.ndarray:
        if self._gray is None:
            r, g, b = cv2.split(self.rgb)  # planes: far faster than a mean over the last axis
            self._gray = (r.astype(np.float32) + g + b) * np.float32(1.0 / 3.0)
        return self._gray

    def raw(self, index: int) -> np.ndarray:
        if index not in self._raw:
            if index < 3:
                self._raw[index] = relative_rgb(self.rgb, index, self.gray())
            else:
                if self._hsv is None:
                    self._hsv = cv2.cvtColor(self.rgb, cv2.COLOR_RGB2HSV)
                plane = self._hsv[:, :, index - 3].astype(np.float32)
                self._raw[index] = plane * np.float32(255.0 / 180.0) if index == 3 else plane
        return self._raw[index]


def scale_to_range(mp: np.ndarray, low: float, high: float) -> np.ndarray:
    """The reference's rescaling ``low + (high - low) * mp / (mp.max() + 1)``, always in float64.

    NumPy-1 semantics on any NumPy: a uint8 map whose maximum is 255 is divided by 256, never
    by a wrapped-around 0 (NEP 50 makes ``uint8(255) + 1 == 0`` on NumPy >= 2, digest §3.4).

    Args:
        mp: ``(H, W)`` map of any real dtype, values >= 0.

    Returns:
        ``(H, W)`` float64 in ``[low, high)``.
    """
    m = np.asarray(mp, dtype=np.float64)
    return low + (high - low) * m / (float(m.max()) + 1.0)


def to_map_u8(values: np.ndarray) -> np.ndarray:
    """A float map on the 0-255 scale as a proper 8-bit image (round to nearest, clip)."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- one property map


def _constant_value(rng: np.random.Generator, cfg: PropertyMapConfig) -> int:
    if cfg.constant_value is not None:
        return cfg.constant_value
    if rng.random() < 0.5:
        return int(rng.integers(0, 256))
    return 255 if rng.random() < 0.5 else 0


def _source_channel(channels: TextureChannels, rng: np.random.Generator, cfg: PropertyMapConfig) -> tuple[np.ndarray, dict]:
    """The channel a map is drawn from, float32 on a 0-255 scale (read-only: shared), and its description."""
    r = rng.random()
    if r < cfg.source_cuts[0]:
        return channels.gray(), {"source": "gray"}
    if r < cfg.source_cuts[1]:
        c = int(rng.integers(0, len(RAW_CHANNELS)))
        return channels.raw(c), {"source": RAW_CHANNELS[c]}
    shift = int(rng.integers(0, 180))
    c = int(rng.integers(0, 3))
    return rotate_hue(channels.rgb, shift)[:, :, c].astype(np.float32), {"source": f"hue_rotated_{'RGB'[c]}", "hue_shift": shift}


def property_map(channels: TextureChannels, rng: np.random.Generator, cfg: PropertyMapConfig) -> tuple[np.ndarray, dict]:
    """Draw one property map from a texture (digest §1.5 step 5, fixed).

    Args:
        channels: the texture's channels (``TextureChannels(rgb)``, ``rgb`` ``(H, W, 3)``
            uint8 after augmentation); shared by the maps of one material.
        rng: random generator (all draws come from it).
        cfg: the property's parameters.

    Returns:
        ``(map, info)``: ``(H, W)`` uint8 and every draw made.
    """
    h, w = channels.rgb.shape[:2]
    if rng.random() < cfg.p_constant:
        value = _constant_value(rng, cfg)
        return np.full((h, w), value, np.uint8), {"constant": value}
    mp, info = _source_channel(channels, rng, cfg)
    if rng.random() < cfg.p_invert:
        mp = 255.0 - mp
        info["invert"] = True
    if rng.random() < cfg.p_blur:
        k = int(cfg.blur_kernels[int(rng.integers(0, len(cfg.blur_kernels)))])
        mp = cv2.GaussianBlur(mp, (k, k), 0)
        info["blur"] = k
    if rng.random() < cfg.p_unnormalised:
        info["scale"] = "own"
        return to_map_u8(mp), info
    low = int(rng.integers(0, cfg.low_max)) if rng.random() < cfg.p_random_low else 0
    high = int(rng.integers(low, 256)) if rng.random() < cfg.p_random_high else 255
    scaled = scale_to_range(mp, low, high)
    info.update(scale="range", low=low, high=high)
    if rng.random() < cfg.p_threshold:
        level = float(rng.uniform(low, high)) if high > low else float(low)
        scaled[scaled < level] = 0.0
        info["threshold"] = round(level, 3)
    return to_map_u8(scaled), info


# ----------------------------------------------------------------------------- derived maps


def normal_from_height(height: np.ndarray, strength: float) -> np.ndarray:
    """Tangent-space normal map of a height map, OpenGL convention (+Y up).

    ``h = height / 255``; ``dh/drow, dh/dcol`` by central differences (``np.gradient``);
    ``n = normalize(-s * dh/dcol, +s * dh/drow, 1)`` (image rows point down, so the up-slope
    ``-dh/dy_up`` is ``+dh/drow``); encoded ``round((n + 1) * 127.5)``.

    Args:
        height: ``(H, W)`` uint8, ``H, W >= 2``.
        strength: slope multiplier ``s >= 0``.

    Returns:
        ``(H, W, 3)`` uint8 RGB; a flat height gives ``(128, 128, 255)`` everywhere.
    """
    if height.ndim != 2 or min(height.shape) < 2:
        raise ValueError(f"height must be (H, W) with H, W >= 2, got shape {height.shape}")
    if strength < 0:
        raise ValueError(f"strength must be >= 0, got {strength}")
    h = height.astype(np.float32) * np.float32(1.0 / 255.0)
    d_row, d_col = np.gradient(h)
    return encode_normal(d_col * np.float32(-strength), d_row * np.float32(strength), np.ones_like(h))


def ao_from_height(height: np.ndarray, radius_px: float, strength: float) -> np.ndarray:
    """Ambient occlusion from cavities: pixels below their neighbourhood's mean height are darker.

    Args:
        height: ``(H, W)`` uint8.
        radius_px: Gaussian sigma of the neighbourhood, pixels (> 0).
        strength: darkening per unit of cavity depth (0-1 scale).

    Returns:
        ``(H, W)`` uint8, 255 = unoccluded: ``255 * clip(1 - strength * max(0, mean - h) / 255, 0, 1)``.
    """
    h = height.astype(np.float32)
    mean = cv2.GaussianBlur(h, (0, 0), sigmaX=max(radius_px, 0.3), borderType=cv2.BORDER_REFLECT)
    cavity = np.maximum(mean - h, 0.0) / 255.0
    return to_map_u8(255.0 * np.clip(1.0 - strength * cavity, 0.0, 1.0))


def _normal_strength(rng: np.random.Generator, cfg: NormalConfig) -> float:
    if rng.random() < cfg.strength_probs[0]:
        return float(cfg.strength_scales[0] * rng.random() * rng.random())
    if rng.random() < cfg.strength_probs[1]:
        return float(cfg.strength_scales[1] * rng.random() * rng.random())
    return 1.0


def augment_texture(rgb: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> tuple[np.ndarray, dict]:
    """Random hue rotation, 90-degree rotation and flips (digest §1.5 step 1)."""
    info: dict = {}
    if rng.random() < cfg.p_hue_rotate:
        info["hue_shift"] = int(rng.integers(0, 180))
        rgb = rotate_hue(rgb, info["hue_shift"])
    for name, p, op in (("rot90", cfg.p_rot90, np.rot90), ("fliplr", cfg.p_fliplr, np.fliplr), ("flipud", cfg.p_flipud, np.flipud)):
        if rng.random() < p:
            rgb = op(rgb)
            info[name] = True
    return np.ascontiguousarray(rgb), info


def _apply_reflective(maps: dict, rng: np.random.Generator, cfg: ReflectiveConfig) -> dict:
    info: dict = {}
    metallic, roughness = maps["metallic"], maps["roughness"]
    if rng.random() < cfg.p_reflective:
        metal = metallic > cfg.threshold
        metallic[metal] = 255
        info["reflective"] = True
        if rng.random() < cfg.p_roughness_follows:
            roughness[metal] = 0
            info["reflective_smooth"] = True
    if rng.random() < cfg.p_non_reflective:
        non_metal = metallic < cfg.threshold
        metallic[non_metal] = 0
        info["non_reflective"] = True
        if rng.random() < cfg.p_roughness_follows:
            roughness[non_metal] = 255  # reference: roughness[metallic > 160] (the metal pixels)
            info["non_reflective_rough"] = True
    return info


# ----------------------------------------------------------------------------- materials


def make_pbr(rgb: np.ndarray, rng: np.random.Generator, cfg: MakeConfig) -> tuple[dict[str, np.ndarray], dict]:
    """Turn a texture into a PBR material (paper §3.2.2, digest §1.5 with the fixes listed above).

    Args:
        rgb: ``(H, W, 3)`` uint8 RGB texture, both sides >= ``cfg.min_size`` (after shrinking to
            ``cfg.max_size``).
        rng: random generator; the result depends only on it, the texture and ``cfg``.
        cfg: parameters.

    Returns:
        ``(maps, info)``: ``maps`` has ``color`` ``(H', W', 3)``, ``normal`` ``(H', W', 3)``,
        ``height``/``roughness``/``metallic`` ``(H', W')``, and sometimes ``specular``,
        ``opacity``, ``ao``, all uint8 (``H', W'`` = ``H, W``, swapped by a 90-degree rotation);
        ``info`` records every random draw. With probability ``cfg.textureless.probability``
        the material is textureless instead (:func:`textureless_pbr` with the texture's mean
        colour).

    Raises:
        ValueError: not an ``(H, W, 3)`` uint8 array, or smaller than ``cfg.min_size``.
    """
    rgb = prepare_texture(rgb, cfg)
    if rng.random() < cfg.textureless.probability:
        mean = tuple(int(c) for c in np.rint(rgb.reshape(-1, 3).mean(axis=0)))
        return textureless_pbr(rng, cfg.textureless, color=mean)
    info: dict = {}
    img, info["augment"] = augment_texture(rgb, rng, cfg.augment)
    channels = TextureChannels(img)
    color = img
    if rng.random() < cfg.augment.p_color_hue_rotate:
        info["color_hue_shift"] = int(rng.integers(0, 180))
        color = rotate_hue(img, info["color_hue_shift"])
    optional = {name: rng.random() < getattr(cfg, name).probability for name in ("specular", "opacity", "ao")}
    maps: dict[str, np.ndarray] = {"color": color}
    info["maps"] = {}
    for name in ("height", "roughness", "metallic", "specular", "opacity"):
        if name in optional and not optional[name]:
            continue
        maps[name], info["maps"][name] = property_map(channels, rng, getattr(cfg, name))
    info.update(_apply_reflective(maps, rng, cfg.reflective))
    if "opacity" in maps:
        info["maps"]["opacity"].update(_finish_opacity(maps, rng, cfg.opacity))
    strength = _normal_strength(rng, cfg.normal)
    maps["normal"] = normal_from_height(maps["height"], strength)
    info["normal_strength"] = round(strength, 5)
    if optional["ao"]:
        longest = max(img.shape[:2])
        radius = float(rng.uniform(*cfg.ao.radius)) * longest
        ao_strength = float(rng.uniform(*cfg.ao.strength))
        maps["ao"] = ao_from_height(maps["height"], radius, ao_strength)
        info["maps"]["ao"] = {"source": "height cavities", "radius_px": round(radius, 3), "strength": round(ao_strength, 4)}
    return maps, info


def _finish_opacity(maps: dict, rng: np.random.Generator, cfg: OpacityMapConfig) -> dict:
    info: dict = {}
    opacity = maps["opacity"]
    if opacity.mean() < cfg.min_mean * 255:
        maps["opacity"] = opacity = 255 - opacity
        info["inverted_to_mostly_opaque"] = True
    if rng.random() < cfg.p_cutout:
        maps["opacity"] = np.where(opacity >= 128, 255, 0).astype(np.uint8)
        info["cutout"] = True
    return info


def prepare_texture(rgb: np.ndarray, cfg: MakeConfig) -> np.ndarray:
    """Validate a texture and shrink it to ``cfg.max_size`` (area averaging)."""
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        got = f"{rgb.dtype} array of shape {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ValueError(f"texture must be an (H, W, 3) uint8 RGB array, got {got}")
    h, w = rgb.shape[:2]
    if min(h, w) < cfg.min_size:
        raise ValueError(f"texture is too small: {w}x{h} px (min_size: {cfg.min_size} px per side)")
    if cfg.max_size is not None and max(h, w) > cfg.max_size:
        s = cfg.max_size / max(h, w)
        rgb = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return rgb


def textureless_pbr(
    rng: np.random.Generator, cfg: TexturelessConfig, color: tuple[int, int, int] | None = None
) -> tuple[dict[str, np.ndarray], dict]:
    """A uniform material (appendix E): one random value per property, as the 3D generator's BSDFs.

    Args:
        rng: random generator.
        cfg: parameters (map size, probabilities).
        color: RGB base colour; None = random ``HSV(U, U, U)``.

    Returns:
        ``(maps, info)``: constant ``(size, size[, 3])`` uint8 maps (flat height and normal),
        ``info`` with the values drawn (0-1 scale).
    """
    n = cfg.size
    if color is None:
        hsv = np.array([[[rng.random() * 180.0, rng.random() * 255.0, rng.random() * 255.0]]], np.float32)
        hsv = np.clip(np.rint(hsv), 0, [179, 255, 255]).astype(np.uint8)
        color = tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])
    roughness = rng.random() if rng.random() < cfg.p_random_roughness else 0.0
    if rng.random() < cfg.p_random_metallic:
        metallic = rng.random()
    else:
        metallic = float(rng.random() < 0.5)
    specular = rng.random() if rng.random() < cfg.p_random_specular else 0.5
    values = {"roughness": roughness, "metallic": metallic, "specular": specular}
    maps = {
        "color": np.broadcast_to(np.array(color, np.uint8), (n, n, 3)).copy(),
        "normal": np.broadcast_to(np.array(FLAT_NORMAL, np.uint8), (n, n, 3)).copy(),
        "height": np.zeros((n, n), np.uint8),
        **{k: np.full((n, n), int(round(v * 255)), np.uint8) for k, v in values.items()},
    }
    info = {"textureless": True, "color": list(color), **{k: round(float(v), 5) for k, v in values.items()}}
    return maps, info
