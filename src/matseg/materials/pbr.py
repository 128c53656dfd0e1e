"""PBR material folders: one layout written, every common naming convention read.

Written layout (``write_pbr``, used by ``matseg pbr make`` and ``matseg pbr mix``)::

    <name>/OriginColor.jpg       base colour, RGB (sRGB) JPEG
    <name>/Normal.png            tangent-space normal, RGB = (x, y, z) * 0.5 + 0.5, OpenGL (+Y up)
    <name>/Height.png            8-bit single channel, 0 = lowest
    <name>/Roughness.png         8-bit single channel, 255 = fully rough
    <name>/Metallic.png          8-bit single channel, 255 = metal
    <name>/AmbientOcclusion.png  optional, 255 = unoccluded
    <name>/Specular.png          optional, 8-bit, 128 = 0.5 (Blender's "Specular IOR Level" default)
    <name>/Opacity.png           optional, 255 = opaque
    <name>/meta.json             format, seed, sources, every random draw, parameters, version
    <name>/Finished.txt          written last (the folder itself is renamed into place atomically)

Reading (``read_pbr``) accepts what users bring: the published MatSeg names
(``OriginColor``/``AmbientColor``/...), the reference's ``Color.jpg``, ambientCG
(``Name_2K_Color.jpg``, ``_NormalGL``/``_NormalDX``), Poly Haven (``_diff_2k``, ``_nor_gl``,
``_arm``), Poliigon (``_COL_``, ``_GLOSS_``, ``_REFL_``), freepbr, cgbookcase, Substance and
Megascans names; case-insensitive; JPEG/PNG/TIFF/BMP/WebP (8 or 16 bit) and EXR when OpenCV
can decode it. Every map comes back as 8-bit; ``PBRReport`` says which file gave each property,
which conversions were applied and what is missing. The rules are documented in docs/formats.md.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from matseg.io.atomic import json_bytes, write_folder
from matseg.io.images import encode_image, read_image_info

FORMAT_NAME = "matseg-pbr"
FORMAT_VERSION = 1
META_NAME = "meta.json"
FINISHED_NAME = "Finished.txt"

#: Every property a material can carry, in the order maps are listed and previewed.
PROPERTIES = ("color", "normal", "height", "roughness", "metallic", "ao", "specular", "opacity")
#: Properties stored as one 8-bit channel (colour and normal are RGB).
SCALAR_PROPERTIES = ("height", "roughness", "metallic", "ao", "specular", "opacity")
#: File name of each property in the written layout.
LAYOUT_FILES = {
    "color": "OriginColor.jpg",
    "normal": "Normal.png",
    "height": "Height.png",
    "roughness": "Roughness.png",
    "metallic": "Metallic.png",
    "ao": "AmbientOcclusion.png",
    "specular": "Specular.png",
    "opacity": "Opacity.png",
}
#: Value a missing scalar map stands for (8-bit): flat, half rough, dielectric, unoccluded,
#: Blender's default specular level 0.5, opaque. Height 0 = no displacement (the 3D scenes use
#: displacement midlevel 0, digest §1.7).
DEFAULT_VALUES = {"height": 0, "roughness": 128, "metallic": 0, "ao": 255, "specular": 128, "opacity": 255}
#: A flat tangent-space normal, (0, 0, 1) encoded.
FLAT_NORMAL = (128, 128, 255)
#: Properties written by ``make`` for every material (the rest are optional).
CORE_PROPERTIES = ("color", "normal", "height", "roughness", "metallic")

# Among files that name the same property with the same rank, lossless and deep formats win.
_EXTENSION_PREFERENCE = {".png": 0, ".tif": 1, ".tiff": 1, ".exr": 2, ".hdr": 2, ".bmp": 3, ".webp": 4, ".jpg": 5, ".jpeg": 5}
#: Map files a material folder may hold: what OpenCV decodes (maps keep 16-bit and float data,
#: which Pillow would not), so not the phone formats AVIF and HEIC that photos may be in.
READ_EXTENSIONS = tuple(_EXTENSION_PREFERENCE)


class PBRReadError(ValueError):
    """A folder cannot be read as a PBR material (no readable base colour); the message names it."""


# ----------------------------------------------------------------------------- naming conventions


@dataclass(frozen=True)
class MapRole:
    """What one file provides: ``prop`` (None = a known map we do not use), a rank (lower wins when
    several files name the same property) and the conversion to our convention."""

    prop: str | None
    rank: int = 0
    transform: str = ""  # "", "invert", "flip_green", "channel0".."channel2"
    note: str = ""


def _roles(prop: str | None, rank: int = 0, transform: str = "", note: str = "") -> tuple[MapRole, ...]:
    return (MapRole(prop, rank, transform, note),)


# Keywords of the last meaningful word(s) of a file name. Joined words ("base color") are looked
# up joined ("basecolor"). Ranks: a dedicated map beats a derived one (gloss -> roughness, the
# packed ARM channels, AmbientColor = colour x AO).
_KEYWORDS: dict[str, tuple[MapRole, ...]] = {
    # base colour
    "origincolor": _roles("color", 0),
    **{k: _roles("color", 1) for k in ("basecolor", "basecolour", "albedo", "diffuse", "diff", "color", "colour", "col", "diffusecolor")},
    "ambientcolor": _roles("color", 3, note="colour with ambient occlusion baked in"),
    # normal (qualifiers gl/dx are separate words, see _QUALIFIERS)
    **{k: _roles("normal", 1) for k in ("normal", "normals", "nor", "nrm", "norm", "normalmap")},
    **{k: _roles("normal", 0, "", "opengl (by name)") for k in ("normalgl", "normalogl", "normalopengl", "norgl", "nrmgl")},
    **{k: _roles("normal", 2, "flip_green", "directx (by name)") for k in ("normaldx", "normaldirectx", "nordx", "nrmdx")},
    # height
    **{k: _roles("height", 0) for k in ("height", "displacement", "disp", "displace", "heightmap")},
    "bump": _roles("height", 1, note="bump map used as height"),
    # roughness / gloss
    **{k: _roles("roughness", 0) for k in ("roughness", "rough", "rgh")},
    **{k: _roles("roughness", 1, "invert", "gloss inverted to roughness") for k in ("gloss", "glossiness", "smoothness")},
    # metallic
    **{k: _roles("metallic", 0) for k in ("metallic", "metalness", "metal", "metalic", "metallness")},
    # ambient occlusion
    **{k: _roles("ao", 0) for k in ("ao", "ambientocclusion", "occlusion", "mixedao")},
    # specular
    **{k: _roles("specular", 0) for k in ("specular", "spec", "specularity", "specularlevel")},
    **{k: _roles("specular", 1, note="reflection map used as specular") for k in ("reflection", "refl")},
    # opacity
    **{k: _roles("opacity", 0) for k in ("opacity", "alpha")},
    "transparency": _roles("opacity", 1, "invert", "transparency inverted to opacity"),
    # packed occlusion / roughness / metallic (glTF and Poly Haven: R = AO, G = roughness, B = metallic)
    **{
        k: (MapRole("ao", 5, "channel0", f"{k.upper()} red"), MapRole("roughness", 5, "channel1", f"{k.upper()} green"),
            MapRole("metallic", 5, "channel2", f"{k.upper()} blue"))
        for k in ("arm", "orm")
    },  # fmt: skip
    # known maps we do not use
    **{k: _roles(None, note="not used") for k in (
        "emission", "emissive", "emit", "cavity", "translucency", "transmission", "fuzz", "sheen",
        "idmap", "preview", "thumbnail", "thumb", "sphere", "curvature", "subsurface", "sss",
    )},  # fmt: skip
}
# Words that qualify a normal map's convention.
_QUALIFIERS = {"gl": "opengl", "ogl": "opengl", "opengl": "opengl", "dx": "directx", "directx": "directx"}
# Words that carry no meaning for the role: resolutions, bit depths, formats, variants, numbers.
_NOISE_RE = re.compile(r"^(\d+k|\d+|\d+bit|jpg|jpeg|png|tif|tiff|exr|hdr|var\d*|lod\d*|hq|lq|hi|lo|map|tex|texture|srgb|linear|raw)$")


def name_tokens(stem: str) -> list[str]:
    """Lower-case words of a file stem, split at non-alphanumerics and camelCase boundaries.

    ``"Planks014_2K-JPG_NormalGL"`` -> ``["planks014", "2k", "jpg", "normal", "gl"]``.
    """
    # Lower-cased first, or the camelCase split would cut "DirectX" and "OpenGL" in two.
    spaced = re.sub(r"(?i)(directx|opengl)", lambda m: f" {m.group(1).lower()} ", stem)
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", spaced)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)  # "GLNormal" -> "GL Normal"
    return [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]


def classify_map_name(file_name: str) -> tuple[MapRole, ...] | None:
    """Roles of an image file by its name; ``None`` when the name names no map.

    The role is read from the end of the stem: noise words (``2K``, ``JPG``, numbers) and
    normal-map qualifiers (``GL``, ``DX``, ``OpenGL``, ``DirectX``) are skipped, then the last
    one, two or three words are looked up joined (``Ambient Occlusion`` -> ``ambientocclusion``).
    Only the last meaningful word counts, so a material name such as ``Metal_Plate_Color`` is
    colour, not metallic.
    """
    path = Path(file_name)
    if path.suffix.lower() not in READ_EXTENSIONS:
        return None
    tokens = name_tokens(path.stem)
    convention = None
    end = len(tokens)
    while end > 0 and (_NOISE_RE.match(tokens[end - 1]) or tokens[end - 1] in _QUALIFIERS):
        convention = convention or _QUALIFIERS.get(tokens[end - 1])
        end -= 1
    for width in (3, 2, 1):
        if end - width < 0:
            continue
        roles = _KEYWORDS.get("".join(tokens[end - width : end]))
        if roles is None:
            continue
        if convention and roles[0].prop == "normal":
            transform = "flip_green" if convention == "directx" else ""
            return (MapRole("normal", 0 if convention == "opengl" else 2, transform, f"{convention} (by name)"),)
        return roles
    return None


# ----------------------------------------------------------------------------- reports and materials


@dataclass
class PBRReport:
    """What ``read_pbr`` found in a folder.

    ``found``: property -> file it came from (``"Gloss.png (inverted)"``); ``missing``: properties
    without a map; ``notes``: conversions and choices made; ``ignored``: files not used, with why;
    ``unreadable``: file -> reason for map files that could not be decoded.
    """

    folder: str
    found: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ignored: dict[str, str] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)

    def format(self) -> str:
        lines = [f"{self.folder}:"]
        lines += [f"  {prop:<9} <- {src}" for prop, src in self.found.items()]
        if self.missing:
            lines.append(f"  missing: {', '.join(self.missing)}")
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  unreadable: {f}: {why}" for f, why in self.unreadable.items()]
        lines += [f"  ignored: {f} ({why})" for f, why in self.ignored.items()]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"found": self.found, "missing": self.missing, "notes": self.notes,
                "ignored": self.ignored, "unreadable": self.unreadable}  # fmt: skip


@dataclass
class PBRMaterial:
    """A PBR material in memory, in our conventions.

    ``maps``: ``"color"`` ``(H, W, 3)`` uint8 sRGB; ``"normal"`` ``(H, W, 3)`` uint8 OpenGL
    tangent-space normal; scalar properties ``(H, W)`` uint8 (see :data:`SCALAR_PROPERTIES`).
    Maps of a folder read from disk may differ in size (users' folders mix resolutions);
    :meth:`resized` brings them to one size. ``meta`` is the folder's ``meta.json`` (or ``{}``).
    """

    name: str
    maps: dict[str, np.ndarray]
    report: PBRReport
    folder: Path | None = None
    meta: dict = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the colour map."""
        return self.maps["color"].shape[:2]

    def resized(self, height: int, width: int) -> dict[str, np.ndarray]:
        """Every map at ``height x width`` (area averaging when shrinking, bilinear when enlarging)."""
        return {k: resize_map(v, height, width) for k, v in self.maps.items()}

    def complete(self, props: tuple[str, ...] = PROPERTIES) -> dict[str, np.ndarray]:
        """Maps of ``props``, missing ones filled with their defaults at the colour map's size."""
        h, w = self.size
        return {p: self.maps[p] if p in self.maps else default_map(p, h, w) for p in props}


def default_map(prop: str, height: int, width: int) -> np.ndarray:
    """The map a missing property stands for: ``(H, W)`` uint8 constant, or ``(H, W, 3)`` flat normal."""
    if prop == "normal":
        return np.broadcast_to(np.array(FLAT_NORMAL, np.uint8), (height, width, 3)).copy()
    if prop not in DEFAULT_VALUES:
        raise ValueError(f"no default for property {prop!r}; properties with defaults: {', '.join(DEFAULT_VALUES)}, normal")
    return np.full((height, width), DEFAULT_VALUES[prop], np.uint8)


def resize_map(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an 8-bit map to ``height x width`` (area averaging when shrinking, bilinear otherwise)."""
    if image.shape[:2] == (height, width):
        return image
    shrink = width * height < image.shape[0] * image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


# ----------------------------------------------------------------------------- normals


def normal_planes(normal_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode an RGB normal map to the x, y, z planes of unit vectors.

    Args:
        normal_rgb: ``(H, W, 3)`` uint8, ``rgb = (n * 0.5 + 0.5) * 255``.

    Returns:
        Three ``(H, W)`` float32 planes of unit vectors (zero-length texels: ``(0, 0, 1)``).
        Planes rather than an ``(H, W, 3)`` array: reductions over the last axis of
        interleaved data are several times slower.
    """
    _check_rgb(normal_rgb, "normal_rgb")
    planes = [p.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0) for p in cv2.split(normal_rgb)]
    return _unit_planes(*planes)


def _unit_planes(x: np.ndarray, y: np.ndarray, z: np.ndarray, min_length: float = 1e-6):
    length2 = x * x + y * y + z * z
    short = length2 < np.float32(min_length * min_length)
    inv = np.float32(1.0) / np.sqrt(np.where(short, np.float32(1.0), length2))
    x, y, z = x * inv, y * inv, z * inv
    if short.any():
        x[short], y[short], z[short] = 0.0, 0.0, 1.0
    return x, y, z


def encode_normal(x: np.ndarray, y: np.ndarray, z: np.ndarray, min_length: float = 1e-6) -> np.ndarray:
    """Encode vector planes (normalised here) as an RGB uint8 normal map.

    Args:
        x, y, z: ``(H, W)`` float32 vector components.
        min_length: vectors shorter than this become ``(0, 0, 1)``.

    Returns:
        ``(H, W, 3)`` uint8, ``round((n + 1) * 127.5)`` per channel.
    """
    unit = _unit_planes(np.asarray(x, np.float32), np.asarray(y, np.float32), np.asarray(z, np.float32), min_length)
    # convertScaleAbs rounds to nearest like np.rint; its abs() is harmless on values in [0, 255].
    return cv2.merge([cv2.convertScaleAbs(c, alpha=127.5, beta=127.5) for c in unit])


def normal_to_vectors(normal_rgb: np.ndarray) -> np.ndarray:
    """:func:`normal_planes` stacked: ``(H, W, 3)`` float32 unit vectors."""
    return np.dstack(normal_planes(normal_rgb))


def vectors_to_normal(v: np.ndarray) -> np.ndarray:
    """Encode ``(H, W, 3)`` float vectors (normalised here) as an RGB uint8 normal map."""
    if v.ndim != 3 or v.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) vectors, got shape {v.shape}")
    return encode_normal(*cv2.split(np.asarray(v, np.float32)))


