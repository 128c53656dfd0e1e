"""Explore a photo: images held in memory, their descriptors computed once, maps per click.

A click costs one disc average and one dot product over the descriptor grid (a quarter of the
net's input resolution), so it answers in milliseconds once the image's descriptors exist; the
net runs once per image. Images and descriptors live in an LRU store bounded in bytes.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from matseg.io.images import decode_image_rgb, encode_image

#: Longest side of the JPEG the page shows; clicks are mapped back to original pixels.
DISPLAY_MAX_SIDE = 2048


@dataclass
class LoadedImage:
    """One image of the store. ``image`` is upright RGB ``(H, W, 3)`` uint8."""

    id: str
    name: str
    image: np.ndarray
    descriptors: object = None  # matseg.net.infer.DescriptorMap once computed
    _display: bytes | None = field(default=None, repr=False)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]

    def display_jpeg(self) -> bytes:
        """The image as the page shows it (JPEG, longer side at most :data:`DISPLAY_MAX_SIDE`)."""
        if self._display is None:
            h, w = self.size
            scale = min(1.0, DISPLAY_MAX_SIDE / max(h, w))
            shown = self.image
            if scale < 1.0:
                shown = cv2.resize(shown, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
            self._display = encode_image(shown, ".jpg", jpeg_quality=90)
        return self._display

    @property
    def nbytes(self) -> int:
        desc = self.descriptors
        d = 0 if desc is None else desc.descriptors.element_size() * desc.descriptors.nelement()
        return self.image.nbytes + d + len(self._display or b"")


class ImageStore:
    """Images by id (a hash of their bytes), least recently used dropped beyond ``max_bytes``.

    Args:
        describe: image ``(H, W, 3)`` uint8 -> ``DescriptorMap`` (a loaded :class:`Predictor`'s
            ``describe``); called lazily, one image at a time.
        max_bytes: memory bound for images and descriptors together (the image in use is
            never dropped).
        max_pixels: larger images are refused from their header.
    """

    def __init__(self, describe: Callable, max_bytes: int = 1 << 30, max_pixels: int = 100_000_000):
        self._describe = describe
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self._images: OrderedDict[str, LoadedImage] = OrderedDict()
        self._lock = threading.Lock()
        self._net_lock = threading.Lock()

    def add_bytes(self, data: bytes, name: str) -> LoadedImage:
        """Decode an uploaded file (EXIF applied). Raises ``ImageReadError`` naming ``name``."""
        image_id = hashlib.sha256(data).hexdigest()[:16]
        with self._lock:
            if image_id in self._images:
                self._images.move_to_end(image_id)
                return self._images[image_id]
        image = decode_image_rgb(data, name, self.max_pixels)
        return self._insert(LoadedImage(image_id, name, image))

    def add_array(self, image: np.ndarray, name: str) -> LoadedImage:
        """Add an already decoded ``(H, W, 3)`` uint8 image (the built-in examples)."""
        image_id = hashlib.sha256(image.tobytes() + str(image.shape).encode()).hexdigest()[:16]
        with self._lock:
            if image_id in self._images:
                self._images.move_to_end(image_id)
                return self._images[image_id]
        return self._insert(LoadedImage(image_id, name, np.ascontiguousarray(image)))

    def get(self, image_id: str) -> LoadedImage:
        """Raises ``KeyError`` when the id is unknown or was dropped (the page re-uploads)."""
        with self._lock:
            item = self._images[image_id]
            self._images.move_to_end(image_id)
            return item

    def descriptors(self, image_id: str):
        """The image's ``DescriptorMap``, computed on first use."""
        item = self.get(image_id)
        if item.descriptors is None:
            with self._net_lock:  # one net run at a time: bounded memory, no oversubscribed cores
                if item.descriptors is None:
                    item.descriptors = self._describe(item.image)
            self._evict(keep=image_id)
        return item.descriptors

    def __len__(self) -> int:
        return len(self._images)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(i.nbytes for i in self._images.values())

    def _insert(self, item: LoadedImage) -> LoadedImage:
        with self._lock:
            self._images[item.id] = item
        self._evict(keep=item.id)
        return item

    def _evict(self, keep: str) -> None:
        with self._lock:
            total = sum(i.nbytes for i in self._images.values())
            for image_id in list(self._images):
                if total <= self.max_bytes:
                    break
                if image_id != keep:
                    total -= self._images.pop(image_id).nbytes


def _check_points(points: Sequence[Sequence[float]], size: tuple[int, int], what: str) -> list[tuple[float, float]]:
    h, w = size
    out = []
    for p in points:
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            raise ValueError(f"{what}: a point is [x, y], got {p!r}")
        x, y = float(p[0]), float(p[1])
        if not (0 <= x < w and 0 <= y < h):
            raise ValueError(f"{what}: point ({x:g}, {y:g}) is outside the image of {w}x{h} pixels")
        out.append((x, y))
    return out


def query_map(dmap, positives: Sequence[Sequence[float]], negatives: Sequence[Sequence[float]] = (), radius: float = 0.0) -> np.ndarray:
    """Material-similarity map of a set of clicked points, at the descriptor resolution.

    Args:
        dmap: the image's ``DescriptorMap``.
        positives: ``[x, y]`` points (original pixels) on the material; their disc descriptors
            are averaged (then normalised) into one query.
        negatives: ``[x, y]`` points on other materials: a pixel more similar to its closest
            negative ``n`` than to the query ``s`` is pushed down to ``2 s - n`` (continuous at
            ``s = n``, unchanged where ``s >= n``).
        radius: disc radius in original pixels.

    Returns:
        ``(h, w)`` float32 in [-1, 1] (cosine similarity; the descriptor grid of ``dmap``).

    Raises:
        ValueError: no positive point, a malformed point or one outside the image.
    """
    import torch
    import torch.nn.functional as F

    pos = _check_points(positives, dmap.image_size, "positive points")
    neg = _check_points(negatives, dmap.image_size, "negative points")
    if not pos:
        raise ValueError("at least one positive point is needed")
    query = F.normalize(torch.stack([dmap.point_descriptor(x, y, radius) for x, y in pos]).sum(0), dim=0)
    sim = dmap.similarity_lowres(query)
    if neg:
        closest_negative = np.max([dmap.similarity_lowres(dmap.point_descriptor(x, y, radius)) for x, y in neg], axis=0)
        sim = np.minimum(sim, 2 * sim - closest_negative)
    return np.clip(sim, -1.0, 1.0).astype(np.float32)


def quantize_map(values: np.ndarray) -> bytes:
    """``(h, w)`` float in [-1, 1] -> row-major uint8 bytes, ``round((v + 1) * 127.5)``."""
    return np.rint((np.clip(values, -1, 1) + 1.0) * 127.5).astype(np.uint8).tobytes()


def upsample(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a ``(h, w)`` or ``(K, h, w)`` float grid to ``size`` = (H, W)."""
    from matseg.net.infer import _resize

    return _resize(values, size)


def npy_bytes(values: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, values)
    return buf.getvalue()


def segment_legend(labels: np.ndarray, palette: np.ndarray) -> list[dict]:
    """Per label: id, RGB colour and share of the image (labels ``(h, w)`` ints)."""
    counts = np.bincount(labels.ravel(), minlength=int(labels.max()) + 1)
    return [
        {"label": int(k), "colour": [int(c) for c in palette[k % len(palette)]], "fraction": float(n / labels.size)}
        for k, n in enumerate(counts)
    ]
