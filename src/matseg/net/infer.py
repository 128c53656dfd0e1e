"""Inference with a trained descriptor net: descriptor maps, point similarity maps, segmentation.

Images of any size are resized so their longer side is at most ``max_side`` (default: the
weights' own ``input_side``, e.g. 384 px for the shipped model, else 1024)
before the net runs; descriptors come out at a quarter of that resolution. Similarity maps and
label maps are computed there and resized back to the original image (bilinear for
similarities, then arg-max for labels), so every result is in original image coordinates,
EXIF orientation applied when images are read from files.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from matseg.io.images import read_image_rgb
from matseg.net.checkpoint import load_model
from matseg.net.memory import keep_freed_memory, prefer_huge_pages
from matseg.net.model import DescriptorNet
from matseg.net.precision import autocast, resolve_precision


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)


@dataclass
class DescriptorMap:
    """Descriptors of one image at the net's output resolution.

    Attributes:
        descriptors: (D, h, w) float32 unit vectors.
        image_size: (H, W) of the original image.
    """

    descriptors: torch.Tensor
    image_size: tuple[int, int]

    @property
    def scale(self) -> tuple[float, float]:
        """(sy, sx): descriptor cells per original pixel."""
        h, w = self.descriptors.shape[-2:]
        return h / self.image_size[0], w / self.image_size[1]

    def point_descriptor(self, x: float, y: float, radius: float = 0.0) -> torch.Tensor:
        """Normalised mean descriptor of the disc of ``radius`` original pixels around (x, y)."""
        H, W = self.image_size
        if not (0 <= x < W and 0 <= y < H):
            raise ValueError(f"point ({x}, {y}) outside the image of size {W}x{H} (x, y)")
        sy, sx = self.scale
        h, w = self.descriptors.shape[-2:]
        cy, cx = (y + 0.5) * sy - 0.5, (x + 0.5) * sx - 0.5
        r = max(radius * min(sy, sx), 0.5)
        # Only the disc's bounding box: a few cells, not the whole grid (an interactive click
        # must not wait on whole-grid operations).
        y0, y1 = max(0, math.floor(cy - r)), min(h, math.ceil(cy + r) + 1)
        x0, x1 = max(0, math.floor(cx - r)), min(w, math.ceil(cx + r) + 1)
        yy, xx = torch.meshgrid(torch.arange(y0, y1), torch.arange(x0, x1), indexing="ij")
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        window = self.descriptors[:, y0:y1, x0:x1]
        if not disc.any():
            return F.normalize(self.descriptors[:, min(h - 1, round(cy)), min(w - 1, round(cx))], dim=0)
        return F.normalize(window[:, disc].mean(1), dim=0)

    def similarity(self, vector: torch.Tensor) -> np.ndarray:
        """Cosine similarity of every original pixel to ``vector`` (D,): (H, W) float32 in [-1, 1]."""
        return _resize(self.similarity_lowres(vector), self.image_size)

    def similarity_lowres(self, vector: torch.Tensor) -> np.ndarray:
        """Cosine similarity at the descriptor resolution: (h, w) float32 in [-1, 1]."""
        return torch.einsum("dhw,d->hw", self.descriptors, vector.to(self.descriptors)).cpu().numpy()

    def material_scores(self, num_materials: int | None = None, max_materials: int = 8, seed: int = 0) -> np.ndarray:
        """Similarity of every descriptor cell to each material found by clustering.

        Returns:
            (K, h, w) float32 cosine similarities at the descriptor resolution; the arg-max over
            K is the segmentation (K = ``num_materials``, or chosen by silhouette in
            2..``max_materials``).
        """
        d = self.descriptors.shape[0]
        grid = self.descriptors.cpu().numpy()
        centers = cluster_descriptors(grid.reshape(d, -1).T, num_materials, max_materials, seed)
        return np.einsum("kd,dhw->khw", centers, grid).astype(np.float32)


def _resize(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    H, W = size
    if values.shape[-2:] == (H, W):
        return values.astype(np.float32)
    if values.ndim == 2:
        return cv2.resize(values.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)
    return np.stack([cv2.resize(v.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR) for v in values])


#: Longer side matseg's own nets see when neither the caller nor the weights say (the authors'
#: net: REFERENCE_MAX_SIDE). A checkpoint may name its own (``input_side``, see
#: :func:`weights_input_side`): the shipped model's is 384 px, where it was measured best.
DEFAULT_MAX_SIDE = 1024

#: Test-time augmentation measured best on the dev set (docs/model-card.md): the image also at
#: 0.75 and 0.5 of the first view's side (each material covers fewer pixels, the net sees more of
#: it at once), and every size mirrored too. ``matseg predict/segment --tta`` and
#: ``Predictor(**TTA_PRESET)``.
TTA_PRESET = {"extra_scales": (0.75, 0.5), "flip": True}

MIN_VIEW_SIDE = 32  # the net's stride: a smaller view has no descriptor grid


def tta_options(enabled: bool) -> dict:
    """:class:`Predictor` keyword arguments of ``--tta``: :data:`TTA_PRESET` or none."""
    return dict(TTA_PRESET) if enabled else {}


def view_sides(image_size: tuple[int, int], max_side: int, extra_sides=(), extra_scales=()) -> list[int]:
    """Longer sides of the views of an image.

    The first view is the image at ``max_side`` (never enlarged); then ``extra_sides`` (absolute,
    capped at the first view's side) and ``extra_scales`` (fractions of the first view's side,
    at least :data:`MIN_VIEW_SIDE`). Duplicates dropped, order kept.
    """
    cap = min(int(max_side), max(image_size))
    sides = [cap]
    for side in (*(min(int(s), cap) for s in extra_sides), *(max(MIN_VIEW_SIDE, round(cap * f)) for f in extra_scales)):
        if side not in sides:
            sides.append(side)
    return sides


def check_view_scales(extra_scales) -> tuple[float, ...]:
    """``extra_scales`` as floats, each a fraction of the first view's side in (0, 1]."""
    scales = tuple(float(f) for f in extra_scales)
    if any(not 0 < f <= 1 for f in scales):
        raise ValueError(f"extra_scales must lie in (0, 1], got {list(scales)}")
    return scales


