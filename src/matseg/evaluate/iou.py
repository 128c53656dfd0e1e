"""IoU at the optimal threshold (paper §4.2, Fig. 5 right) and the mask datasets it runs on.

Protocol per ground-truth segment: pick random points inside it (20 by default), get a
similarity map from the predictor for each point (cosine similarity of every pixel's descriptor
to the point's, or the point-conditioned map of a SAM-like model), binarise it with the
threshold that maximises IoU with the segment, and average the IoUs.

Accepted dataset layouts (detected in this order):

``labels``   ``ROOT/images/<stem>.<ext>`` + ``ROOT/labels/<stem>.png``: an integer label map
             (8/16-bit gray or palette PNG: the index; RGB PNG: each colour is a label, black
             = 0). Every label is a segment except ``background_label`` (default 0), whose
             pixels are scored as negatives (false positives there lower the IoU), and
             ``ignore_label`` (default none, e.g. 255), whose pixels count for nothing.
``matseg``   MatSeg training samples (``RGB__RGB.jpg`` + ``mask*.png`` + ``Finished.txt``, read
             with :func:`matseg.io.dataset.read_sample`): each ROI pixel goes to the material
             with the highest fraction; pixels outside the ROI count for nothing.
``masks``    ``ROOT/<name>/`` with one image (``image.*`` or the only non-mask image) and one
             binary ``mask*.png`` per segment (>= 128 = inside); every pixel counts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from matseg.evaluate.benchmark import _natural_key, resize_to_max_side
from matseg.io.dataset import FINISHED_NAME, RGB_NAME, DatasetFormatError, list_mask_files, read_sample
from matseg.io.images import IMAGE_EXTENSIONS, ImageReadError, list_images, read_gray_u8, read_image_rgb

__all__ = [
    "MaskDatasetError",
    "MaskEntry",
    "MaskImage",
    "best_iou",
    "scan_mask_dataset",
    "load_mask_image",
    "read_label_map",
    "sample_segment_points",
]


class MaskDatasetError(ValueError):
    """A mask dataset or one of its files is malformed; the message names the file."""


# ----------------------------------------------------------------------------- optimal threshold


def best_iou(similarity: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None) -> tuple[float, float]:
    """Best IoU of ``similarity >= t`` with ``target`` over every threshold ``t``, exactly.

    Only thresholds equal to a similarity value inside ``target`` can be optimal (lowering the
    threshold between two such values only adds false positives), so the search evaluates those
    candidates in one pass over the sorted values (``O(n log n)``).

    Args:
        similarity: ``(H, W)`` float map (any range; NaN not allowed).
        target: ``(H, W)`` bool ground-truth segment.
        valid: optional ``(H, W)`` bool; pixels outside it are ignored (neither TP nor FP).

    Returns:
        ``(iou, threshold)``; among equally good thresholds the highest. ``(nan, nan)`` when the
        segment has no valid pixel.
    """
    similarity = np.asarray(similarity)
    target = np.asarray(target, dtype=bool)
    if similarity.shape != target.shape or (valid is not None and np.shape(valid) != target.shape):
        raise ValueError(f"similarity {similarity.shape}, target {target.shape} and valid {np.shape(valid)} must have one shape")
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        pos, neg = similarity[target & valid], similarity[~target & valid]
    else:
        pos, neg = similarity[target], similarity[~target]
    if pos.size == 0:
        return float("nan"), float("nan")
    if np.isnan(pos).any() or np.isnan(neg).any():
        raise ValueError("similarity map contains NaN")
    pos = np.sort(pos)
    neg = np.sort(neg)
    first = np.flatnonzero(np.r_[True, pos[1:] != pos[:-1]])  # first index of each distinct value
    candidates = pos[first]  # ascending
    tp = pos.size - first  # segment pixels >= candidate
    fp = neg.size - np.searchsorted(neg, candidates, side="left")
    iou = tp / (pos.size + fp)
    best = iou.size - 1 - int(np.argmax(iou[::-1]))  # the highest threshold among ties
    return float(iou[best]), float(candidates[best])


# ----------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class MaskEntry:
    """One image of a mask dataset (nothing read yet); ``problem`` set when it cannot be read."""

    name: str
    layout: str
    image_path: Path | None
    annotation: Path | None
    problem: str = ""


@dataclass
class MaskImage:
    """One loaded image with its ground-truth segments.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB (resized to ``max_size``).
        segments: ``(S, H, W)`` bool, one per kept segment.
        segment_names: label value / mask file name / material index per segment.
        valid: ``(H, W)`` bool pixels that count in the IoU.
        skipped_segments: ``{name: reason}`` for segments that were too small.
    """

    name: str
    image: np.ndarray
    segments: np.ndarray
    segment_names: list[str]
    valid: np.ndarray
    sources: dict[str, str] = field(default_factory=dict)
    skipped_segments: dict[str, str] = field(default_factory=dict)


def _image_by_stem(folder: Path) -> dict[str, list[Path]]:
    by_stem: dict[str, list[Path]] = {}
    for path in list_images(folder, recursive=False):
        by_stem.setdefault(path.stem, []).append(path)
    return by_stem


def _scan_labels(root: Path) -> list[MaskEntry]:
    images, labels = _image_by_stem(root / "images"), _image_by_stem(root / "labels")
    entries = []
    for stem in sorted(set(images) | set(labels), key=_natural_key):
        image, label = images.get(stem, []), labels.get(stem, [])
        problem = ""
        if not image:
            problem = f"{label[0]}: no image {stem}.* in {root / 'images'}"
        elif not label:
            problem = f"{image[0]}: no label map {stem}.png in {root / 'labels'}"
        elif len(image) > 1 or len(label) > 1:
            problem = f"{root}: several files named {stem}.* ({', '.join(p.name for p in image + label)})"
        entries.append(MaskEntry(stem, "labels", image[0] if image else None, label[0] if label else None, problem))
    return entries


def _folder_entry(root: Path, folder: Path, files: list[str]) -> MaskEntry | None:
    lower = {f.lower(): f for f in files}
    name = folder.relative_to(root).as_posix() if folder != root else folder.name
    if RGB_NAME.lower() in lower:
        problem = "" if FINISHED_NAME.lower() in lower else f"{folder}: unfinished MatSeg sample (no {FINISHED_NAME})"
        return MaskEntry(name, "matseg", folder / lower[RGB_NAME.lower()], folder, problem)
    masks = [f for f in files if f.lower().startswith("mask") and f.lower().endswith(".png")]
    if not masks:
        return None
    images = [f for f in files if Path(f).suffix.lower() in IMAGE_EXTENSIONS and f not in masks and not f.startswith(".")]
    named = [f for f in images if Path(f).stem.lower() == "image"]
    chosen = named if named else images
    if len(chosen) != 1:
        what = "no image" if not chosen else f"several images ({', '.join(sorted(chosen))}); name the photo image.*"
        return MaskEntry(name, "masks", None, folder, f"{folder}: {what} next to the mask files")
    return MaskEntry(name, "masks", folder / chosen[0], folder)


def scan_mask_dataset(root: str | os.PathLike) -> list[MaskEntry]:
    """Find the images of a mask dataset in any accepted layout (see the module doc).

    Raises:
        MaskDatasetError: ``root`` missing or nothing recognisable in it.
    """
    root = Path(root)
    if not root.is_dir():
        raise MaskDatasetError(f"{root}: folder not found")
    if (root / "images").is_dir() and (root / "labels").is_dir():
        entries = _scan_labels(root)
    else:
        entries = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            entry = _folder_entry(root, Path(dirpath), filenames)
            if entry is not None:
                entries.append(entry)
                dirnames[:] = [d for d in dirnames if entry.layout != "matseg" or d.isdigit()]
        entries.sort(key=lambda e: _natural_key(e.name))
    if not entries:
        raise MaskDatasetError(
            f"{root}: no mask dataset found: expected images/ + labels/, MatSeg sample folders "
            "(RGB__RGB.jpg, mask*.png, Finished.txt) or folders with an image and mask*.png files"
        )
    return entries


def read_label_map(path: str | os.PathLike) -> np.ndarray:
    """Read an integer label map.

    Returns:
        ``(H, W)`` int64: the stored value for gray/16-bit PNGs, the palette index for palette
        PNGs, and for RGB files a label per distinct colour (black = 0, others numbered from 1
        in order of their packed ``0xRRGGBB`` value).
    """
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            arr = np.asarray(img)
    except FileNotFoundError:
        raise MaskDatasetError(f"{path}: file not found") from None
    except OSError as exc:
        raise MaskDatasetError(f"{path}: not a readable label map ({exc})") from None
    if arr.ndim == 2:
        return arr.astype(np.int64)
    if arr.ndim == 3 and arr.shape[2] in (3, 4) and mode in ("RGB", "RGBA"):
        rgb = arr[:, :, :3].astype(np.int64)
        packed = (rgb[:, :, 0] << 16) | (rgb[:, :, 1] << 8) | rgb[:, :, 2]
        colours, inverse = np.unique(packed, return_inverse=True)
        ids = np.arange(colours.size) + (0 if colours[0] == 0 else 1)
        return ids[inverse].reshape(packed.shape)
    raise MaskDatasetError(f"{path}: unsupported label map mode {mode} with shape {arr.shape}")


def _check_same_size(path: Path, shape: tuple[int, ...], image_path: Path, image_shape: tuple[int, ...]) -> None:
    if tuple(shape[:2]) != tuple(image_shape[:2]):
        hint = " (the image's EXIF orientation may rotate it)" if tuple(shape[:2]) == tuple(image_shape[:2])[::-1] else ""
        raise MaskDatasetError(
            f"{path}: size {shape[1]}x{shape[0]} (WxH) differs from the image {image_path.name} "
            f"{image_shape[1]}x{image_shape[0]}{hint}"
        )


#: Values of the internal label map that are not segment ids.
IGNORED = -1  # not scored at all
NEGATIVE = -2  # scored, in no segment (background)


def _read_segments(
    entry: MaskEntry, background_label: int | None, ignore_label: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str]]:
    """Full resolution ``(image, labels, ids, names)``: ``labels`` is an ``(H, W)`` int64 map
    (``IGNORED``, ``NEGATIVE`` or a segment id from ``ids``), or for the masks layout an
    ``(S, H, W)`` bool stack and ``ids = None``."""
    if entry.layout == "matseg":
        try:
            sample = read_sample(entry.annotation)
        except DatasetFormatError as exc:
            raise MaskDatasetError(str(exc)) from None
        labels = np.where(sample.roi, sample.fractions.argmax(axis=0), IGNORED)
        names = [Path(n).stem for n in sample.mask_names]
        return sample.image, labels, np.arange(len(names)), names
    try:
        image = read_image_rgb(entry.image_path)
    except ImageReadError as exc:
        raise MaskDatasetError(str(exc)) from None
    if entry.layout == "labels":
        raw = read_label_map(entry.annotation)
        _check_same_size(entry.annotation, raw.shape, entry.image_path, image.shape)
        values = np.unique(raw)
        values = values[(values != background_label) & (values != ignore_label)]
        # Ignore wins over background when a user names the same value for both.
        labels = np.where(raw == ignore_label, IGNORED, NEGATIVE).astype(np.int64)
        keep = np.isin(raw, values)
        labels[keep] = np.searchsorted(values, raw[keep])
        names = [str(int(v)) for v in values]
        return image, labels, np.arange(len(names)), names
    # masks layout: overlapping masks are allowed, so keep them as a stack, not a label map
    mask_files = list_mask_files(entry.annotation)
    stack = []
    for path in mask_files:
        try:
            m = read_gray_u8(path)
        except ImageReadError as exc:
            raise MaskDatasetError(str(exc)) from None
        _check_same_size(path, m.shape, entry.image_path, image.shape)
        stack.append(m >= 128)
    return image, np.stack(stack), None, [p.stem for p in mask_files]


def load_mask_image(
    entry: MaskEntry,
    max_size: int | None = 700,
    ignore_label: int | None = None,
    min_segment_pixels: int = 64,
    background_label: int | None = 0,
) -> MaskImage:
    """Read one image of a mask dataset with its segments, resized to ``max_size``.

    Label maps: ``background_label`` pixels belong to no segment but are scored (negatives);
    ``ignore_label`` pixels are not scored (``valid`` False). Segments with fewer than
    ``min_segment_pixels`` valid pixels after resizing are skipped (listed in
    ``skipped_segments``). Raises :class:`MaskDatasetError` naming the file.
    """
    if entry.problem:
        raise MaskDatasetError(entry.problem)
    image, labels, ids, names = _read_segments(entry, background_label, ignore_label)
    image, _ = resize_to_max_side(image, max_size)
    if ids is None:  # a stack of binary masks
        segments = np.stack([resize_to_max_side(m, max_size, nearest=True)[0] for m in labels])
        valid = np.ones(image.shape[:2], dtype=bool)
    else:
        labels, _ = resize_to_max_side(labels, max_size, nearest=True)
        valid = labels != IGNORED
        segments = labels[None] == ids[:, None, None]
    keep, skipped = [], {}
    counts = (segments & valid).sum(axis=(1, 2))
    for i, (name, count) in enumerate(zip(names, counts)):
        if count >= min_segment_pixels:
            keep.append(i)
        else:
            skipped[name] = f"{int(count)} pixels < min_segment_pixels {min_segment_pixels}"
    sources = {"image": str(entry.image_path), "annotation": str(entry.annotation)}
    return MaskImage(
        name=entry.name,
        image=image,
        segments=segments[keep] if keep else np.zeros((0,) + image.shape[:2], dtype=bool),
        segment_names=[names[i] for i in keep],
        valid=valid,
        sources=sources,
        skipped_segments=skipped,
    )


def sample_segment_points(
    segment: np.ndarray, count: int, rng: np.random.Generator, region: np.ndarray | None = None
) -> np.ndarray:
    """``count`` distinct random pixels inside ``segment`` (all of them if it has fewer).

    Args:
        segment: ``(H, W)`` bool.
        count: number of points.
        rng: random generator (seeded per image by the caller).
        region: optional ``(H, W)`` bool further restricting the choice.

    Returns:
        ``(K, 2)`` float64 ``[x, y]`` pixel coordinates, ``K = min(count, pixels)``.
    """
    mask = segment if region is None else segment & region
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    pick = rng.choice(ys.size, size=min(count, ys.size), replace=False)
    return np.stack([xs[pick], ys[pick]], axis=1).astype(np.float64)
