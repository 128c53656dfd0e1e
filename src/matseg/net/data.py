"""Training data for the descriptor net (paper §G.2, reader of digest §1.9).

Batches are a pure function of ``(seed, stream index)``: the batch size and shape, the samples,
their crops and augmentations all come from NumPy generators seeded with
``SeedSequence([seed, tag, stream, slot, attempt])``, never from global state. So a run resumed
at step ``s`` sees exactly the batches it would have seen, whatever the number of loader
workers, and DDP rank ``r`` of ``n`` simply takes stream indices ``step * n + r``.

Pipeline per image (all NumPy/OpenCV, usable without torch):

1. :func:`plan_batch`: one ``(height, width)`` per batch, sides multiples of 32 in
   [size_min, size_max] (paper: 250-900 px), ``images = min(max_pixels // (h*w), max_images)``
   with at least ``min_images``; each valid shape equally likely.
2. :func:`crop_to_batch` (reference ``CropResize``): resize the image to cover the batch shape
   when it is smaller, or - with probability ``p_zoom_out`` - when the annotated region's
   bounding box does not fit; then a random window that contains that box if it fits,
   otherwise lies inside it.
3. :func:`augment` (§G.2 + reference probabilities): flips, multiplicative noise, Gaussian
   blur, darken/lighten, partial and full decolouring.
4. :func:`drop_undominated`: materials with no pixel above 0.5 are dropped (and pixels they
   dominated leave the ROI); a view left with fewer than 2 materials is replaced by another
   crop of the same image (up to 3 views), then by other images (up to ``max_attempts`` in all).

Masks are padded to the batch's largest material count by :func:`collate`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from matseg.config import option, section
from matseg.io.atomic import write_bytes_atomic
from matseg.io.dataset import DOMINANT_FRACTION, DatasetFormatError, SampleRef, find_samples, read_sample
from matseg.io.shards import is_shard_folder, is_url, shard_samples
from matseg.runner import ItemError, RunnerOptions, RunSummary, WorkItem, run_job

logger = logging.getLogger(__name__)

# Domain tags that keep the seed streams of different uses apart.
_TAG_BATCH, _TAG_IMAGE, _TAG_VAL = 1, 2, 3


@dataclass
class AugmentConfig:
    """Photometric and geometric augmentation (paper §G.2; probabilities of the reference reader)."""

    p_any: float = option(0.5, "probability that an image is augmented at all (then each step below with its own probability)", "§1.9")
    p_flip_lr: float = option(0.5, "left-right flip", "§1.9")
    p_flip_ud: float = option(0.5, "up-down flip", "§1.9")
    p_noise: float = option(0.035, "multiply every pixel value by its own factor from noise_range", "§1.9")
    noise_range: list[float] = option([0.9, 1.1], "per-value noise factor range", "§1.9")
    p_blur: float = option(0.2, "Gaussian blur", "§G.2, §1.9")
    blur_kernel: int = option(5, "Gaussian blur kernel size (odd)", "§1.9")
    p_brightness: float = option(0.25, "darken/lighten: multiply by a factor from brightness_range (clipped at 255)", "§G.2, §1.9")
    brightness_range: list[float] = option([0.5, 1.15], "darken/lighten factor range", "§1.9")
    p_desaturate: float = option(0.2, "partial decolouring: image*r + gray*(1-r), r ~ U(0,1)", "§G.2, §1.9")
    p_grayscale: float = option(0.05, "full decolouring (paper §G.2; the reference has none, the probability is ours)", "§G.2")
    p_rescale: float = option(0.0, "resize the whole sample by a factor from rescale_range before cropping (patterns seen at more scales); independent of p_any", "ours")
    rescale_range: list[float] = option([0.5, 1.5], "rescale factor range, drawn log-uniformly", "ours")

    def __post_init__(self):
        for name in ("p_rescale", "p_any", "p_flip_lr", "p_flip_ud", "p_noise", "p_blur", "p_brightness", "p_desaturate", "p_grayscale"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
        for name in ("noise_range", "brightness_range"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or not 0 <= lo_hi[0] <= lo_hi[1]:
                raise ValueError(f"{name} must be [low, high] with 0 <= low <= high, got {lo_hi}")
        if len(self.rescale_range) != 2 or not 0 < self.rescale_range[0] <= self.rescale_range[1]:
            raise ValueError(f"rescale_range must be [low, high] with 0 < low <= high, got {self.rescale_range}")
        if self.blur_kernel < 1 or self.blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be a positive odd number, got {self.blur_kernel}")


@dataclass
class DataConfig:
    """What the net is trained on and how batches are formed."""

    nested: bool = option(True, "also use nested sample folders (the published data's second sample in <k>/<k>; the reference ignored them)", "§2.2")
    size_min: int = option(250, "smallest batch side in pixels (rounded up to size_multiple)", "§G.2")
    size_max: int = option(900, "largest batch side in pixels (rounded down to size_multiple; reference train.py: 800)", "§G.2")
    size_multiple: int = option(32, "batch sides are multiples of this", "§1.9")
    max_pixels: int = option(980000, "pixel budget of a batch: height * width * images <= max_pixels (700*700*2)", "§1.8")
    max_images: int = option(7, "most images in a batch", "§1.8")
    min_images: int = option(2, "fewest images in a batch (shapes that fit fewer are never drawn)", "§1.9")
    p_zoom_out: float = option(0.3, "probability of resizing the whole image to the batch when the annotated region does not fit (else a full-resolution window inside it)", "§1.9")
    min_materials: int = option(2, "an image needs this many materials with a dominant (> 0.5) pixel after cropping, else it is redrawn", "§1.8")
    max_attempts: int = option(20, "redraws per batch slot before giving up (bad or single-material samples)", "ours")
    val_fraction: float = option(0.05, "share of samples held out for validation (stable hash of the path inside its dataset)", "ours")
    val_max_samples: int = option(256, "validate on at most this many held-out samples (the first ones in natural order)", "ours")
    val_size: int = option(512, "validation views: val_size x val_size squares holding the whole annotated region (shrunk to fit when larger); a multiple of size_multiple", "ours")
    workers: int = option(-1, "loader processes per training process (-1: auto, 0: load in the training process)", "ours")
    decode_max_side: int = option(0, "samples whose longer side exceeds this are shrunk once when read (area averaging), so cropping costs less and the crops see more of each scene; 0: full resolution", "ours")
    cache_dir: str = option("", "folder of decoded samples (uint8 arrays after decode_max_side), shared by the loader workers and reused by later runs: a view then costs a file read instead of decoding a JPEG and its mask PNGs; `matseg train` fills it with all cores before the first step (the samples its batches will draw); empty: decode every view", "ours")
    augment: AugmentConfig = section(AugmentConfig, "augmentation")

    def __post_init__(self):
        if self.size_multiple < 1:
            raise ValueError(f"size_multiple must be >= 1, got {self.size_multiple}")
        if self.size_min < 1 or self.size_max < self.size_min:
            raise ValueError(f"need 1 <= size_min <= size_max, got {self.size_min}, {self.size_max}")
        if not self.side_choices():
            raise ValueError(f"no multiple of {self.size_multiple} lies in [{self.size_min}, {self.size_max}]")
        if not 1 <= self.min_images <= self.max_images:
            raise ValueError(f"need 1 <= min_images <= max_images, got {self.min_images}, {self.max_images}")
        if not self.batch_shapes():
            smallest = self.side_choices()[0]
            raise ValueError(
                f"max_pixels={self.max_pixels} does not fit {self.min_images} images of even the smallest "
                f"shape {smallest}x{smallest}"
            )
        if not 0 <= self.p_zoom_out <= 1:
            raise ValueError(f"p_zoom_out must be in [0, 1], got {self.p_zoom_out}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.val_size < self.size_multiple or self.val_size % self.size_multiple:
            raise ValueError(f"val_size must be a positive multiple of {self.size_multiple}, got {self.val_size}")
        if self.val_max_samples < 1:
            raise ValueError(f"val_max_samples must be >= 1, got {self.val_max_samples}")
        if self.decode_max_side < 0:
            raise ValueError(f"decode_max_side must be >= 0 (0: full resolution), got {self.decode_max_side}")
        if self.min_materials < 1 or self.max_attempts < 1:
            raise ValueError(f"min_materials and max_attempts must be >= 1, got {self.min_materials}, {self.max_attempts}")

    def side_choices(self) -> list[int]:
        """Allowed batch sides: multiples of ``size_multiple`` in [size_min, size_max]."""
        m = self.size_multiple
        return list(range(-(-self.size_min // m) * m, self.size_max // m * m + 1, m))

    def batch_shapes(self) -> list[tuple[int, int, int]]:
        """Every ``(height, width, images)`` a batch can have (the reference's rejection loop, enumerated)."""
        shapes = []
        for h in self.side_choices():
            for w in self.side_choices():
                n = min(self.max_pixels // (h * w), self.max_images)
                if n >= self.min_images:
                    shapes.append((h, w, n))
        return shapes


# ----------------------------------------------------------------------------- sample lists


def _split_key(root: Path, sample: Path | SampleRef) -> str:
    if isinstance(sample, SampleRef):  # a sample in a shard: its key is its path in the dataset
        return sample.relative_name()
    rel = sample.relative_to(root).as_posix()
    return sample.name if rel == "." else rel


def is_validation(key: str, fraction: float) -> bool:
    """Stable assignment to the validation split: SHA-256 of ``key`` read as a number in [0, 1)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < fraction


def split_samples(roots: list[str | os.PathLike], val_fraction: float, nested: bool = True) -> tuple[list[Path], list[Path]]:
    """Finished samples under each root, split into ``(train, validation)``.

    The split depends only on each sample's path relative to its root (so moving or renaming a
    dataset folder keeps it) and on ``val_fraction``.

    Raises:
        FileNotFoundError / NotADirectoryError: a root is missing (the message names it).
        ValueError: a root holds no finished sample.
    """
    train, val = [], []
    for root in roots:
        if is_url(root):  # an fsspec URL: only shard folders can be read there
            if not is_shard_folder(root):
                raise FileNotFoundError(f"{root}: no shard index.json found at this URL (matseg shards pack writes one)")
            samples = shard_samples(root)
        else:
            root = Path(root)
            if not root.exists():
                raise FileNotFoundError(f"{root}: training data folder not found")
            if not root.is_dir():
                raise NotADirectoryError(f"{root}: not a folder")
            samples = find_samples(root, nested=nested)
            if not samples:
                raise ValueError(f"{root}: no finished MatSeg sample folders (RGB__RGB.jpg + masks + Finished.txt) found")
        for sample in samples:  # shard samples split by their key (_split_key)
            (val if is_validation(_split_key(root, sample), val_fraction) else train).append(sample)
    return train, val


# ----------------------------------------------------------------------------- batch plans


def _rng(*words: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(w) for w in words]))


class SlotKey(NamedTuple):
    """What one image of one batch is: everything the loader needs, nothing it must remember.

    ``stream``/``slot`` seed the crop and augmentation; ``sample`` is the first-choice sample
    index; ``train`` False means validation (fixed crop, no augmentation, no redraws).
    """

    stream: int
    slot: int
    height: int
    width: int
    sample: int
    train: bool = True


def plan_batch(seed: int, stream: int, num_samples: int, cfg: DataConfig) -> list[SlotKey]:
    """The batch at ``stream`` index: one shape from :meth:`DataConfig.batch_shapes`, then
    ``images`` samples (distinct when there are enough)."""
    if num_samples < 1:
        raise ValueError("no training samples")
    rng = _rng(seed, _TAG_BATCH, stream)
    shapes = cfg.batch_shapes()
    h, w, n = shapes[int(rng.integers(len(shapes)))]
    picks = rng.choice(num_samples, size=n, replace=num_samples < n)
    return [SlotKey(stream, slot, h, w, int(s)) for slot, s in enumerate(picks)]


def validation_plan(num_samples: int, cfg: DataConfig) -> list[list[SlotKey]]:
    """Fixed validation batches: every held-out sample once, ``val_size`` squares, in order."""
    side = cfg.val_size
    per_batch = max(1, min(cfg.max_images, cfg.max_pixels // (side * side)))
    keys = [SlotKey(i, 0, side, side, i, train=False) for i in range(num_samples)]
    return [keys[i : i + per_batch] for i in range(0, num_samples, per_batch)]


# ----------------------------------------------------------------------------- array ops


def roi_bbox(roi: np.ndarray) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)`` (end-exclusive) of the True pixels of ``roi`` (H, W); the whole image if none."""
    rows, cols = np.flatnonzero(roi.any(1)), np.flatnonzero(roi.any(0))
    if rows.size == 0:
        return 0, roi.shape[0], 0, roi.shape[1]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _window_start(rng: np.random.Generator, lo: int, hi: int, size: int, total: int) -> int:
    """Start of a ``size`` window in ``[0, total)`` containing ``[lo, hi)`` if it fits, else inside it."""
    if hi - lo <= size:
        first, last = max(0, hi - size), min(lo, total - size)
    else:
        first, last = lo, hi - size
    return int(rng.integers(first, last + 1))


def _resize(a: np.ndarray, size_hw: tuple[int, int], shrink: bool) -> np.ndarray:
    # Area averaging when shrinking (no aliasing from 1600 px to 256 px), bilinear when enlarging.
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(a, (size_hw[1], size_hw[0]), interpolation=interp)


def _resize_sample(image: np.ndarray, fractions: np.ndarray, roi: np.ndarray, size_hw: tuple[int, int], shrink: bool):
    """Image, every fraction map and the ROI (kept where at least half covered) resized alike."""
    image = _resize(image, size_hw, shrink)
    fractions = np.stack([_resize(f, size_hw, shrink) for f in fractions])
    roi = _resize(roi.astype(np.float32), size_hw, shrink) >= 0.5
    return image, fractions, roi


def rescale_sample(
    image: np.ndarray, fractions: np.ndarray, roi: np.ndarray, factor: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resize a sample by ``factor`` (at least 1 px a side), keeping its masks aligned.

    Args:
        image: (H, W, 3) uint8 or float32 RGB.
        fractions: (M, H, W) uint8 or float32 (proportions; blurred at segment edges when resized).
        roi: (H, W) bool.
        factor: > 0; below 1 shrinks with area averaging, above 1 enlarges bilinearly.

    Returns:
        ``(image, fractions, roi)`` of size ``(round(H * factor), round(W * factor))``, dtypes kept.
    """
    if factor <= 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    h0, w0 = image.shape[:2]
    size = (max(1, round(h0 * factor)), max(1, round(w0 * factor)))
    if size == (h0, w0):
        return image, fractions, roi
    return _resize_sample(image, fractions, roi, size, shrink=factor < 1)


def crop_to_batch(
    image: np.ndarray,
    fractions: np.ndarray,
    roi: np.ndarray,
    height: int,
    width: int,
    rng: np.random.Generator,
    p_zoom_out: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut a ``height x width`` training view that keeps the annotated region (reference ``CropResize``).

    Args:
        image: (H, W, 3) uint8 or float32 RGB.
        fractions: (M, H, W) float32 in [0, 1] summing to 1 inside ``roi``, or uint8 in
            0-255 proportional to them (a decoded sample, see :func:`decode_sample`): only the
            proportions count, the output is renormalised.
        roi: (H, W) bool.
        height, width: output size.
        rng: random source (zoom-out decision, window position).
        p_zoom_out: probability of resizing the image to just cover the output when the ROI
            bounding box does not fit in it (an image smaller than the output is always resized).

    Returns:
        ``(image, fractions, roi)`` of sizes (height, width, 3) float32 0-255, (M, height, width)
        float32 summing to 1 inside the returned (height, width) bool ROI, 0 outside.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got shape {image.shape}")
    h0, w0 = image.shape[:2]
    if fractions.ndim != 3 or fractions.shape[1:] != (h0, w0) or roi.shape != (h0, w0):
        raise ValueError(f"fractions (M, {h0}, {w0}) and roi ({h0}, {w0}) must match the image, got {fractions.shape}, {roi.shape}")
    y0, y1, x0, x1 = roi_bbox(roi)
    cover = max(height / h0, width / w0)
    box_fits = (y1 - y0) <= height and (x1 - x0) <= width
    zoom_out = rng.random() < p_zoom_out
    if cover > 1 or (not box_fits and zoom_out):
        new_h, new_w = max(height, round(h0 * cover)), max(width, round(w0 * cover))
        image, fractions, roi = _resize_sample(image, fractions, roi, (new_h, new_w), shrink=cover < 1)
        sy, sx = new_h / h0, new_w / w0
        y0, y1 = math.floor(y0 * sy), min(new_h, math.ceil(y1 * sy))
        x0, x1 = math.floor(x0 * sx), min(new_w, math.ceil(x1 * sx))
        h0, w0 = new_h, new_w
    top = _window_start(rng, y0, y1, height, h0)
    left = _window_start(rng, x0, x1, width, w0)
    window = (slice(top, top + height), slice(left, left + width))
    # Cut first, convert after: a view is far smaller than the sample it comes from.
    image = np.ascontiguousarray(image[window], dtype=np.float32)
    fractions = fractions[(slice(None), *window)].astype(np.float32)
    roi = roi[window].copy()
    # Resizing blends fractions with the zeros outside the ROI: renormalise so they sum to 1 again.
    total = fractions.sum(0)
    roi &= total > 1e-6
    fractions = np.where(roi, fractions / np.where(roi, total, 1.0), 0.0).astype(np.float32)
    return image, fractions, roi


def drop_undominated(fractions: np.ndarray, roi: np.ndarray, level: float = DOMINANT_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Drop materials with no pixel above ``level`` (reference: 0.5).

    Args:
        fractions: (M, H, W) float32 in [0, 1].
        roi: (H, W) bool.

    Returns:
        ``(fractions, roi)``: (K, H, W) the kept materials (K <= M, order kept), renormalised
        to sum to 1 inside the ROI, and the ROI minus the pixels whose largest fraction
        belonged to a dropped material (their hard label would not exist).
    """
    keep = (fractions > level).any(axis=(1, 2))
    if keep.all():
        return fractions, roi
    roi = roi & keep[fractions.argmax(0)]
    kept = fractions[keep]
    total = kept.sum(0)  # > 0 inside the new ROI: a kept material leads there
    return np.where(roi, kept / np.where(roi, total, 1.0), 0.0).astype(np.float32), roi


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None]


def augment(
    image: np.ndarray, fractions: np.ndarray, roi: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random flips (applied to image, fractions and ROI alike) and photometric changes (image only).

    Args:
        image: (H, W, 3) float32 RGB in 0-255.
        fractions: (M, H, W) float32.
        roi: (H, W) bool.

    Returns:
        ``(image, fractions, roi)`` with the same shapes; the image stays float32 in 0-255.
    """
    if rng.random() >= cfg.p_any:
        return image, fractions, roi
    if rng.random() < cfg.p_flip_lr:
        image, fractions, roi = image[:, ::-1], fractions[:, :, ::-1], roi[:, ::-1]
    if rng.random() < cfg.p_flip_ud:
        image, fractions, roi = image[::-1], fractions[:, ::-1], roi[::-1]
    image = np.ascontiguousarray(image, dtype=np.float32)
    if rng.random() < cfg.p_noise:
        image *= rng.uniform(*cfg.noise_range, size=image.shape).astype(np.float32)
    if rng.random() < cfg.p_blur:
        image = cv2.GaussianBlur(image, (cfg.blur_kernel, cfg.blur_kernel), 0)
    if rng.random() < cfg.p_brightness:
        image *= np.float32(rng.uniform(*cfg.brightness_range))
    np.clip(image, 0, 255, out=image)
    if rng.random() < cfg.p_desaturate:
        r = np.float32(rng.random())
        image = image * r + _gray(image) * (1 - r)
    if rng.random() < cfg.p_grayscale:
        image = np.repeat(_gray(image), 3, axis=2)
    return image, np.ascontiguousarray(fractions), np.ascontiguousarray(roi)


# ----------------------------------------------------------------------------- dataset


#: Views tried from a slot's first-choice sample before other samples are drawn.
SAME_SAMPLE_TRIES = 3


class DecodedSample(NamedTuple):
    """A training sample as the loader keeps it: compact, ready to crop.

    ``image`` (H, W, 3) uint8 RGB; ``fractions`` (M, H, W) uint8, each material's fraction x 255
    (rounded); ``roi`` (H, W) bool; ``path`` the sample folder.
    """

    path: Path
    image: np.ndarray
    fractions: np.ndarray
    roi: np.ndarray


def decode_sample(folder: str | os.PathLike, max_side: int = 0) -> DecodedSample:
    """Read a sample folder and shrink it so that its longer side is at most ``max_side`` (0: keep).

    Shrinking uses area averaging for the image and the fractions; the ROI keeps the pixels
    at least half inside it that some material still covers. Raises what :func:`read_sample`
    raises.
    """
    sample = read_sample(folder)
    image, fractions, roi = sample.image, sample.fractions, sample.roi
    h, w = roi.shape
    if max_side and max(h, w) > max_side:
        scale = max_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        fractions = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in fractions])
        roi = cv2.resize(roi.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5
    # Always quantised (cache or not), so a run sees the same batches with and without a cache.
    quantised = np.rint(np.clip(fractions, 0.0, 1.0) * 255).astype(np.uint8)
    roi = roi & (quantised.sum(0, dtype=np.uint16) > 0)
    return DecodedSample(_sample_path(sample.path), np.ascontiguousarray(image), quantised, roi)


#: Bump when :func:`decode_sample` changes what it produces: old cache entries are then ignored.
_CACHE_FORMAT = 1


class DecodedSampleCache:
    """Decoded samples on disk (one uncompressed ``.npz`` each), written once, read by every worker.

    An entry is named by a hash of the sample's resolved path, the modification time of its
    folder and of its ``Finished.txt`` (a regenerated sample gets a new entry), ``max_side``
    and the cache format. Entries are written atomically, so concurrent workers and runs can
    share one folder; a damaged entry is decoded again and replaced.
    """

    def __init__(self, folder: str | os.PathLike, max_side: int = 0):
        self.folder = Path(folder)
        self.max_side = max_side

    def entry(self, sample: Path | SampleRef) -> Path:
        stamps = []
        if isinstance(sample, SampleRef):  # a shard member: its shard's content hash
            stamps.append(sample.version())
        else:
            sample = Path(sample).resolve()
            for p in (sample, sample / "Finished.txt"):
                try:
                    stamps.append(p.stat().st_mtime_ns)
                except OSError:
                    stamps.append(-1)
        key = f"{_CACHE_FORMAT}|{self.max_side}|{sample}|{stamps}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return self.folder / digest[:2] / f"{digest}.npz"

    def get(self, sample: Path | SampleRef) -> DecodedSample:
        entry = self.entry(sample)
        try:
            with np.load(entry, allow_pickle=False) as data:
                return DecodedSample(_sample_path(sample), data["image"], data["fractions"], data["roi"])
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("re-decoding %s: cache entry %s unreadable (%s)", sample, entry, exc)
        decoded = decode_sample(sample, self.max_side)
        self.put(sample, decoded)
        return decoded

    def put(self, sample: Path | SampleRef, decoded: DecodedSample) -> None:
        """Store ``decoded`` as ``sample``'s entry (atomically)."""
        buffer = io.BytesIO()
        np.savez(buffer, image=decoded.image, fractions=decoded.fractions, roi=decoded.roi)
        write_bytes_atomic(self.entry(sample), buffer.getvalue())


class CacheFillJob:
    """Runner job: decode every sample missing from a :class:`DecodedSampleCache` (see
    :func:`fill_cache`). Deterministic: no seeds. An unreadable sample fails as an item (skipped,
    counted, listed); a failed write stops the job (disk full, cache folder gone)."""

    name = "cache"

    def __init__(self, samples: list, folder: str | os.PathLike, max_side: int):
        self.samples = list(samples)
        self.cache = DecodedSampleCache(folder, max_side)
        self.out_dir = self.cache.folder

    def items(self) -> list[WorkItem]:
        return [WorkItem(i, f"{i:07d}", 0) for i in range(len(self.samples))]

    def is_done(self, item: WorkItem) -> bool:
        return self.cache.entry(self.samples[item.index]).exists()

    def setup(self) -> None:
        cv2.setNumThreads(1)  # one sample per core

    def run(self, item: WorkItem) -> None:
        sample = self.samples[item.index]
        try:
            decoded = decode_sample(sample, self.cache.max_side)
        except (DatasetFormatError, OSError) as exc:  # reading the input: the sample's fault
            raise ItemError(f"{_sample_path(sample)}: {exc}") from None
        self.cache.put(sample, decoded)


def fill_cache(samples: list, cfg: DataConfig, workers: int | None = None, progress: bool = True) -> RunSummary:
    """Decode into ``cfg.cache_dir`` each of ``samples`` not yet there, in parallel, before training.

    Without it the first run over new data decodes inside the training loop, one sample at a
    time, until every sample has been drawn at least once (on 2 cores, 3,000 scenes ran at
    2-5 instead of 7-13 images/s for the first ~600 steps). Cached samples are skipped, so a
    warm cache costs one ``stat`` per sample.

    Args:
        samples: sample folders or :class:`~matseg.io.dataset.SampleRef` s.
        cfg: data config; ``cache_dir`` must be set, ``decode_max_side`` is the entries' size.
        workers: processes (None: one per core; 1: this process).
        progress: show a progress bar with rate and ETA.

    Returns:
        The runner's summary: ``done`` decoded now, ``skipped`` already cached, ``failed`` the
        unreadable samples with their reasons (the training set skips them again later).
    """
    if not cfg.cache_dir:
        raise ValueError("fill_cache needs data.cache_dir")
    job = CacheFillJob(samples, cfg.cache_dir, cfg.decode_max_side)
    return run_job(job, RunnerOptions(workers=workers, progress=progress, description="decode cache"))


def _sample_path(sample) -> Path:
    """What records and messages call a sample: its folder, or ``SHARDS/shard-*.tar/<key>``."""
    return sample.path if isinstance(sample, SampleRef) else Path(sample)


class SampleUnusable(ValueError):
    """A sample cannot give a training view (unreadable, or too few materials after cropping)."""


class MatSegTrainingSet:
    """Map-style dataset over sample folders, indexed by :class:`SlotKey` (no state between items).

    ``dataset[key]`` -> dict with ``image`` (H, W, 3) float32 0-255 RGB, ``fractions``
    (K, H, W) float32, ``roi`` (H, W) bool, ``path`` str; ``None`` for a validation sample
    that has fewer than ``min_materials`` materials.
    """

    def __init__(self, samples: list[Path], cfg: DataConfig, seed: int):
        self.samples = [p if isinstance(p, SampleRef) else Path(p) for p in samples]
        self.cfg = cfg
        self.seed = seed
        self._bad: dict[Path, str] = {}  # per-process memo: unreadable samples stay unreadable
        self._last = None  # (index, DecodedSample): a redraw often re-crops the same sample
        self._cache = DecodedSampleCache(cfg.cache_dir, cfg.decode_max_side) if cfg.cache_dir else None

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, index: int):
        path = self.samples[index]
        if path in self._bad:
            raise SampleUnusable(self._bad[path])
        if self._last is not None and self._last[0] == index:
            return self._last[1]
        try:
            sample = self._cache.get(path) if self._cache else decode_sample(path, self.cfg.decode_max_side)
            self._last = (index, sample)
            return sample
        except (DatasetFormatError, OSError) as exc:
            self._bad[path] = str(exc)
            logger.warning("skipping unreadable training sample: %s", exc)
            raise SampleUnusable(str(exc)) from None

    def view(self, index: int, height: int, width: int, rng: np.random.Generator, train: bool) -> dict:
        """One cropped (and, when training, augmented) view of sample ``index``."""
        sample = self._load(index)
        image, fractions, roi = sample.image, sample.fractions, sample.roi
        p_rescale = self.cfg.augment.p_rescale if train else 0.0
        # Drawn only when enabled, so configs without it keep their exact random streams.
        if p_rescale > 0 and rng.random() < p_rescale:
            low, high = self.cfg.augment.rescale_range
            image, fractions, roi = rescale_sample(image, fractions, roi, float(np.exp(rng.uniform(np.log(low), np.log(high)))))
        p_zoom = self.cfg.p_zoom_out if train else 1.0
        image, fractions, roi = crop_to_batch(image, fractions, roi, height, width, rng, p_zoom)
        if train:
            image, fractions, roi = augment(image, fractions, roi, rng, self.cfg.augment)
        fractions, roi = drop_undominated(fractions, roi)
        if fractions.shape[0] < self.cfg.min_materials:
            raise SampleUnusable(f"{sample.path}: {fractions.shape[0]} material(s) with a dominant pixel in the view")
        return {"image": image, "fractions": fractions, "roi": roi, "path": str(sample.path)}

    def __getitem__(self, key: SlotKey) -> dict | None:
        if not key.train:
            try:
                return self.view(key.sample, key.height, key.width, _rng(self.seed, _TAG_VAL, key.sample), train=False)
            except SampleUnusable:
                return None
        errors = []
        for attempt in range(self.cfg.max_attempts):
            rng = _rng(self.seed, _TAG_IMAGE, key.stream, key.slot, attempt)
            # A failed view is first retried as other crops of the same image (no re-reading), then
            # other images are drawn (the reference always drew another image).
            index = key.sample if attempt < SAME_SAMPLE_TRIES else int(rng.integers(len(self.samples)))
            try:
                return self.view(index, key.height, key.width, rng, train=True)
            except SampleUnusable as exc:
                errors.append(str(exc))
        raise RuntimeError(
            f"no usable training image after {self.cfg.max_attempts} draws for batch {key.stream} slot {key.slot} "
            f"(each needs >= {self.cfg.min_materials} materials with a dominant pixel); last problems: {errors[-3:]}"
        )


def collate(items: list[dict | None]) -> dict:
    """Stack dataset items into a batch (masks zero-padded to the largest material count).

    Returns:
        dict with ``images`` (B, 3, H, W) float32 tensor 0-255 (channels-last memory),
        ``fractions`` (B, M, H, W) float32, ``roi`` (B, H, W) bool, ``num_materials`` (B,)
        int64, ``paths`` list of str. ``None`` items (unusable validation samples) are left
        out; an empty batch has B = 0.
    """
    import torch

    items = [it for it in items if it is not None]
    if not items:
        return {"images": torch.zeros(0, 3, 1, 1), "fractions": torch.zeros(0, 1, 1, 1), "roi": torch.zeros(0, 1, 1, dtype=torch.bool),
                "num_materials": torch.zeros(0, dtype=torch.int64), "paths": []}  # fmt: skip
    h, w = items[0]["image"].shape[:2]
    slots = max(it["fractions"].shape[0] for it in items)
    fractions = np.zeros((len(items), slots, h, w), np.float32)
    for i, it in enumerate(items):
        fractions[i, : it["fractions"].shape[0]] = it["fractions"]
    images = torch.from_numpy(np.stack([it["image"] for it in items])).permute(0, 3, 1, 2)
    return {
        "images": images,
        "fractions": torch.from_numpy(fractions),
        "roi": torch.from_numpy(np.stack([it["roi"] for it in items])),
        "num_materials": torch.tensor([it["fractions"].shape[0] for it in items]),
        "paths": [it["path"] for it in items],
    }


# ----------------------------------------------------------------------------- loaders


class BatchStream:
    """Batch sampler: the slot keys of steps ``start .. stop - 1`` for one DDP rank."""

    def __init__(self, seed: int, num_samples: int, cfg: DataConfig, start: int, stop: int, rank: int = 0, world: int = 1):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside world size {world}")
        self.seed, self.num_samples, self.cfg = seed, num_samples, cfg
        self.start, self.stop, self.rank, self.world = start, stop, rank, world

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield plan_batch(self.seed, step * self.world + self.rank, self.num_samples, self.cfg)


def auto_workers(world: int = 1) -> int:
    """Loader processes per training process: half the cores shared among the ranks, 1..8."""
    return max(1, min(8, (os.cpu_count() or 2) // (2 * world)))


def loader_workers(configured: int, world: int = 1) -> int:
    """``data.workers`` resolved: the configured count, or :func:`auto_workers` for -1."""
    return configured if configured >= 0 else auto_workers(world)


def _worker_init(_worker_id: int) -> None:
    cv2.setNumThreads(1)  # the workers are the parallelism; OpenCV threads would oversubscribe
    # Ctrl-C reaches the whole process group: the training process stops after its step and
    # checkpoints; a worker that died of the signal first would make that step fail instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_loader(dataset: MatSegTrainingSet, batches, workers: int, pin_memory: bool = False):
    """A ``torch.utils.data.DataLoader`` over ``batches`` (an iterable of slot-key lists)."""
    from torch.utils.data import DataLoader

    return DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=collate,
        num_workers=workers,
        worker_init_fn=_worker_init if workers else None,
        pin_memory=pin_memory,
        prefetch_factor=2 if workers else None,
    )