def weights_input_side(path: str | os.PathLike) -> int | None:
    """The longer image side a weights file was made to see (``input_side`` in its metadata's
    ``extra``, written by ``matseg train`` from the config's ``input_side``), or None."""
    from matseg.net.checkpoint import REFERENCE_SUFFIXES, read_metadata

    if Path(path).suffix.lower() in REFERENCE_SUFFIXES:  # the authors' files carry no metadata
        return None
    side = read_metadata(path)["extra"].get("input_side")
    return int(side) if side else None


def describe_views(describe_at, image: np.ndarray, sides: list[int], flip: bool = False) -> list[torch.Tensor]:
    """Test-time augmentation: the mean of an image's feature maps over several sizes and mirrors.

    Args:
        describe_at: ``describe_at(image, side) -> list of (C_k, h_k, w_k) float tensors``, the
            feature maps of ``image`` resized to longer side ``side`` (one map for a descriptor
            net, one per tap for a multi-scale encoder).
        image: (H, W, 3) uint8 RGB.
        sides: longer sides of the views (see :func:`view_sides`); the first view's grids are
            the output grids.
        flip: add the left-right mirror image of every size (its maps are mirrored back).

    Returns:
        One (C_k, h_k, w_k) float32 tensor per map: the mean over the views, each resized
        (bilinear) to the first view's grid. Not renormalised; with one view and no flip
        exactly ``describe_at(image, sides[0])``.
    """
    if not sides:
        raise ValueError("describe_views needs at least one side")
    mirrored = np.ascontiguousarray(image[:, ::-1]) if flip else None
    total, count = None, 0
    for side in sides:
        for mirror in (False, True) if flip else (False,):
            maps = describe_at(mirrored if mirror else image, side)
            if mirror:
                maps = [m.flip(-1) for m in maps]
            if total is None:
                total = [m.float().clone() for m in maps]
            else:
                for acc, m in zip(total, maps):
                    if m.shape[-2:] != acc.shape[-2:]:
                        m = F.interpolate(m[None].float(), size=acc.shape[-2:], mode="bilinear", align_corners=False)[0]
                    acc += m
            count += 1
    return [acc / count for acc in total] if count > 1 else total