def flip_green(normal_rgb: np.ndarray) -> np.ndarray:
    """DirectX <-> OpenGL: the green (Y) channel inverted, ``255 - G``."""
    out = normal_rgb.copy()
    out[:, :, 1] = 255 - out[:, :, 1]
    return out


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def normal_convention_from_height(normal_rgb: np.ndarray, height: np.ndarray, min_corr: float = 0.2) -> tuple[str | None, float, float]:
    """Tell OpenGL from DirectX normals by comparing them with the height map's slopes.

    For a height field the normal is ``(-dh/dx, -dh/dy_up, 1)``; with image rows pointing down,
    OpenGL's green rises with ``+dh/drow`` and DirectX's falls. Red follows ``-dh/dx`` in both
    conventions, so when red correlates clearly its sign tells a height map from a depth map
    (inverted height); when it does not (e.g. planks with horizontal grooves only) the map is
    taken to be a height map.

    Args:
        normal_rgb: ``(H, W, 3)`` uint8; height: ``(h, w)`` uint8 (resized to the normal's size).
        min_corr: the green correlation must reach this magnitude (and the red one, to count).

    Returns:
        ``(convention or None, corr_red, corr_green)``: ``"opengl"``, ``"directx"`` or None when
        undecided; ``corr_red = corr(R, -dh/dx)``, ``corr_green = corr(G, +dh/drow)``.
    """
    # At most 256 px: the slopes of interest are coarse and JPEG noise averages out.
    scale = min(1.0, 256.0 / max(normal_rgb.shape[:2]))
    h, w = max(2, round(normal_rgb.shape[0] * scale)), max(2, round(normal_rgb.shape[1] * scale))
    n = resize_map(normal_rgb, h, w).astype(np.float32)
    hf = cv2.GaussianBlur(resize_map(height, h, w).astype(np.float32), (3, 3), 0)
    d_row, d_col = np.gradient(hf)
    corr_red, corr_green = _corr(n[:, :, 0], -d_col), _corr(n[:, :, 1], d_row)
    if abs(corr_green) < min_corr:
        return None, corr_red, corr_green
    height_is_depth = corr_red <= -min_corr
    return ("opengl" if (corr_green > 0) != height_is_depth else "directx"), corr_red, corr_green


