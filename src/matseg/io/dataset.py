"""The MatSeg training-sample format: one folder per scene, read and written.

Layout (identical to the published 3D dataset, plus our ``meta.json``)::

    <root>/<name>/
      RGB__RGB.jpg            RGB JPEG
      mask001.png ...         8-bit gray PNG per material, value = material weight * 255
      ObjectMaskOcluded.png   8-bit gray ROI, value = visible coverage * roi_full_value
      meta.json               ours only: format, version, roi_full_value, masks, generator info
      Finished.txt            empty, written last; a folder without it is unfinished

Two flavours are read:

* ``source == "matseg"`` (``meta.json`` present): written by :func:`write_sample`; the ROI
  file is full at ``meta["roi_full_value"]`` (255) and ``sum(masks) == roi`` up to rounding.
* ``source == "published"`` (no ``meta.json``): the published 3D samples and the reference
  2D generator's output. The published ROI file is full at ~206 (never 255, Filmic-mapped
  emission), its masks are not normalised (several can be 255 at one pixel) and values
  1-14 are encoder noise (the published ``ReduceDatasetSize`` step leaves 0 or >= 15).

In both cases the reader turns masks into per-pixel *fractions* (``mask / sum(masks)``)
inside the ROI, ``roi = roi_weight >= 0.5``, i.e. the ROI file thresholded at half its full
value (for the published data that is ~103, in line with the "~100" a robust reader should
use; the reference reader's ``> 200`` would cut the anti-aliased border).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from matseg.io.atomic import json_bytes, write_folder
from matseg.io.images import ImageReadError, decode_gray_u8, decode_image_rgb, encode_image, read_image_info
from matseg.io.safe_pickle import UnsafePickleError, loads_plain_pickle

__all__ = [
    "DatasetFormatError",
    "RawSample",
    "Sample",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "RGB_NAME",
    "ROI_NAME",
    "FINISHED_NAME",
    "META_NAME",
    "mask_file_name",
    "list_mask_files",
    "is_finished",
    "find_samples",
    "find_unfinished",
    "scan_dataset",
    "read_raw_sample",
    "raw_sample_from_files",
    "SampleFile",
    "SampleRef",
    "sample_from_raw",
    "read_sample",
    "write_sample",
    "encode_sample",
    "dominant_pixel_counts",
    "default_min_visible_pixels",
    "sample_visible_materials",
]

logger = logging.getLogger(__name__)

FORMAT_NAME = "matseg"
FORMAT_VERSION = 1

RGB_NAME = "RGB__RGB.jpg"
ROI_NAME = "ObjectMaskOcluded.png"
FINISHED_NAME = "Finished.txt"
META_NAME = "meta.json"
CAMERA_NAME = "CameraParameters.json"
SCENE_DATA_NAME = "scene_data.pkl"
NO_GROUND_PLANE_NAME = "NoGroundPlane.txt"

#: Full ROI value written by :func:`write_sample`.
ROI_FULL_VALUE = 255
#: Published masks hold 0 or >= 15; smaller values are compression noise and are zeroed.
PUBLISHED_NOISE_LEVEL = 15
#: Raw ROI values at or above this are "inside" when estimating the published full value.
ROI_CANDIDATE_LEVEL = 100
#: ``roi = roi_weight >= ROI_THRESHOLD`` (half the full value).
ROI_THRESHOLD = 0.5
#: A material is "visible" where its fraction exceeds this (strictly: dominant).
DOMINANT_FRACTION = 0.5

# Tolerance of write_sample's |sum(weights) - roi| check: half a quantisation level keeps the
# written files within matseg check's |sum(masks) - roi| <= ceil(M/2) + 1 levels.
_SUM_TOLERANCE = 0.5 / 255.0
_RANGE_EPS = 1e-4

_MASK_NUM_RE = re.compile(r"(\d+)")


class DatasetFormatError(ValueError):
    """A sample folder does not follow the format; the message names the offending file."""


# ----------------------------------------------------------------------------- data classes


@dataclass
class RawSample:
    """A sample's files as stored, before any normalisation.

    Attributes:
        path: the sample folder.
        image: ``(H, W, 3)`` uint8 RGB.
        masks: ``(M, H, W)`` uint8, one per mask file, values as stored (0-255).
        roi_raw: ``(H, W)`` uint8, ``ObjectMaskOcluded.png`` as stored.
        mask_names: mask file names, in numeric order.
        mask_modes: Pillow mode of each mask file (``"L"`` = 8-bit single channel).
        roi_mode: Pillow mode of the ROI file.
        meta: parsed ``meta.json`` (ours) or the published side files (see :class:`Sample`).
        source: ``"matseg"`` or ``"published"``.
        warnings: non-fatal problems met while reading (unsafe/corrupt side files).
    """

    path: Path
    image: np.ndarray
    masks: np.ndarray
    roi_raw: np.ndarray
    mask_names: list[str]
    mask_modes: list[str]
    roi_mode: str
    meta: dict
    source: str
    warnings: list[str] = field(default_factory=list)


@dataclass
class Sample:
    """One training sample, normalised.

    Attributes:
        path: the sample folder.
        image: ``(H, W, 3)`` uint8 RGB.
        fractions: ``(M, H, W)`` float32 in [0, 1]; inside ``roi`` they sum to 1 per pixel,
            0 outside ``roi``.
        roi: ``(H, W)`` bool, ``roi_weight >= 0.5`` minus pixels no mask covers.
        roi_weight: ``(H, W)`` float32 in [0, 1], ROI file / ``roi_full_value``, clipped.
        mask_names: mask file names in numeric order (``fractions[i]`` <-> ``mask_names[i]``).
        meta: ``meta.json`` for our samples; for published ones ``{"format": "published",
            "camera": ..., "scene_data": ..., "no_ground_plane": bool}`` (side files only when
            present and safely readable). Both get ``roi_full_value`` and
            ``roi_pixels_without_material``, plus ``warnings`` when something was skipped.
        source: ``"matseg"`` or ``"published"``.
    """

    path: Path
    image: np.ndarray
    fractions: np.ndarray
    roi: np.ndarray
    roi_weight: np.ndarray
    mask_names: list[str]
    meta: dict
    source: str

    @property
    def num_materials(self) -> int:
        return int(self.fractions.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return int(self.image.shape[0]), int(self.image.shape[1])


# ----------------------------------------------------------------------------- names and discovery


def mask_file_name(index: int) -> str:
    """File name of the ``index``-th material mask (1-based): ``mask001.png``, ..., ``mask1000.png``."""
    if index < 1:
        raise ValueError(f"mask indices start at 1, got {index}")
    return f"mask{index:03d}.png"


def _files_by_lower_name(folder: Path) -> dict[str, Path]:
    """Regular files of ``folder`` keyed by lower-case name (the published data mixes cases)."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return {}
    return {e.name.lower(): Path(e.path) for e in entries if e.is_file()}