class Predictor:
    """A loaded descriptor net with image-level helpers.

    Args:
        model: a :class:`DescriptorNet`, a path to a ``.safetensors`` checkpoint, or None for
            the default model that ships with matseg (:mod:`matseg.models`).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``. On the
            CPU the process's C library is told to keep freed memory for reuse
            (:func:`matseg.net.memory.keep_freed_memory`; ``MATSEG_KEEP_FREED_MEMORY=0`` opts out).
        max_side: longer image side the net sees (images are resized, not tiled, with area
            averaging). None: the weights' own ``input_side`` (the shipped model's registry
            entry, or a checkpoint's metadata), else 1024 px; for the authors' net
            (:class:`~matseg.net.reference.ReferenceNet`) their scripts' rule, 700 px with
            bilinear resizing and truncated sizes.
        precision: ``"fp32"`` (default), ``"bf16"``, ``"fp16"`` (CUDA) or ``"auto"`` (bf16 on
            a CPU with native bf16 or on CUDA, else fp32); autocast around the net only.
        extra_sides, extra_scales: test-time augmentation: the net also sees the image at
            these longer sides (never enlarged), or at these fractions of the first view's
            side, and the descriptors are averaged on the first view's grid; ``flip``: mirrored
            views too. :data:`TTA_PRESET` is the measured best; each view costs a pass (the
            preset: about 6x the time of one pass at 384 px).

    ``source`` says which weights are loaded, for the records of every output: ``{"model":
    version name, "sha256": ...}`` for a shipped model, ``{"weights": path, "sha256": ...}``
    for a file, ``{}`` for a net passed in memory.

    Raises:
        matseg.models.ModelNotAvailable: ``model`` is None and no default model is installed.
        matseg.net.checkpoint.CheckpointError: the weights file is not a usable checkpoint.
    """

    def __init__(self, model: DescriptorNet | str | os.PathLike | None = None, device: str = "auto",
                 max_side: int | None = None, precision: str = "fp32", extra_sides=(), extra_scales=(), flip: bool = False):  # fmt: skip
        self.device = pick_device(device)
        if self.device.type == "cpu":
            keep_freed_memory()  # a fresh mmap per activation cost 30 % of a 512² prediction (matseg.net.memory)
            prefer_huge_pages()  # 5-10 % more, where no tensor exists yet (matseg.net.memory)
        self.autocast_dtype = resolve_precision(precision, self.device)
        self.precision = precision
        input_side = None
        if model is None:
            from matseg.models import verify

            info = verify()
            self.source = {"model": info["name"], "sha256": info["sha256"]}
            model = load_model(info["path"], self.device)
            input_side = info.get("input_side") or weights_input_side(info["path"])
        elif isinstance(model, (str, os.PathLike)):
            from matseg.io.hashing import sha256_file

            path = Path(model)
            self.source = {"weights": str(path.resolve()), "sha256": sha256_file(path) if path.is_file() else None}
            model = load_model(path, self.device)
            input_side = weights_input_side(path)
        else:
            self.source = {}
        self.model = model.to(self.device).eval()
        from matseg.net.reference import REFERENCE_MAX_SIDE, ReferenceNet

        self.reference_rules = isinstance(self.model, ReferenceNet)
        max_side = max_side or (REFERENCE_MAX_SIDE if self.reference_rules else input_side or DEFAULT_MAX_SIDE)
        extra_sides = tuple(int(side) for side in extra_sides)
        for side in (max_side, *extra_sides):
            if side < MIN_VIEW_SIDE:
                raise ValueError(f"max_side and extra_sides must be >= {MIN_VIEW_SIDE}, got {side}")
        self.max_side = max_side
        self.extra_sides = extra_sides
        self.extra_scales = check_view_scales(extra_scales)
        self.flip = bool(flip)

    @property
    def options(self) -> dict:
        """The settings that shape the descriptors, for the records of every output."""
        return {"max_side": self.max_side, "extra_sides": list(self.extra_sides), "extra_scales": list(self.extra_scales),
                "flip": self.flip, "precision": self.precision}  # fmt: skip

    @torch.inference_mode()
    def describe(self, image: np.ndarray | str | os.PathLike) -> DescriptorMap:
        """Descriptor map of an image (array ``(H, W, 3)`` uint8 RGB, or a file path)."""
        if not isinstance(image, np.ndarray):
            image = read_image_rgb(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
        sides = view_sides(image.shape[:2], self.max_side, self.extra_sides, self.extra_scales)
        (desc,) = describe_views(self._describe_at, image, sides, self.flip)
        if len(sides) > 1 or self.flip:
            desc = F.normalize(desc, dim=0)  # the mean of unit vectors is shorter than 1
        return DescriptorMap(desc, image.shape[:2])

    def _describe_at(self, image: np.ndarray, side: int) -> list[torch.Tensor]:
        """[(D, h, w) unit descriptors] of ``image`` resized to longer side ``side`` (never enlarged)."""
        H, W = image.shape[:2]
        scale = min(1.0, side / max(H, W))
        if scale < 1.0:
            if self.reference_rules:  # the authors' Demo.py/Evaluate.py: cv2 bilinear, int() sizes
                size, interpolation = (max(1, int(W * scale)), max(1, int(H * scale))), cv2.INTER_LINEAR
            else:
                size, interpolation = (max(1, round(W * scale)), max(1, round(H * scale))), cv2.INTER_AREA
            image = cv2.resize(image, size, interpolation=interpolation)
        x = torch.tensor(image, device=self.device).permute(2, 0, 1)[None].float()  # a copy: inputs may be read-only
        with autocast(self.device, self.autocast_dtype):
            return [self.model(x)[0].float()]

    def similarity_maps(self, image, points: list[tuple[float, float]], radius: float = 0.0) -> np.ndarray:
        """(N, H, W) float32 cosine similarity maps, one per point (x, y) in original pixels."""
        dmap = self.describe(image)
        return np.stack([dmap.similarity(dmap.point_descriptor(x, y, radius)) for x, y in points])

    def segment(self, image, num_materials: int | None = None, max_materials: int = 8, seed: int = 0) -> np.ndarray:
        """Material segmentation: (H, W) int32 labels 0..K-1 (K given, or chosen automatically)."""
        dmap = self.describe(image)
        sims = dmap.material_scores(num_materials, max_materials, seed)
        return _resize(sims, dmap.image_size).argmax(0).astype(np.int32)


def spherical_kmeans(vectors: np.ndarray, k: int, rng: np.random.Generator, iters: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """k-means on unit vectors with cosine similarity; k-means++ seeding.

    Args:
        vectors: (N, D) unit vectors.

    Returns:
        ``(centers (k, D) unit, labels (N,))``.
    """
    n = len(vectors)
    k = min(k, n)
    centers = [vectors[rng.integers(n)]]
    for _ in range(1, k):
        dist = 1.0 - np.max(vectors @ np.stack(centers).T, axis=1)
        p = np.clip(dist, 0, None)
        p = p / p.sum() if p.sum() > 0 else np.full(n, 1.0 / n)
        centers.append(vectors[rng.choice(n, p=p)])
    centers = np.stack(centers)
    labels = np.zeros(n, dtype=np.int64)
    for it in range(iters):
        new = (vectors @ centers.T).argmax(1)
        if it and np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            members = vectors[labels == j]
            if len(members):
                c = members.sum(0)
                centers[j] = c / max(np.linalg.norm(c), 1e-12)
    return centers, labels


def _silhouette_cosine(vectors: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Mean silhouette with cosine distance, via cluster sums (O(N k D))."""
    sums = np.stack([vectors[labels == j].sum(0) for j in range(k)])
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    mean_sim = vectors @ sums.T  # sum of similarities to each cluster
    own = labels
    a_counts = counts[own] - 1
    a = 1.0 - (mean_sim[np.arange(len(vectors)), own] - 1.0) / np.maximum(a_counts, 1)
    other = 1.0 - mean_sim / np.maximum(counts, 1)
    other[np.arange(len(vectors)), own] = np.inf
    b = other.min(1)
    s = (b - a) / np.maximum(np.maximum(a, b), 1e-12)
    s[a_counts == 0] = 0.0
    return float(s.mean())


def cluster_descriptors(vectors: np.ndarray, k: int | None, max_k: int = 8, seed: int = 0, sample: int = 4000) -> np.ndarray:
    """Cluster centres (K, D) of unit descriptors; K = ``k`` or the best silhouette in 2..max_k."""
    rng = np.random.default_rng(seed)
    if len(vectors) > sample:
        vectors = vectors[rng.choice(len(vectors), sample, replace=False)]
    if k is not None:
        if k < 1:
            raise ValueError(f"number of materials must be >= 1, got {k}")
        return spherical_kmeans(vectors, k, rng)[0]
    best, best_score = None, -np.inf
    for kk in range(2, max(2, max_k) + 1):
        centers, labels = spherical_kmeans(vectors, kk, np.random.default_rng([seed, kk]))
        if len(np.unique(labels)) < kk:
            continue
        score = _silhouette_cosine(vectors, labels, kk)
        if score > best_score:
            best, best_score = centers, score
    return best if best is not None else spherical_kmeans(vectors, 1, rng)[0]


def colorize_labels(labels: np.ndarray) -> np.ndarray:
    """(H, W) int labels -> (H, W, 3) uint8 RGB with the dataset viewer's palette."""
    from matseg.tools.show import PALETTE

    return PALETTE[labels % len(PALETTE)]


def heat_overlay(image: np.ndarray, similarity: np.ndarray, point: tuple[float, float] | None = None) -> np.ndarray:
    """Image blended with a colour map of ``similarity`` (clipped to [0, 1]); the point marked."""
    heat = cv2.applyColorMap(np.clip(similarity * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    out = cv2.addWeighted(image, 0.5, cv2.cvtColor(heat, cv2.COLOR_BGR2RGB), 0.5, 0)
    if point is not None:
        r = max(4, min(image.shape[:2]) // 100)
        center = (int(round(point[0])), int(round(point[1])))
        cv2.circle(out, center, r + 2, (0, 0, 0), -1)
        cv2.circle(out, center, r, (255, 255, 255), -1)
    return out


def save_similarity_outputs(out_dir: Path, stem: str, image: np.ndarray, sim: np.ndarray, point) -> list[Path]:
    """``<stem>.npy`` (float32, [-1, 1]), ``<stem>.png`` (8-bit: clip(sim, 0, 1) x 255), ``<stem>_overlay.png``."""
    from matseg.io.atomic import write_bytes_atomic
    from matseg.io.images import to_uint8, write_image
    import io

    buf = io.BytesIO()
    np.save(buf, sim.astype(np.float32))
    paths = [out_dir / f"{stem}.npy", out_dir / f"{stem}.png", out_dir / f"{stem}_overlay.png"]
    write_bytes_atomic(paths[0], buf.getvalue())
    write_image(paths[1], to_uint8(np.clip(sim, 0, 1)))
    write_image(paths[2], heat_overlay(image, sim, point))
    return paths