# ----------------------------------------------------------------------------- reading


def _check_rgb(a: np.ndarray, name: str) -> None:
    if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{name} must be an (H, W, 3) uint8 array, got {_describe(a)}")


def _describe(a) -> str:
    return f"{a.dtype} array of shape {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__


_REDUCED = {
    False: ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2)),
    True: ((8, cv2.IMREAD_REDUCED_GRAYSCALE_8), (4, cv2.IMREAD_REDUCED_GRAYSCALE_4), (2, cv2.IMREAD_REDUCED_GRAYSCALE_2)),
}


def _decode_flag(path: Path, max_side: int | None, gray: bool) -> int:
    """imdecode flag: JPEG decodes directly at 1/2, 1/4 or 1/8 when that still leaves at least
    ``max_side`` pixels, and straight to luma for gray maps (both much faster than decoding
    everything, then converting and shrinking)."""
    base = cv2.IMREAD_ANYDEPTH | (cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_ANYCOLOR)
    if max_side is None or path.suffix.lower() not in (".jpg", ".jpeg"):
        return base
    try:
        info = read_image_info(path)
    except ValueError:
        return base
    longest = max(info.width, info.height)
    for factor, flag in _REDUCED[gray]:
        if longest // factor >= max_side:
            return flag
    return base


def read_map_file(path: str | os.PathLike, max_side: int | None = None, gray: bool = False) -> np.ndarray:
    """Decode one map file to 8 bits, EXIF orientation applied.

    Args:
        path: image file (JPEG, PNG, TIFF, BMP, WebP; EXR/HDR if this OpenCV build reads them).
        max_side: if given, the result is shrunk (area averaging) so its longest side is at most
            this; JPEGs are decoded at reduced scale directly.
        gray: decode to one channel (luma of colour files).

    Returns:
        ``(H, W)`` (``gray`` or single-channel files) or ``(H, W, 3)`` uint8 (RGB order; alpha
        dropped). 16-bit data is scaled by 1/257 (65535 -> 255); float data (EXR, float TIFF)
        is taken as linear [0, 1] values and clipped, or min-max scaled when it exceeds [0, 1]
        (displacement in scene units).

    Raises:
        ValueError: unreadable file, with the reason (names the file).
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    flag = _decode_flag(path, max_side, gray)
    # ANYDEPTH|ANYCOLOR keeps 16-bit and float data and, unlike IMREAD_UNCHANGED, applies the
    # EXIF orientation (as matseg.io.images.read_image_rgb does for photos).
    try:
        img = cv2.imdecode(data, flag) if data.size else None
    except cv2.error as exc:
        img = None
        reason = str(exc).strip().splitlines()[-1]
    else:
        reason = "empty file" if not data.size else "not a decodable image (corrupt or unsupported)"
    if img is None:
        if path.suffix.lower() == ".exr":
            reason = "EXR is not supported by this OpenCV build (no OpenEXR); convert it to 16-bit PNG or TIFF"
        raise ValueError(f"{path}: {reason}")
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.dtype == np.uint16:
        img = np.clip(np.rint(img / 257.0), 0, 255).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        f = np.nan_to_num(img.astype(np.float32))
        lo, hi = float(f.min()), float(f.max())
        if hi > 1.0 or lo < 0.0:
            f = (f - lo) / (hi - lo) if hi > lo else np.zeros_like(f)
        img = np.clip(np.rint(f * 255.0), 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ValueError(f"{path}: unsupported pixel type {img.dtype}")
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if max_side is not None and max(img.shape[:2]) > max_side:
        s = max_side / max(img.shape[:2])
        img = resize_map(img, max(1, round(img.shape[0] * s)), max(1, round(img.shape[1] * s)))
    return np.ascontiguousarray(img)


def _to_gray(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def _apply(img: np.ndarray, prop: str, transform: str, path: Path) -> np.ndarray:
    """Convert a decoded file to the property's form (``ValueError`` naming the file if impossible)."""
    if prop in ("color", "normal"):
        if img.ndim == 2:
            if prop == "normal":
                raise ValueError(f"{path}: a normal map needs 3 channels, the file has 1")
            img = np.repeat(img[:, :, None], 3, axis=2)
        return flip_green(img) if transform == "flip_green" else img
    if transform.startswith("channel"):
        if img.ndim == 2:
            raise ValueError(f"{path}: a packed ARM/ORM map needs 3 channels, the file has 1")
        return np.ascontiguousarray(img[:, :, int(transform[-1])])
    gray = _to_gray(img)
    return 255 - gray if transform == "invert" else gray


