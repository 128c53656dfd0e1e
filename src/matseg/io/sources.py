"""Collections of input photos and textures, with a per-process decode cache.

The reference generator re-decoded JPEGs inside its "pick an image larger than the scene"
rejection loops (66 % of its run time, digest §3.1). Here a collection is scanned once (header
only: size in the upright frame; the scan is indexed for later runs, :mod:`matseg.io.library`),
the rejection loop runs on those sizes in O(1) expected time per draw, and each image is
decoded at most once per worker.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from matseg.io.images import IMAGE_EXTENSIONS, ImageReadError, read_image_info, read_image_rgb


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


class EntryTable(Sequence[SourceEntry]):
    """Entries stored as columns: a library of 10^6 photos costs a few strings and two int32
    arrays per photo, not a dataclass with a ``Path`` each; ``table[i]`` builds one entry."""

    def __init__(self, paths: list[str], labels: list[str], widths: np.ndarray, heights: np.ndarray):
        self.paths, self.labels = paths, labels
        self.widths, self.heights = np.asarray(widths, np.int32), np.asarray(heights, np.int32)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return SourceEntry(Path(self.paths[index]), int(self.widths[index]), int(self.heights[index]), label=self.labels[index])


#: Draws tried by :meth:`ImageSource.choose` before it falls back to one exact weighted draw.
MAX_REJECTION_DRAWS = 64


@dataclass
class ImageSource:
    """An indexed collection of RGB images with a bounded LRU cache of decoded pixels.

    Attributes:
        entries: usable images, sorted (the order defines what a seed draws); a list of
            :class:`SourceEntry` or an :class:`EntryTable`.
        bad: ``path -> reason`` for files rejected when the collection was scanned.
        cache_bytes: decode-cache budget per process.
    """

    name: str
    entries: Sequence[SourceEntry]
    bad: dict[str, str] = field(default_factory=dict)
    cache_bytes: int = 1 << 30
    arrays: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False, compare=False)
    _cached_bytes: int = field(default=0, repr=False, compare=False)

    def __post_init__(self):
        if isinstance(self.entries, EntryTable):
            self._widths, self._heights = self.entries.widths, self.entries.heights
        else:
            self._widths = np.array([e.width for e in self.entries], np.int32)
            self._heights = np.array([e.height for e in self.entries], np.int32)

    def __getstate__(self):
        # The decoded cache stays in its process; workers build their own.
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()
        state["_cached_bytes"] = 0
        return state

    def __len__(self) -> int:
        return len(self.entries)

    @classmethod
    def scan(cls, source: str | os.PathLike, name: str, cache_bytes: int = 1 << 30, use_index: bool = True) -> "ImageSource":
        """Index every image of a library by its header (:func:`matseg.io.library.scan_library`).

        ``source`` is a folder (searched recursively) or a text file listing image paths. The
        scan is kept in an index under the cache folder and reused by later runs. Files that
        are not readable images are listed in ``bad`` (with the reason) and left alone.
        Raises ``FileNotFoundError`` for a missing folder or list and ``ValueError`` when no
        usable image is found.
        """
        from matseg.io.library import scan_library

        scan = scan_library(source, use_index=use_index)
        if not scan.paths:
            bad = scan.bad
            detail = f" ({len(bad)} unreadable: {', '.join(sorted(bad))[:300]})" if bad else ""
            raise ValueError(
                f"{source}: no usable {name} found (looked for files ending in "
                f"{', '.join(e[1:] for e in IMAGE_EXTENSIONS)}){detail}"
            )
        return cls(name, EntryTable(scan.paths, scan.labels, scan.widths, scan.heights), scan.bad, cache_bytes)

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
        accept it with probability p" is run on the header sizes (no decoding): expected O(1)
        per draw whatever the library size. After :data:`MAX_REJECTION_DRAWS` rejections (few
        large images, small p) one exact weighted draw over all entries follows, so the result
        has exactly that distribution in every case.
        """
        n = len(self.entries)
        if min_width <= 0 and min_height <= 0:
            return int(rng.integers(n))
        widths, heights = self._widths, self._heights
        for _ in range(MAX_REJECTION_DRAWS):
            i = int(rng.integers(n))
            if (widths[i] > min_width and heights[i] > min_height) or rng.random() < p_small:
                return i
        weights = np.where((widths > min_width) & (heights > min_height), 1.0, p_small)
        total = weights.sum()
        if total <= 0:
            return int(rng.integers(n))
        return int(np.searchsorted(np.cumsum(weights), rng.random() * total, side="right").clip(0, n - 1))

    def get(self, index: int) -> np.ndarray:
        """Decoded ``(H, W, 3)`` uint8 RGB pixels of entry ``index`` (read-only, cached).

        Raises ``ImageReadError`` (cached too, so a bad file costs one decode per process).
        """
        if index in self.arrays:
            return self.arrays[index]
        entry = self.entries[index]
        key = _file_key(entry)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            if isinstance(hit, ImageReadError):
                raise hit
            return hit
        try:
            pixels = read_image_rgb(entry.path)
            if entry.box is not None:
                x, y, w, h = entry.box
                pixels = np.ascontiguousarray(pixels[y : y + h, x : x + w])
            pixels.setflags(write=False)
            value: np.ndarray | ImageReadError = pixels
        except ImageReadError as exc:
            value = exc
        self._remember(key, value)
        if isinstance(value, ImageReadError):
            raise value
        return value

    def _remember(self, key, value) -> None:
        size = value.nbytes if isinstance(value, np.ndarray) else 0
        self._cache[key] = value
        self._cached_bytes += size
        while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= old.nbytes if isinstance(old, np.ndarray) else 0


def _file_key(entry: SourceEntry) -> tuple:
    """Decode-cache key: the file's identity, so links to (or repeated listings of) one photo
    share one decode; the crop box is part of it."""
    try:
        st = os.stat(entry.path)
        return (st.st_dev, st.st_ino, entry.box)
    except OSError:
        return (str(entry.path), entry.box)


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