def _is_mask_name(name: str) -> bool:
    return name.lower().startswith("mask") and name.lower().endswith(".png")


def _mask_sort_key(path: Path) -> tuple[float, str]:
    # Numeric, so mask2 < mask10 and the unpadded mask0/mask1 of the 2D generator work too.
    m = _MASK_NUM_RE.search(path.name[4:])
    return (int(m.group(1)) if m else math.inf, path.name)


def list_mask_files(folder: str | os.PathLike) -> list[Path]:
    """Mask files of a sample: ``mask*.png`` (case-insensitive), sorted by the number in the name."""
    files = _files_by_lower_name(Path(folder))
    masks = [p for p in files.values() if _is_mask_name(p.name)]
    unnumbered = [p.name for p in masks if _mask_sort_key(p)[0] == math.inf]
    if unnumbered:
        logger.warning("%s: mask files without a number sort last: %s", folder, unnumbered)
    return sorted(masks, key=_mask_sort_key)


def is_finished(folder: str | os.PathLike) -> bool:
    """True if ``folder`` holds the ``Finished.txt`` marker (any case, e.g. ``finished.txt``)."""
    return FINISHED_NAME.lower() in _files_by_lower_name(Path(folder))


def _natural_key(root: Path, path: Path) -> tuple:
    # "2" < "10"; a parent sorts before its nested sample ("1" < "1/1").
    rel = path.relative_to(root)
    return tuple(
        tuple(int(tok) if i % 2 else tok.lower() for i, tok in enumerate(re.split(r"(\d+)", part)))
        for part in rel.parts
    )