@dataclass
class MaterialFiles:
    """The files of one folder by role, before decoding (see :func:`scan_material`)."""

    folder: Path
    candidates: dict[str, list[tuple[MapRole, Path]]]
    ignored: dict[str, str]
    meta_file: Path | None = None

    @property
    def has_color(self) -> bool:
        return bool(self.candidates.get("color"))


def scan_material(folder: str | os.PathLike) -> MaterialFiles:
    """Classify the files of ``folder`` by name only (no decoding).

    Candidates of each property are ordered best first: rank, then lossless formats, then name
    (so the choice never depends on the directory listing order).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PBRReadError(f"{folder}: not a folder" if folder.exists() else f"{folder}: folder does not exist")
    candidates: dict[str, list[tuple[MapRole, Path]]] = {}
    ignored: dict[str, str] = {}
    meta_file = None
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not entry.is_file() or entry.name.startswith("."):
            continue
        if entry.name == META_NAME:
            meta_file = Path(entry.path)
            continue
        roles = classify_map_name(entry.name)
        if roles is None:
            if Path(entry.name).suffix.lower() in READ_EXTENSIONS:
                ignored[entry.name] = "name matches no map convention"
            continue
        for role in roles:
            if role.prop is None:
                ignored[entry.name] = role.note
            else:
                candidates.setdefault(role.prop, []).append((role, Path(entry.path)))
    for items in candidates.values():
        items.sort(key=lambda rp: (rp[0].rank, _EXTENSION_PREFERENCE.get(rp[1].suffix.lower(), 9), rp[1].name.lower()))
    return MaterialFiles(folder, candidates, ignored, meta_file)


def read_pbr(
    folder: str | os.PathLike,
    max_side: int | None = None,
    normal_convention: str = "auto",
    props: tuple[str, ...] = PROPERTIES,
) -> PBRMaterial:
    """Read a PBR material folder of any common naming convention.

    Args:
        folder: the material folder.
        max_side: shrink every map so its longest side is at most this (fast previews).
        normal_convention: ``"auto"``: a ``GL``/``DX`` qualifier in the name decides, else our own
            layout's meta.json (OpenGL), else the height map's slopes
            (:func:`normal_convention_from_height`), else OpenGL is assumed; ``"name"``: the
            qualifier or OpenGL; ``"opengl"``/``"directx"``: force.
        props: properties to read (the base colour is always read).

    Returns:
        A :class:`PBRMaterial`; ``material.report`` lists the file behind each property, the
        conversions (gloss inverted, DirectX green flipped, ARM unpacked, 16-bit scaled), missing
        properties, ignored and unreadable files.

    Raises:
        PBRReadError: not a folder, or no readable base-colour map (message names the folder
        and lists the files seen).
    """
    if normal_convention not in ("auto", "name", "opengl", "directx"):
        raise ValueError(f"normal_convention must be auto, name, opengl or directx, got {normal_convention!r}")
    files = scan_material(folder)
    folder = files.folder
    report = PBRReport(str(folder), ignored=dict(files.ignored))
    meta = _read_meta(files.meta_file, report)
    ours = meta.get("format") == FORMAT_NAME
    decoded: dict[tuple[Path, bool], np.ndarray] = {}
    maps: dict[str, np.ndarray] = {}
    roles: dict[str, MapRole] = {}
    used: dict[str, str] = {}  # property -> file name
    for prop in ("color", *[p for p in props if p != "color"]):
        for role, path in files.candidates.get(prop, []):
            if path.name in report.unreadable:
                continue
            # Scalar maps decode straight to one channel, unless a channel of the file is wanted.
            key = (path, prop in SCALAR_PROPERTIES and not role.transform.startswith("channel"))
            try:
                if key not in decoded:
                    decoded[key] = read_map_file(path, max_side, gray=key[1])
                maps[prop] = _apply(decoded[key], prop, "" if prop == "normal" else role.transform, path)
            except ValueError as exc:
                report.unreadable[path.name] = str(exc).split(": ", 1)[-1]
                continue
            roles[prop] = role
            used[prop] = path.name
            how = f" ({role.note})" if role.note and prop != "normal" else ""
            report.found[prop] = path.name + how
            break
    for prop, candidates in files.candidates.items():
        for _, path in candidates:
            if path.name not in used.values() and path.name not in report.unreadable:
                why = f"{used[prop]} gives {prop}" if prop in used else f"{prop} not requested"
                report.ignored.setdefault(path.name, why)
    if "color" not in maps:
        seen = sorted(p.name for p in folder.iterdir() if p.is_file())
        why = "no file is named as a base-colour map (e.g. OriginColor, Color, BaseColor, Albedo, Diffuse)"
        if files.has_color:
            why = "no base-colour file could be decoded: " + "; ".join(f"{k}: {v}" for k, v in report.unreadable.items())
        raise PBRReadError(f"{folder}: not a PBR material: {why}; files: {', '.join(seen[:20]) or 'none'}")
    if roles["color"].rank == 3:
        report.notes.append(f"base colour from {used['color']} (AO baked in): no other colour map")
    if "normal" in maps:
        maps["normal"] = _orient_normal(maps, roles["normal"], normal_convention, ours, report)
    report.missing = [p for p in props if p not in maps]
    name = folder.name or folder.resolve().name
    return PBRMaterial(name, maps, report, folder, meta)


def _read_meta(path: Path | None, report: PBRReport) -> dict:
    if path is None:
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        report.unreadable[path.name] = f"invalid JSON ({exc})"
        return {}
    return meta if isinstance(meta, dict) else {}


def _orient_normal(maps: dict, role: MapRole, mode: str, ours: bool, report: PBRReport) -> np.ndarray:
    """Return the normal map in OpenGL convention, recording how the convention was decided."""
    normal = maps["normal"]
    if mode in ("opengl", "directx"):
        convention, why = mode, "forced"
    elif role.note:  # the file name carries a GL/DX qualifier
        convention, why = ("directx" if role.transform == "flip_green" else "opengl"), "by file name"
    elif ours:
        convention, why = "opengl", "matseg layout"
    elif mode == "auto" and "height" in maps:
        found, cr, cg = normal_convention_from_height(normal, maps["height"])
        convention = found or "opengl"
        why = (f"from the height map's slopes (corr red {cr:+.2f}, green {cg:+.2f})" if found
               else f"assumed: the height map does not decide (corr red {cr:+.2f}, green {cg:+.2f})")  # fmt: skip
    else:
        convention, why = "opengl", "assumed (no qualifier in the name)"
    report.notes.append(f"normal map is {'DirectX: green flipped to OpenGL' if convention == 'directx' else 'OpenGL'} ({why})")
    return flip_green(normal) if convention == "directx" else normal


# ----------------------------------------------------------------------------- finding materials


def find_materials(root: str | os.PathLike) -> tuple[list[Path], dict[str, str]]:
    """Material folders under ``root`` (``root`` itself may be one), by file names only.

    A folder is a material when one of its image files names a base colour. Folders with map
    files but no colour map are returned in the second value (folder -> reason). Hidden folders
    (atomic-write temporaries, ``.incomplete``) are skipped.

    Returns:
        ``(materials sorted by path, bad folders)``.

    Raises:
        FileNotFoundError / NotADirectoryError: ``root`` is missing or not a folder.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: folder does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder")
    found: list[Path] = []
    bad: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        props = set()
        for f in filenames:
            for role in classify_map_name(f) or ():
                if role.prop:
                    props.add(role.prop)
        if "color" in props:
            found.append(Path(dirpath))
        elif props:
            bad[dirpath] = f"no base-colour map (found {', '.join(sorted(props))})"
    return sorted(found, key=lambda p: p.as_posix()), bad


