"""Collections of input photos and textures, with a per-process decode cache.

The reference generator re-decoded JPEGs inside its "pick an image larger than the scene"
rejection loops (66 % of its run time, digest §3.1). Here a collection is scanned once (header
only: size in the upright frame), the choice among images is a single weighted draw with the
same distribution as the rejection loop, and each image is decoded at most once per worker.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from matseg.io.images import ImageReadError, list_images, read_image_info, read_image_rgb


@dataclass(frozen=True)
class SourceEntry:
    """One usable input: a file, optionally a crop ``(x, y, w, h)`` of it (upright frame)."""

    path: Path
    width: int
    height: int
    box: tuple[int, int, int, int] | None = None
    label: str = ""

    @property
    def id(self) -> str:
        """Stable identifier recorded in sample metadata."""
        base = self.label or self.path.name
        if self.box is not None:
            base += "@{},{},{},{}".format(*self.box)
        return base


@dataclass
class ImageSource:
    """An indexed collection of RGB images with a bounded LRU cache of decoded pixels.

    Attributes:
        entries: usable images, sorted (the order defines what a seed draws).
        bad: ``path -> reason`` for files rejected when the collection was scanned.
        cache_bytes: decode-cache budget per process.
    """

    name: str
    entries: list[SourceEntry]
    bad: dict[str, str] = field(default_factory=dict)
    cache_bytes: int = 1 << 30
    arrays: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False, compare=False)
    _cached_bytes: int = field(default=0, repr=False, compare=False)

    def __getstate__(self):
        # The decoded cache stays in its process; workers build their own.
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()
        state["_cached_bytes"] = 0
        return state

    def __len__(self) -> int:
        return len(self.entries)

    @classmethod
    def scan(cls, folder: str | os.PathLike, name: str, cache_bytes: int = 1 << 30) -> "ImageSource":
        """Index every image file under ``folder`` by reading its header.

        Files that are not readable images are listed in ``bad`` (with the reason) and left
        alone. Raises ``FileNotFoundError``/``NotADirectoryError`` for a bad folder and
        ``ValueError`` when no usable image is found.
        """
        folder = Path(folder)
        paths = list_images(folder)
        entries, bad = [], {}
        for p in paths:
            try:
                info = read_image_info(p)
            except ImageReadError as exc:
                bad[str(p)] = str(exc).split(": ", 1)[-1]
                continue
            entries.append(SourceEntry(p, info.width, info.height, label=p.relative_to(folder).as_posix()))
        if not entries:
            detail = f" ({len(bad)} unreadable: {', '.join(sorted(bad))[:300]})" if bad else ""
            raise ValueError(
                f"{folder}: no usable {name} found (looked for files ending in "
                f"jpg, jpeg, png, bmp, tif, tiff, webp){detail}"
            )
        return cls(name, entries, bad, cache_bytes)

    @classmethod
    def from_arrays(cls, name: str, images: list[np.ndarray], labels: list[str] | None = None) -> "ImageSource":
        """An in-memory collection of ``(H, W, 3)`` uint8 RGB arrays (Python API and tests)."""
        entries, arrays = [], {}
        for i, img in enumerate(images):
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(f"{name}[{i}]: expected (H, W, 3) uint8 RGB, got {img.dtype} {img.shape}")
            label = labels[i] if labels else f"array{i}"
            entries.append(SourceEntry(Path(f"<memory>/{label}"), img.shape[1], img.shape[0], label=label))
            arrays[i] = np.ascontiguousarray(img)
        if not entries:
            raise ValueError(f"no {name} given")
        return cls(name, entries, arrays=arrays)

    def choose(self, rng: np.random.Generator, min_width: int = 0, min_height: int = 0, p_small: float = 1.0) -> int:
        """Index of a random entry; entries smaller than ``min_width x min_height`` have weight ``p_small``.

        The reference's loop "draw an image, accept it if it is larger than the target, else
        accept it with probability p" picks a large image with weight 1 and a small one with
        weight p; this draws from that same distribution in one step (no decoding).
        """
        if min_width <= 0 and min_height <= 0:
            return int(rng.integers(len(self.entries)))
        weights = np.array(
            [1.0 if (e.width > min_width and e.height > min_height) else p_small for e in self.entries]
        )
        total = weights.sum()
        if total <= 0:
            return int(rng.integers(len(self.entries)))
        return int(np.searchsorted(np.cumsum(weights), rng.random() * total, side="right").clip(0, len(weights) - 1))

    def get(self, index: int) -> np.ndarray:
        """Decoded ``(H, W, 3)`` uint8 RGB pixels of entry ``index`` (read-only, cached).

        Raises ``ImageReadError`` (cached too, so a bad file costs one decode per process).
        """
        if index in self.arrays:
            return self.arrays[index]
        hit = self._cache.get(index)
        if hit is not None:
            self._cache.move_to_end(index)
            if isinstance(hit, ImageReadError):
                raise hit
            return hit
        entry = self.entries[index]
        try:
            pixels = read_image_rgb(entry.path)
            if entry.box is not None:
                x, y, w, h = entry.box
                pixels = np.ascontiguousarray(pixels[y : y + h, x : x + w])
            pixels.setflags(write=False)
            value: np.ndarray | ImageReadError = pixels
        except ImageReadError as exc:
            value = exc
        self._remember(index, value)
        if isinstance(value, ImageReadError):
            raise value
        return value

    def _remember(self, index: int, value) -> None:
        size = value.nbytes if isinstance(value, np.ndarray) else 0
        self._cache[index] = value
        self._cached_bytes += size
        while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= old.nbytes if isinstance(old, np.ndarray) else 0


def skimage_data_dir() -> Path:
    """Folder of the photos that ship inside scikit-image (no download needed)."""
    import skimage.data

    return Path(skimage.data.__file__).parent


# Real photographs bundled with scikit-image; the synthetic/diagram files (logo, text, phantom,
# chessboards, ...) are left out because they carry none of the natural patterns we want.
DEFAULT_PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png",
    "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png",
    "motorcycle_left.png", "retina.jpg", "rocket.jpg",
)  # fmt: skip

# Texture photos bundled with scikit-image, whole and as quadrant crops, plus crops of uniform
# regions of the colour photos (boxes chosen by eye: sky, fur, table, stars, tissue).
DEFAULT_TEXTURES = (
    ("brick.png", None), ("grass.png", None), ("gravel.png", None),
    ("brick.png", (0, 0, 256, 256)), ("brick.png", (256, 256, 256, 256)),
    ("grass.png", (0, 256, 256, 256)), ("grass.png", (256, 0, 256, 256)),
    ("gravel.png", (0, 0, 256, 256)), ("gravel.png", (256, 256, 256, 256)),
    ("chelsea.png", (180, 0, 110, 80)), ("coffee.png", (470, 0, 130, 220)),
    ("hubble_deep_field.jpg", (600, 500, 256, 256)), ("ihc.png", (0, 0, 256, 256)),
    ("rocket.jpg", (300, 0, 200, 120)), ("moon.png", (100, 100, 256, 256)),
)  # fmt: skip


def _default_source(name: str, items) -> ImageSource:
    root = skimage_data_dir()
    entries = []
    for fname, box in items:
        info = read_image_info(root / fname)
        if box is not None:
            x, y, w, h = box
            if x + w > info.width or y + h > info.height:
                raise ValueError(f"built-in crop {box} outside {fname} ({info.width}x{info.height})")
            size = (w, h)
        else:
            size = (info.width, info.height)
        entries.append(SourceEntry(root / fname, size[0], size[1], box, label=f"skimage:{fname}"))
    return ImageSource(name, entries)


def default_photos() -> ImageSource:
    """The built-in natural-photo collection (scikit-image's bundled photographs)."""
    return _default_source("natural images", [(f, None) for f in DEFAULT_PHOTOS])


def default_textures() -> ImageSource:
    """The built-in texture collection (scikit-image's texture photos and crops)."""
    return _default_source("textures", DEFAULT_TEXTURES)