def scan_dataset(root: str | os.PathLike, nested: bool = True) -> tuple[list[Path], list[Path]]:
    """One walk of ``root``: ``(find_samples(root), find_unfinished(root))``.

    A shard folder (``index.json`` of ``matseg shards pack``) gives its samples as
    :class:`SampleRef` objects and no unfinished ones.
    """
    root = Path(root)
    if (root / "index.json").is_file():
        from matseg.io.shards import is_shard_folder, shard_samples

        if is_shard_folder(root):
            return shard_samples(root), []
    if not root.exists():
        raise FileNotFoundError(f"{root}: folder does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder")
    finished: list[Path] = []
    unfinished: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        # Hidden folders are atomic-write temporaries (.tmp-*) or set-aside leftovers (.incomplete).
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if not nested and here != root:
            dirnames[:] = []  # one level below root only, like the reference reader
        lower = {f.lower() for f in filenames}
        has_rgb = RGB_NAME.lower() in lower
        if has_rgb and FINISHED_NAME.lower() in lower:
            finished.append(here)
        elif has_rgb or ROI_NAME.lower() in lower or any(_is_mask_name(f) for f in lower):
            unfinished.append(here)
    finished.sort(key=lambda p: _natural_key(root, p))
    unfinished.sort(key=lambda p: _natural_key(root, p))
    return finished, unfinished


def find_samples(root: str | os.PathLike, nested: bool = True) -> list[Path]:
    """Finished sample folders under ``root`` (``root`` itself may be one).

    A sample folder holds ``RGB__RGB.jpg`` and ``Finished.txt`` (any case). Hidden folders
    (``.tmp-*``, ``.incomplete``) are skipped.

    Args:
        root: dataset folder.
        nested: search the whole tree (finds the published nested second samples such as
            ``1/1``); if False, only ``root`` and its direct sub-folders.

    Returns:
        Folders in natural order (``2`` before ``10``, a parent before its nested sample).

    Raises:
        FileNotFoundError / NotADirectoryError: ``root`` is missing or not a folder.
    """
    return scan_dataset(Path(root), nested)[0]


def find_unfinished(root: str | os.PathLike, nested: bool = True) -> list[Path]:
    """Folders that hold sample files (RGB, ROI or masks) but no ``Finished.txt``; natural order."""
    return scan_dataset(Path(root), nested)[1]


# ----------------------------------------------------------------------------- reading


def _check_size(path: Path, shape: tuple[int, ...], ref: Path, ref_shape: tuple[int, ...]) -> None:
    if shape[:2] != ref_shape[:2]:
        raise DatasetFormatError(
            f"{path}: size {shape[1]}x{shape[0]} (WxH) differs from {ref.name} {ref_shape[1]}x{ref_shape[0]}"
        )