def is_pbr_finished(folder: str | os.PathLike) -> bool:
    """True if ``folder`` holds ``Finished.txt`` (any case)."""
    try:
        return any(e.name.lower() == FINISHED_NAME.lower() for e in os.scandir(folder) if e.is_file())
    except (FileNotFoundError, NotADirectoryError):
        return False


# ----------------------------------------------------------------------------- writing


def validate_maps(maps: dict[str, np.ndarray]) -> tuple[int, int]:
    """Check a map dict for :func:`write_pbr`; returns ``(H, W)``.

    Requires ``"color"`` ``(H, W, 3)`` uint8; ``"normal"`` ``(H, W, 3)`` uint8; scalar maps
    ``(H, W)`` uint8, all of the colour map's size. Errors show what was received.
    """
    unknown = sorted(set(maps) - set(PROPERTIES))
    if unknown:
        raise ValueError(f"unknown map(s) {unknown}; valid: {', '.join(PROPERTIES)}")
    if "color" not in maps:
        raise ValueError(f"a material needs a 'color' map, got {sorted(maps)}")
    _check_rgb(maps["color"], "color")
    h, w = maps["color"].shape[:2]
    for prop, m in maps.items():
        want = (h, w, 3) if prop in ("color", "normal") else (h, w)
        if not isinstance(m, np.ndarray) or m.dtype != np.uint8 or m.shape != want:
            raise ValueError(f"map {prop!r} must be uint8 of shape {want}, got {_describe(m)}")
    return h, w


