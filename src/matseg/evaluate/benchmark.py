"""The MatSeg point-annotated benchmark (paper §4, reference digest §1.10, §2.3): scan and load.

Layout::

    ROOT/images/<stem>.jpg                    any image format; EXIF orientation is applied
    ROOT/data/<stem>/data.json                {"<material key>": {"pt_im": [[x, y, r], ...], "pt_pg": ...}}
    ROOT/data/<stem>/data.pkl                 same content as a pickle (read only when no data.json)
    ROOT/data/<stem>/group_relations.txt      optional partial similarities (matseg.evaluate.relations)

``pt_im`` points are ``[x (column), y (row), r (disc radius)]`` in pixels of the full-resolution,
upright (EXIF-rotated) image; ``pt_pg`` (the annotation tool's 1/4-scale copy) is accepted and
ignored. Every image is evaluated (the reference skipped the first and crashed after the last).
"""

from __future__ import annotations

import json
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from matseg.evaluate.relations import RelationsError, read_relations, similarity_matrix
from matseg.io.images import ImageReadError, list_images, read_image_rgb
from matseg.io.safe_pickle import UnsafePickleError, load_plain_pickle

__all__ = [
    "BenchmarkFormatError",
    "BenchmarkEntry",
    "BenchmarkImage",
    "DEFAULT_MAX_SIZE",
    "scan_benchmark",
    "read_annotation",
    "parse_annotation",
    "resize_to_max_side",
    "load_benchmark_image",
]

DEFAULT_MAX_SIZE = 700  # Evaluate.py passes max_size=700 [§1.10]
DATA_JSON, DATA_PKL, RELATIONS = "data.json", "data.pkl", "group_relations.txt"
POINT_FIELDS = ("pt_im", "pt_pg")  # pt_im is required; pt_pg is the annotation display copy


class BenchmarkFormatError(ValueError):
    """A benchmark folder or file is malformed; the message names the file and the problem."""


@dataclass(frozen=True)
class BenchmarkEntry:
    """One benchmark image as found on disk (nothing read yet).

    ``image_path`` is None when ``data/<name>/`` has no image, ``data_dir`` may not exist when
    an image has no annotation; :func:`load_benchmark_image` reports both as errors.
    """

    name: str
    image_path: Path | None
    data_dir: Path
    problem: str = ""


@dataclass
class BenchmarkImage:
    """One loaded benchmark image.

    Attributes:
        name: the image stem.
        image: ``(H, W, 3)`` uint8 RGB, upright, resized so that ``max(H, W) <= max_size``.
        points: ``(N, 3)`` float64 ``[x, y, r]`` in ``image`` pixels (x = column, y = row; pixel
            centres at integer coordinates), radii scaled with the image.
        labels: ``(N,)`` int64 index into ``materials`` for each point.
        materials: material keys (strings, in file order).
        material_similarity: ``(M, M)`` float64 ground-truth similarity (1 own, 0.6 / 0.3 related,
            0 unrelated).
        has_relations: a ``group_relations.txt`` exists for this image.
        scale: ``(sx, sy)`` resize factors from the original upright image.
        original_size: ``(H, W)`` of the original upright image.
        sources: the files read (image, annotation, relations).
        warnings: non-fatal oddities (empty materials, relation-file notes).
    """

    name: str
    image: np.ndarray
    points: np.ndarray
    labels: np.ndarray
    materials: list[str]
    material_similarity: np.ndarray
    has_relations: bool
    scale: tuple[float, float]
    original_size: tuple[int, int]
    sources: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def point_similarity(self) -> np.ndarray:
        """``(N, N)`` float64 ground-truth similarity between every pair of points."""
        return self.material_similarity[np.ix_(self.labels, self.labels)]

    @property
    def num_points(self) -> int:
        return int(self.labels.shape[0])


def _natural_key(name: str) -> tuple:
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t)