def _read_json(f: SampleFile) -> object:
    try:
        return json.loads(f.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetFormatError(f"{f.path}: not readable JSON ({exc})") from None


def _published_meta(files: dict[str, "SampleFile"], warnings: list[str]) -> dict:
    meta: dict = {"format": "published"}
    camera = files.get(CAMERA_NAME.lower())
    if camera is not None:
        try:
            meta["camera"] = _read_json(camera)
        except DatasetFormatError as exc:
            warnings.append(str(exc))
    scene = files.get(SCENE_DATA_NAME.lower())
    if scene is not None:
        try:
            meta["scene_data"] = loads_plain_pickle(scene.read_bytes(), source=str(scene.path))
        except UnsafePickleError as exc:
            warnings.append(f"scene_data omitted: {exc}")
        except Exception as exc:  # corrupt pickle: the images are still usable
            warnings.append(f"scene_data omitted: {exc}")
    meta["no_ground_plane"] = NO_GROUND_PLANE_NAME.lower() in files
    return meta


class SampleRef:
    """A sample that is not a folder (a member of a shard, :mod:`matseg.io.shards`): what
    :func:`find_samples` lists for a shard folder and every reader accepts like a folder."""

    name: str

    @property
    def path(self) -> Path:
        """What records and messages call the sample (e.g. ``SHARDS/shard-000000.tar/000012``)."""
        raise NotImplementedError

    def read_raw(self) -> RawSample:
        raise NotImplementedError

    def relative_name(self) -> str:
        """The sample's path within its dataset (``000012``, ``1/1``)."""
        raise NotImplementedError

    def version(self) -> str:
        """A string that changes when the stored sample changes (a content hash of its shard)."""
        raise NotImplementedError


def read_raw_sample(folder: str | os.PathLike | SampleRef) -> RawSample:
    """Read a sample's files exactly as stored (no thresholds, no normalisation).

    ``folder`` is a sample folder or a :class:`SampleRef` (a sample inside a shard).

    Raises:
        DatasetFormatError: missing RGB/ROI/mask files, unreadable images, size mismatches
            between image, masks and ROI, unreadable or foreign ``meta.json``. The message
            names the file (and both sizes for mismatches).
    """
    if isinstance(folder, SampleRef):
        return folder.read_raw()
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetFormatError(f"{folder}: not a sample folder (missing or not a directory)")
    return raw_sample_from_files(folder, {k: SampleFile(p) for k, p in _files_by_lower_name(folder).items()})


@dataclass(frozen=True)
class SampleFile:
    """One file of a sample: its path (where it is, or what messages call a shard member) and,
    for a member already in memory, its bytes."""

    path: Path
    data: bytes | None = None

    def read_bytes(self) -> bytes:
        return self.path.read_bytes() if self.data is None else self.data


def _decode_checked(f: SampleFile, decode, what: str):
    try:
        return decode(f.read_bytes(), f.path)
    except OSError as exc:
        raise DatasetFormatError(f"{f.path}: cannot read ({exc.strerror or exc}) ({what})") from None
    except ImageReadError as exc:
        raise DatasetFormatError(f"{exc} ({what})") from None


def _image_mode(data: bytes, path: Path) -> str:
    return read_image_info(path, data).mode


def raw_sample_from_files(folder: Path, files: dict[str, SampleFile]) -> RawSample:
    """:func:`read_raw_sample` of a sample's files given as ``{lower-case name: SampleFile}``
    (a folder's files, or the members of a shard; ``folder`` names the sample in messages)."""
    rgb = files.get(RGB_NAME.lower())
    roi = files.get(ROI_NAME.lower())
    if rgb is None or roi is None:
        raise DatasetFormatError(f"{folder / (RGB_NAME if rgb is None else ROI_NAME)}: missing")
    mask_files = sorted((f for f in files.values() if _is_mask_name(f.path.name)), key=lambda f: _mask_sort_key(f.path))
    if not mask_files:
        raise DatasetFormatError(f"{folder / 'mask001.png'}: missing (no mask*.png files)")

    image = _decode_checked(rgb, lambda data, path: decode_image_rgb(data, str(path)), "sample image")
    masks, modes = [], []
    for f in mask_files:
        modes.append(_decode_checked(f, _image_mode, "mask"))
        m = _decode_checked(f, decode_gray_u8, "mask")
        _check_size(f.path, m.shape, rgb.path, image.shape)
        masks.append(m)
    roi_mode = _decode_checked(roi, _image_mode, "ROI")
    roi_raw = _decode_checked(roi, decode_gray_u8, "ROI")
    _check_size(roi.path, roi_raw.shape, rgb.path, image.shape)

    warnings: list[str] = []
    meta_file = files.get(META_NAME.lower())
    if meta_file is not None:
        meta_path = meta_file.path
        meta = _read_json(meta_file)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise DatasetFormatError(f"{meta_path}: expected an object with format={FORMAT_NAME!r}, got {got!r}")
        source = "matseg"
    else:
        meta = _published_meta(files, warnings)
        source = "published"
    for w in warnings:
        logger.warning("%s: %s", folder, w)
    return RawSample(
        path=folder,
        image=image,
        masks=np.stack(masks),
        roi_raw=roi_raw,
        mask_names=[f.path.name for f in mask_files],
        mask_modes=modes,
        roi_mode=roi_mode,
        meta=meta,
        source=source,
        warnings=warnings,
    )


def _estimate_full_value(roi_raw: np.ndarray) -> int:
    """Median of the raw ROI values >= ROI_CANDIDATE_LEVEL (≈206 for the published data)."""
    hist = np.bincount(roi_raw.ravel(), minlength=256)[ROI_CANDIDATE_LEVEL:]
    n = int(hist.sum())
    if n == 0:
        return ROI_FULL_VALUE  # empty ROI: any value gives the same (empty) result
    return ROI_CANDIDATE_LEVEL + int(np.searchsorted(np.cumsum(hist), (n + 1) // 2))


def _roi_full_value(raw: RawSample) -> int | float:
    if raw.source == "published":
        return _estimate_full_value(raw.roi_raw)
    value = raw.meta.get("roi_full_value", ROI_FULL_VALUE)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= 255:
        raise DatasetFormatError(f"{raw.path / META_NAME}: roi_full_value must be a number in 1..255, got {value!r}")
    return value


def sample_from_raw(raw: RawSample) -> Sample:
    """Normalise stored masks into fractions and the ROI file into ``roi``/``roi_weight``.

    * published data: mask values < 15 are set to 0 (noise); ``roi_full_value`` = median of
      ROI values >= 100.
    * ``roi_weight = clip(roi_raw / roi_full_value, 0, 1)``; ``roi = roi_weight >= 0.5``.
    * ``fractions = masks / sum(masks)`` inside ``roi``, 0 outside; ROI pixels with mask sum
      0 leave the ROI (counted in ``meta["roi_pixels_without_material"]``).
    """
    full = _roi_full_value(raw)
    masks = raw.masks
    if raw.source == "published":
        masks = np.where(masks < PUBLISHED_NOISE_LEVEL, np.uint8(0), masks)
    roi_weight = np.clip(raw.roi_raw.astype(np.float32) / np.float32(full), 0.0, 1.0)
    roi = roi_weight >= ROI_THRESHOLD
    total = masks.sum(axis=0, dtype=np.uint32)
    uncovered = roi & (total == 0)
    n_uncovered = int(uncovered.sum())
    roi &= ~uncovered
    inv = np.where(roi, 1.0 / np.maximum(total, 1), 0.0).astype(np.float32)
    fractions = masks * inv[None]  # uint8 * float32 -> float32

    meta = dict(raw.meta)
    meta["roi_full_value"] = full
    meta["roi_pixels_without_material"] = n_uncovered
    if raw.warnings:
        meta["warnings"] = list(meta.get("warnings", [])) + raw.warnings
    return Sample(
        path=raw.path,
        image=raw.image,
        fractions=fractions,
        roi=roi,
        roi_weight=roi_weight,
        mask_names=list(raw.mask_names),
        meta=meta,
        source=raw.source,
    )


def read_sample(folder: str | os.PathLike | SampleRef) -> Sample:
    """Read one sample folder (ours or published) into a normalised :class:`Sample`.

    Raises:
        DatasetFormatError: see :func:`read_raw_sample`.
    """
    return sample_from_raw(read_raw_sample(folder))


# ----------------------------------------------------------------------------- visibility


def dominant_pixel_counts(sample: Sample) -> np.ndarray:
    """``(M,)`` int64: ROI pixels where each material's fraction exceeds 0.5."""
    # fractions are 0 outside the ROI, so no explicit ROI mask is needed.
    return (sample.fractions > DOMINANT_FRACTION).sum(axis=(1, 2), dtype=np.int64)


def default_min_visible_pixels(roi_pixels: int) -> int:
    """Default visibility threshold: ``max(16, 0.1 % of the ROI pixels)``."""
    return max(16, math.ceil(0.001 * roi_pixels))


def sample_visible_materials(sample: Sample, min_pixels: int | None = None) -> list[int]:
    """Indices (0-based, into ``sample.mask_names``) of visible materials.

    A material is visible if its fraction is > 0.5 on at least ``min_pixels`` ROI pixels
    (default :func:`default_min_visible_pixels` of the ROI size).
    """
    if min_pixels is None:
        min_pixels = default_min_visible_pixels(int(sample.roi.sum()))
    counts = dominant_pixel_counts(sample)
    return [i for i, c in enumerate(counts) if c >= min_pixels]


# ----------------------------------------------------------------------------- writing


def _describe(a: object) -> str:
    if isinstance(a, np.ndarray):
        return f"ndarray shape={a.shape} dtype={a.dtype}"
    return type(a).__name__


def _check_float_range(name: str, a: np.ndarray) -> None:
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{name} must be a float array in [0, 1], got {_describe(a)}")
    lo, hi = float(np.min(a)), float(np.max(a))  # NaN propagates into lo/hi
    if not (lo >= -_RANGE_EPS and hi <= 1 + _RANGE_EPS):
        raise ValueError(f"{name} must lie in [0, 1] (finite), got min={lo:.6g} max={hi:.6g}")


def _validate_inputs(image: np.ndarray, weights: np.ndarray, roi: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise TypeError(f"image must be an (H, W, 3) uint8 RGB array, got {_describe(image)}")
    h, w = image.shape[:2]
    if not isinstance(weights, np.ndarray) or weights.ndim != 3 or weights.shape[1:] != (h, w) or weights.shape[0] < 1:
        raise ValueError(f"weights must be an (M>=1, {h}, {w}) float array matching the image, got {_describe(weights)}")
    if not isinstance(roi, np.ndarray) or roi.shape != (h, w):
        raise ValueError(f"roi must be an ({h}, {w}) float array matching the image, got {_describe(roi)}")
    _check_float_range("weights", weights)
    _check_float_range("roi", roi)
    total = weights.sum(axis=0, dtype=np.float32)  # float32 is ample for a 0.5/255 tolerance
    if total.max() > 1 + _RANGE_EPS:
        y, x = np.unravel_index(int(np.argmax(total)), total.shape)
        raise ValueError(f"weights must sum to <= 1 per pixel, got {total[y, x]:.6g} at (row {y}, col {x})")
    dev = np.abs(total - roi)
    if dev.max() > _SUM_TOLERANCE:
        y, x = np.unravel_index(int(np.argmax(dev)), dev.shape)
        raise ValueError(
            f"roi must equal sum(weights) per pixel (within {_SUM_TOLERANCE:.2g}), got roi={float(roi[y, x]):.6g} "
            f"vs sum={total[y, x]:.6g} at (row {y}, col {x})"
        )


_RESERVED_META = ("format", "format_version", "roi_full_value", "masks")


def _matseg_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("matseg")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def write_sample(folder: str | os.PathLike, *sample, **encode_options) -> Path:
    """Write one sample folder atomically (temporary folder, then rename; ``Finished.txt`` last).

    ``folder`` is the final sample folder (an existing one is moved aside to ``.incomplete/``);
    ``image, weights, roi[, meta]`` and the options (``jpeg_quality``, ``png_compression``) and
    the errors are those of :func:`encode_sample`. Returns ``folder``.
    """
    # Encoding happens before touching the disk; a failure inside atomic_folder removes the
    # temporary folder and leaves `folder` as it was.
    write_folder(folder, encode_sample(*sample, **encode_options), FINISHED_NAME)
    return folder


def encode_sample(
    image: np.ndarray,
    weights: np.ndarray,
    roi: np.ndarray,
    meta: dict | None = None,
    jpeg_quality: int = 95,
    png_compression: int = 1,
) -> dict[str, bytes]:
    """The files of one sample, encoded in memory: ``{file name: bytes}`` (no ``Finished.txt``).

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        weights: ``(M, H, W)`` float in [0, 1], per-material weights, ``sum <= 1`` per pixel.
        roi: ``(H, W)`` float in [0, 1], visible coverage; must equal ``weights.sum(0)``
            within half a quantisation level (for 2D scenes: ``1 - background``).
        meta: extra JSON-serialisable metadata (seed, parameters, sources, timing, ...);
            may not redefine ``format``, ``format_version``, ``roi_full_value``, ``masks``.
        jpeg_quality: JPEG quality of ``RGB__RGB.jpg`` (0-100).
        png_compression: zlib level 0-9 of the PNGs (higher: smaller files, slower writes).

    Raises:
        TypeError / ValueError: inputs of the wrong dtype, shape or range (message shows what
            was received) or reserved keys in ``meta``.
    """
    _validate_inputs(image, weights, roi)
    meta = dict(meta or {})
    names = [mask_file_name(i + 1) for i in range(weights.shape[0])]
    ours = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "roi_full_value": ROI_FULL_VALUE, "masks": names}
    clash = {k: meta[k] for k in _RESERVED_META if k in meta and meta[k] != ours[k]}
    if clash:
        raise ValueError(f"meta may not redefine reserved keys, got {clash}")
    full_meta = {**ours, "matseg_version": meta.pop("matseg_version", None) or _matseg_version(), **meta}

    files = {RGB_NAME: encode_image(image, ".jpg", jpeg_quality=jpeg_quality)}
    for name, w in zip(names, weights):
        files[name] = encode_image(_quantize_validated(w), ".png", png_compression=png_compression)
    files[ROI_NAME] = encode_image(_quantize_validated(roi), ".png", png_compression=png_compression)
    files[META_NAME] = json_bytes(full_meta)
    return files


def _quantize_validated(values: np.ndarray) -> np.ndarray:
    """``round(values * 255)`` as uint8 for values already validated to lie in [0, 1].

    OpenCV's saturating conversion rounds to nearest in one pass; it takes the absolute value
    first, which is harmless here because validation admits at most -1e-6.
    """
    return cv2.convertScaleAbs(np.ascontiguousarray(values, dtype=np.float32), alpha=255.0)