# PNG: fastest zlib level with run-length matching, and the "Sub" row filter: property and normal
# maps of natural textures predict well from the left neighbour (measured on the published 512^2
# maps: 17 % smaller than unfiltered at the same ~5 ms per normal map; libpng's defaults: 13 ms).
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.10
    _PNG_PARAMS += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB]


def _encode_map(image: np.ndarray, ext: str, jpeg_quality: int) -> bytes:
    if ext != ".png":
        return encode_image(image, ext, jpeg_quality=jpeg_quality)
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, buf = cv2.imencode(".png", bgr, _PNG_PARAMS)
    if not ok:
        raise ValueError(f"could not encode a {image.shape} map as PNG")
    return buf.tobytes()


def write_pbr(folder: str | os.PathLike, maps: dict[str, np.ndarray], meta: dict | None = None, jpeg_quality: int = 95) -> Path:
    """Write a material in our layout, atomically (temporary folder, rename; ``Finished.txt`` last).

    Args:
        folder: final folder; an existing one is moved aside to ``.incomplete/`` (never deleted).
        maps: see :func:`validate_maps`; absent optional maps are not written.
        meta: JSON-serialisable record (seed, sources, draws, parameters); ``format``,
            ``format_version``, ``normal_convention`` and ``files`` are added.
        jpeg_quality: quality of ``OriginColor.jpg``.

    Returns:
        The folder path.
    """
    validate_maps(maps)
    files = {p: LAYOUT_FILES[p] for p in PROPERTIES if p in maps}
    full_meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "normal_convention": "opengl",
                 "files": files, **(meta or {})}  # fmt: skip
    # Encode everything before touching the disk, so a bad map leaves no folder behind.
    blobs = {name: _encode_map(maps[p], Path(name).suffix, jpeg_quality) for p, name in files.items()}
    blobs[META_NAME] = json_bytes(full_meta)
    return write_folder(folder, blobs, FINISHED_NAME)