def scan_benchmark(root: str | os.PathLike) -> list[BenchmarkEntry]:
    """List the benchmark's images and annotation folders, matched by stem, in natural order.

    Raises:
        BenchmarkFormatError: ``root``, ``root/images`` or ``root/data`` is missing, or both are empty.
    """
    root = Path(root)
    images_dir, data_dir = root / "images", root / "data"
    for folder in (root, images_dir, data_dir):
        if not folder.is_dir():
            raise BenchmarkFormatError(f"{folder}: folder not found (a MatSeg benchmark has images/ and data/<stem>/)")
    by_stem: dict[str, list[Path]] = {}
    for path in list_images(images_dir, recursive=False):
        by_stem.setdefault(path.stem, []).append(path)
    data_stems = {p.name for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
    entries = []
    for stem in sorted(set(by_stem) | data_stems, key=_natural_key):
        paths = by_stem.get(stem, [])
        problem = ""
        if len(paths) > 1:
            problem = f"{images_dir}: several images named {stem}.* ({', '.join(p.name for p in paths)}); keep one"
        entries.append(BenchmarkEntry(stem, paths[0] if paths else None, data_dir / stem, problem))
    if not entries:
        raise BenchmarkFormatError(f"{root}: no images in images/ and no annotation folders in data/")
    return entries


def read_annotation(data_dir: str | os.PathLike) -> tuple[object, Path]:
    """Read ``data.json`` (preferred) or ``data.pkl`` (restricted unpickler) of one image.

    Returns ``(content, path_read)``. Raises :class:`BenchmarkFormatError` naming the file.
    """
    data_dir = Path(data_dir)
    json_path, pkl_path = data_dir / DATA_JSON, data_dir / DATA_PKL
    if json_path.is_file():
        try:
            return json.loads(json_path.read_text(encoding="utf-8-sig")), json_path
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BenchmarkFormatError(f"{json_path}: not valid JSON ({exc})") from None
    if pkl_path.is_file():
        try:
            return load_plain_pickle(pkl_path), pkl_path
        except UnsafePickleError as exc:
            raise BenchmarkFormatError(f"{exc}; refusing to load it (write a data.json instead)") from None
        except (OSError, pickle.UnpicklingError) as exc:
            raise BenchmarkFormatError(f"{pkl_path}: not readable ({exc})") from None
    raise BenchmarkFormatError(f"{data_dir}: neither {DATA_JSON} nor {DATA_PKL} found")


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


def parse_annotation(data: object, source: str) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """Validate the annotation content and flatten it.

    Args:
        data: the decoded ``data.json``/``data.pkl`` content.
        source: file name for messages.

    Returns:
        ``(materials, points, labels, warnings)``: material keys (str, file order; materials
        without points are dropped with a warning), ``(N, 3)`` float64 ``[x, y, r]`` in the
        original upright frame, ``(N,)`` int64 material index per point.

    Raises:
        BenchmarkFormatError: not a mapping, unknown fields, malformed points, r <= 0.
    """
    if not isinstance(data, dict) or not data:
        raise BenchmarkFormatError(f"{source}: expected a non-empty mapping of material key -> points, got {type(data).__name__}")
    materials: list[str] = []
    points: list[list[float]] = []
    labels: list[int] = []
    warnings: list[str] = []
    for key, entry in data.items():
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            raise BenchmarkFormatError(f"{source}: material key {key!r} must be a string")
        key = str(key)
        if key in materials:
            raise BenchmarkFormatError(f"{source}: material key {key!r} appears twice")
        if not isinstance(entry, dict):
            raise BenchmarkFormatError(f"{source}: material {key!r}: expected a mapping with 'pt_im', got {type(entry).__name__}")
        unknown = sorted(str(k) for k in entry if k not in POINT_FIELDS)
        if unknown:
            raise BenchmarkFormatError(
                f"{source}: material {key!r}: unknown field(s) {', '.join(unknown)} (expected {', '.join(POINT_FIELDS)})"
            )
        if "pt_im" not in entry:
            raise BenchmarkFormatError(f"{source}: material {key!r}: missing 'pt_im' (list of [x, y, r])")
        pts = entry["pt_im"]
        if not isinstance(pts, (list, tuple)):
            raise BenchmarkFormatError(f"{source}: material {key!r}: 'pt_im' must be a list of [x, y, r], got {type(pts).__name__}")
        if not pts:
            warnings.append(f"{source}: material {key!r} has no points; ignored")
            continue
        index = len(materials)
        materials.append(key)
        for i, p in enumerate(pts):
            if not isinstance(p, (list, tuple)) or len(p) != 3 or not all(_is_number(v) for v in p):
                raise BenchmarkFormatError(f"{source}: material {key!r} point {i}: expected [x, y, r] numbers, got {p!r}")
            if p[2] <= 0:
                raise BenchmarkFormatError(f"{source}: material {key!r} point {i}: radius must be > 0, got {p[2]!r}")
            points.append([float(v) for v in p])
            labels.append(index)
    if not points:
        raise BenchmarkFormatError(f"{source}: no annotated points")
    return materials, np.asarray(points, dtype=np.float64), np.asarray(labels, dtype=np.int64), warnings


def check_points_inside(points: np.ndarray, labels: np.ndarray, materials: list[str], size: tuple[int, int], source: str) -> None:
    """Raise :class:`BenchmarkFormatError` when a point ``[x, y, r]`` is outside the ``(H, W)`` image."""
    h, w = size
    x, y = points[:, 0], points[:, 1]
    outside = np.flatnonzero((x < 0) | (y < 0) | (x > w - 1) | (y > h - 1))
    if outside.size == 0:
        return
    i = int(outside[0])
    hint = ""
    if ((x >= 0) & (y >= 0) & (x <= h - 1) & (y <= w - 1)).all():
        hint = " (they would fit the image rotated by 90 degrees: is the EXIF orientation of the image wrong?)"
    raise BenchmarkFormatError(
        f"{source}: {outside.size} point(s) outside the upright image of {w}x{h} (WxH), e.g. material "
        f"{materials[labels[i]]!r} at x={x[i]:g}, y={y[i]:g}{hint}"
    )


def resize_to_max_side(image: np.ndarray, max_size: int | None, nearest: bool = False) -> tuple[np.ndarray, tuple[float, float]]:
    """Shrink ``image`` so that its longer side is ``max_size`` (never enlarges).

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` array (uint8 RGB, float maps, integer label maps).
        max_size: longest side after resizing; None or 0 = keep the size.
        nearest: pick the nearest source pixel (label maps, masks: values stay values) instead of
            area averaging (images).

    Returns:
        ``(resized, (sx, sy))`` with ``sx = W'/W``, ``sy = H'/H``; same dtype as ``image``.
    """
    h, w = image.shape[:2]
    if not max_size or max(h, w) <= max_size:
        return image, (1.0, 1.0)
    ratio = max(h, w) / float(max_size)
    new_w, new_h = max(1, round(w / ratio)), max(1, round(h / ratio))
    sx, sy = new_w / w, new_h / h
    if nearest:
        rows = np.minimum(((np.arange(new_h) + 0.5) / sy).astype(np.int64), h - 1)
        cols = np.minimum(((np.arange(new_w) + 0.5) / sx).astype(np.int64), w - 1)
        return image[rows[:, None], cols[None, :]], (sx, sy)
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA), (sx, sy)


def load_benchmark_image(
    entry: BenchmarkEntry, max_size: int | None = DEFAULT_MAX_SIZE, relation_weights: dict[str, float] | None = None
) -> BenchmarkImage:
    """Read one benchmark image with its points and relations.

    The image is decoded upright (EXIF applied), then shrunk so its longer side is ``max_size``
    (None = full resolution); point coordinates and radii are scaled with it
    (``x' = (x + 0.5) * sx - 0.5``, ``r' = r * sqrt(sx * sy)``).

    Raises:
        BenchmarkFormatError: missing image or annotation, malformed files, points outside the
            image, bad relations (messages name the file).
    """
    if entry.problem:
        raise BenchmarkFormatError(entry.problem)
    if entry.image_path is None:
        raise BenchmarkFormatError(f"{entry.data_dir}: no image {entry.name}.* in {entry.data_dir.parent.parent / 'images'}")
    if not entry.data_dir.is_dir():
        raise BenchmarkFormatError(f"{entry.image_path}: no annotation folder {entry.data_dir}")
    data, data_path = read_annotation(entry.data_dir)
    materials, points, labels, warnings = parse_annotation(data, str(data_path))
    relations_path = entry.data_dir / RELATIONS
    pairs: dict = {}
    if relations_path.is_file():
        try:
            pairs, notes = read_relations(relations_path, materials, relation_weights)
        except RelationsError as exc:
            raise BenchmarkFormatError(str(exc)) from None
        warnings += notes
    try:
        image = read_image_rgb(entry.image_path)
    except ImageReadError as exc:
        raise BenchmarkFormatError(str(exc)) from None
    original_size = image.shape[:2]
    check_points_inside(points, labels, materials, original_size, str(data_path))
    image, (sx, sy) = resize_to_max_side(image, max_size)
    scaled = points.copy()
    scaled[:, 0] = (points[:, 0] + 0.5) * sx - 0.5
    scaled[:, 1] = (points[:, 1] + 0.5) * sy - 0.5
    scaled[:, 2] = points[:, 2] * np.sqrt(sx * sy)
    sources = {"image": str(entry.image_path), "annotation": str(data_path)}
    if relations_path.is_file():
        sources["relations"] = str(relations_path)
    return BenchmarkImage(
        name=entry.name,
        image=image,
        points=scaled,
        labels=labels,
        materials=materials,
        material_similarity=similarity_matrix(materials, pairs),
        has_relations=relations_path.is_file(),
        scale=(sx, sy),
        original_size=(int(original_size[0]), int(original_size[1])),
        sources=sources,
        warnings=warnings,
    )
