"""Evaluation as batch jobs: one item per image, a JSON record per image, resumable.

* :class:`BenchmarkJob` — the MatSeg benchmark's triplet metric (paper §4.1).
* :class:`MaskJob` — IoU at the optimal threshold on a mask dataset (paper §4.2).

Both write ``OUT/images/<name>.json`` atomically per image (a rerun skips finished images) and,
for the first ``panel_images`` images, ``OUT/panels/<name>.png``. :func:`collect_results` reads
the records back and averages them. Per-image randomness (prompt points, sampled points) comes
from ``derive_seed(seed, crc32(image name))``, so it depends on neither the worker count nor the
order or number of images in the dataset.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import matseg
from matseg.config import option, section, to_dict
from matseg.evaluate import metrics
from matseg.evaluate.benchmark import (
    DEFAULT_MAX_SIZE,
    BenchmarkEntry,
    BenchmarkFormatError,
    BenchmarkImage,
    load_benchmark_image,
)
from matseg.evaluate.iou import MaskDatasetError, MaskEntry, MaskImage, best_iou, load_mask_image, sample_segment_points
from matseg.evaluate.predictors import DescriptorPredictor, PointPredictor, Predictor, create_predictor
from matseg.io.atomic import write_json_atomic
from matseg.runner import ItemError, WorkItem, derive_seed

__all__ = [
    "PredictorConfig",
    "EvalConfig",
    "BenchmarkEvalConfig",
    "MaskEvalConfig",
    "BenchmarkJob",
    "MaskJob",
    "benchmark_point_similarity",
    "evaluate_benchmark_image",
    "evaluate_mask_image",
    "collect_results",
    "item_file_name",
]

MAX_PANEL_ANCHORS = 6


@dataclass
class PredictorConfig:
    """Which predictor runs and with which options."""

    name: str | None = option(None, "predictor name (`matseg eval predictors` lists them)", "ours")
    args: dict = option({}, "predictor options, e.g. {blur: 19} or {checkpoint: sam_vit_b_01ec64.pth, points: 4}", "ours")

    def __post_init__(self):
        if not isinstance(self.args, dict) or not all(isinstance(k, str) for k in self.args):
            raise ValueError(f"predictor.args must be a mapping of option names to values, got {self.args!r}")


@dataclass
class EvalConfig:
    """What every evaluation records: predictor, dataset, image size, seed."""

    predictor: PredictorConfig = section(PredictorConfig, "the predictor")
    root: str = option("", "dataset folder", "ours")
    max_size: int = option(DEFAULT_MAX_SIZE, "resize images (and points, radii, masks) so the longer side is at most this; 0 = full size", "§1.10")
    seed: int = option(0, "master seed: prompt points of point-conditioned predictors, random points per segment", "ours")
    panel_images: int = option(4, "images that get a PNG panel of similarity maps", "ours")

    def __post_init__(self):
        for name in ("max_size", "seed", "panel_images"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class BenchmarkEvalConfig(EvalConfig):
    """Triplet evaluation on the MatSeg benchmark (resolved copy saved as config.yaml)."""

    weight_square: float = option(0.6, "similarity of materials grouped as [a,b] in group_relations.txt", "§1.10")
    weight_round: float = option(0.3, "similarity of materials grouped as (a,b)", "§1.10")

    def __post_init__(self):
        super().__post_init__()
        for name in ("weight_square", "weight_round"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)}")


@dataclass
class MaskEvalConfig(EvalConfig):
    """IoU at the optimal threshold on a mask dataset (resolved copy saved as config.yaml)."""

    num_points: int = option(20, "random points per ground-truth segment", "paper §4.2")
    background_label: int | None = option(0, "label-map value that is no segment but is scored: its pixels are negatives (null: every label is a segment)", "ours")
    ignore_label: int | None = option(None, "label-map value whose pixels are not scored at all, e.g. 255 (null: none)", "ours")
    min_segment_pixels: int = option(64, "segments with fewer pixels (after resizing) are skipped", "ours")

    def __post_init__(self):
        super().__post_init__()
        if self.num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {self.num_points}")
        if self.min_segment_pixels < 1:
            raise ValueError(f"min_segment_pixels must be >= 1, got {self.min_segment_pixels}")


def item_file_name(name: str) -> str:
    """File-system name of an image's records (nested dataset names keep their parts)."""
    return name.replace("/", "__").replace("\\", "__")


def image_seed(master_seed: int, name: str) -> int:
    return derive_seed(master_seed, zlib.crc32(name.encode("utf-8")))


def _check_descriptors(descriptors: np.ndarray, image: np.ndarray, predictor: Predictor) -> np.ndarray:
    if not isinstance(descriptors, np.ndarray) or descriptors.ndim != 3 or descriptors.shape[:2] != image.shape[:2]:
        got = getattr(descriptors, "shape", type(descriptors).__name__)
        raise ItemError(f"predictor {predictor.name!r} returned {got}, expected ({image.shape[0]}, {image.shape[1]}, C) descriptors")
    if not np.isfinite(descriptors).all():
        raise ItemError(f"predictor {predictor.name!r} returned NaN or infinite descriptors")
    return descriptors


def _check_map(sim: np.ndarray, shape: tuple[int, int], predictor: Predictor) -> np.ndarray:
    sim = np.asarray(sim)
    if sim.shape != tuple(shape) or not np.isfinite(sim).all():
        raise ItemError(f"predictor {predictor.name!r} returned a similarity map of shape {sim.shape} (expected {tuple(shape)}, finite)")
    return sim


# ----------------------------------------------------------------------------- benchmark


def _prompt_points(image: BenchmarkImage, anchor: int, predictor: PointPredictor, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Prompt point indices for ``anchor``: the anchor plus other points of its material (positive),
    points of the least similar materials (negative; GT 0 when any), drawn without replacement."""
    gt = image.point_similarity[anchor]
    others = np.flatnonzero(np.arange(image.num_points) != anchor)
    same = others[image.labels[others] == image.labels[anchor]]
    positive = np.concatenate([[anchor], rng.permutation(same)[: predictor.num_positive - 1]]).astype(np.int64)
    if predictor.num_negative == 0:
        return positive, np.zeros(0, dtype=np.int64)
    pool = others[image.labels[others] != image.labels[anchor]]
    if pool.size:
        pool = pool[gt[pool] == gt[pool].min()]
    return positive, rng.permutation(pool)[: predictor.num_negative].astype(np.int64)


def benchmark_point_similarity(
    predictor: Predictor, image: BenchmarkImage, rng: np.random.Generator, map_anchors: list[int] = ()
) -> tuple[np.ndarray, np.ndarray | None, dict[int, np.ndarray], dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Predicted point-to-point similarity of one benchmark image.

    Returns:
        ``(pred, exclude, maps, prompts)``: ``pred`` ``(N, N)`` float64 (row = anchor);
        ``exclude`` ``(N, N)`` bool of prompt points left out of each anchor's triplets (None for
        descriptor predictors); ``maps`` the ``(H, W)`` similarity map of each anchor in
        ``map_anchors``; ``prompts`` ``{anchor: (positive idx, negative idx)}``.
    """
    n = image.num_points
    maps: dict[int, np.ndarray] = {}
    prompts: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if isinstance(predictor, DescriptorPredictor):
        descriptors = _check_descriptors(predictor.describe(image.image), image.image, predictor)
        vectors = metrics.point_descriptors(descriptors, image.points)
        if map_anchors:
            for a, m in zip(map_anchors, metrics.cosine_maps(descriptors, vectors[list(map_anchors)])):
                maps[a] = m
        return metrics.descriptor_similarity(vectors), None, maps, prompts
    if not isinstance(predictor, PointPredictor):
        raise ItemError(f"predictor {predictor.name!r} is neither a DescriptorPredictor nor a PointPredictor")
    predictor.set_image(image.image)
    pred = np.zeros((n, n), dtype=np.float64)
    exclude = np.zeros((n, n), dtype=bool)
    xy = image.points[:, :2]
    for a in range(n):
        pos, neg = _prompt_points(image, a, predictor, rng)
        sim = _check_map(predictor.similarity(xy[pos], xy[neg]), image.image.shape[:2], predictor)
        pred[a] = metrics.disc_means(sim, image.points)
        exclude[a, pos] = exclude[a, neg] = True
        if a in map_anchors:
            maps[a] = sim.astype(np.float32)
            prompts[a] = (pos, neg)
    exclude[np.arange(n), np.arange(n)] = False  # the anchor is never its own triplet point anyway
    return pred, exclude, maps, prompts


def panel_anchors(image: BenchmarkImage) -> list[int]:
    """The first point of each material (at most ``MAX_PANEL_ANCHORS``)."""
    firsts = [int(np.flatnonzero(image.labels == m)[0]) for m in np.unique(image.labels)]
    return firsts[:MAX_PANEL_ANCHORS]


def evaluate_benchmark_image(
    predictor: Predictor, image: BenchmarkImage, seed: int, want_maps: bool = False
) -> tuple[dict, dict]:
    """Triplet metrics of one loaded benchmark image.

    Returns:
        ``(record, panel_data)``: the JSON-ready record (results per mode and variant, point
        counts, timing) and, when ``want_maps``, ``{"anchors", "maps", "prompts"}`` for the panel.
    """
    rng = np.random.default_rng(seed)
    anchors = panel_anchors(image) if want_maps else []
    t0 = time.perf_counter()
    pred, exclude, maps, prompts = benchmark_point_similarity(predictor, image, rng, anchors)
    t1 = time.perf_counter()
    results = metrics.evaluate_points(pred, image.material_similarity, image.labels, image.has_relations, exclude)
    t2 = time.perf_counter()
    record = {
        "name": image.name,
        "seed": seed,
        "size": [int(image.image.shape[0]), int(image.image.shape[1])],
        "original_size": list(image.original_size),
        "points": image.num_points,
        "materials": image.materials,
        "points_per_material": [int((image.labels == m).sum()) for m in range(len(image.materials))],
        "has_relations": image.has_relations,
        "sources": image.sources,
        "results": results,
        "timing": {"predict_s": round(t1 - t0, 4), "metric_s": round(t2 - t1, 4)},
    }
    if image.warnings:
        record["warnings"] = image.warnings
    return record, {"anchors": anchors, "maps": maps, "prompts": prompts}


class _EvalJob:
    """What both evaluation jobs share: items from scanned entries, records on disk, a predictor per worker."""

    kind = ""

    def __init__(self, cfg, out_dir: Path, entries: list, imports: tuple[str, ...] = ()):
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.entries = list(entries)
        self.imports = tuple(imports)
        self.predictor: Predictor | None = None

    def items(self) -> list[WorkItem]:
        return [WorkItem(i, e.name, image_seed(self.cfg.seed, e.name)) for i, e in enumerate(self.entries)]

    def record_path(self, name: str) -> Path:
        return self.out_dir / "images" / f"{item_file_name(name)}.json"

    def is_done(self, item: WorkItem) -> bool:
        return self.record_path(item.name).is_file()

    def setup(self) -> None:
        import importlib

        import cv2

        cv2.setNumThreads(1)
        for module in self.imports:
            importlib.import_module(module)
        self.predictor = create_predictor(self.cfg.predictor.name, **self.cfg.predictor.args)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["predictor"] = None  # each worker builds its own in setup()
        return state

    def load(self, entry):
        """Read one dataset entry; raises :class:`ItemError` for bad input."""
        raise NotImplementedError

    def evaluate(self, image, seed: int, want_panel: bool) -> tuple[dict, np.ndarray | None]:
        """``(record, panel or None)`` for one loaded image."""
        raise NotImplementedError

    def run(self, item: WorkItem) -> dict:
        from matseg.io.images import write_image

        started = time.perf_counter()
        image = self.load(self.entries[item.index])
        load_s = time.perf_counter() - started
        record, panel = self.evaluate(image, item.seed, item.index < self.cfg.panel_images)
        record["timing"]["load_s"] = round(load_s, 4)
        record["index"] = item.index
        record["timing"]["total_s"] = round(time.perf_counter() - started, 4)
        if panel is not None:
            path = self.out_dir / "panels" / f"{item_file_name(item.name)}.png"
            write_image(path, panel)
            record["panel"] = str(path.relative_to(self.out_dir))
        write_json_atomic(self.record_path(item.name), record)
        return {"warnings": record.get("warnings", [])}


class BenchmarkJob(_EvalJob):
    """Runner job: benchmark image -> ``OUT/images/<name>.json`` (+ panel)."""

    name = "eval matseg-bench"
    kind = "matseg-bench"

    cfg: BenchmarkEvalConfig
    entries: list[BenchmarkEntry]

    def load(self, entry: BenchmarkEntry) -> BenchmarkImage:
        weights = {"[": self.cfg.weight_square, "(": self.cfg.weight_round}
        try:
            return load_benchmark_image(entry, self.cfg.max_size or None, weights)
        except BenchmarkFormatError as exc:
            raise ItemError(str(exc)) from None

    def evaluate(self, image: BenchmarkImage, seed: int, want_panel: bool) -> tuple[dict, np.ndarray | None]:
        from matseg.evaluate.report import benchmark_panel

        record, panel_data = evaluate_benchmark_image(self.predictor, image, seed, want_panel)
        return record, benchmark_panel(image, record["results"], **panel_data) if want_panel else None


# ----------------------------------------------------------------------------- masks


def evaluate_mask_image(
    predictor: Predictor, image, num_points: int, seed: int, want_maps: bool = False
) -> tuple[dict, list[dict]]:
    """IoU at the optimal threshold for every segment of one loaded :class:`~matseg.evaluate.iou.MaskImage`.

    Returns:
        ``(record, panel_rows)``: the record (per segment: pixels, IoU and threshold per point,
        mean IoU) and, when ``want_maps``, the first point of each segment with its map for the panel.
    """
    rng = np.random.default_rng(seed)
    h, w = image.image.shape[:2]
    flat = None
    t_predict = t_metric = 0.0
    t0 = time.perf_counter()
    if isinstance(predictor, DescriptorPredictor):
        descriptors = _check_descriptors(predictor.describe(image.image), image.image, predictor)
        flat = metrics.l2_normalize(descriptors.reshape(-1, descriptors.shape[2]).astype(np.float32, copy=False))
    elif isinstance(predictor, PointPredictor):
        predictor.set_image(image.image)
    else:
        raise ItemError(f"predictor {predictor.name!r} is neither a DescriptorPredictor nor a PointPredictor")
    t_predict += time.perf_counter() - t0
    segments, panel_rows, warnings = [], [], []
    for name, seg in zip(image.segment_names, image.segments):
        if not (image.valid & ~seg).any():
            warnings.append(f"segment {name} covers every scored pixel: no negatives, so any map scores IoU 1")
        points = sample_segment_points(seg, num_points, rng, image.valid)
        ious, thresholds = [], []
        if flat is not None:
            t0 = time.perf_counter()
            idx = points[:, 1].astype(np.int64) * w + points[:, 0].astype(np.int64)
            sims = metrics.dot_rows(flat[idx], flat).reshape(-1, h, w)
            t_predict += time.perf_counter() - t0
        for k, (x, y) in enumerate(points):
            t0 = time.perf_counter()
            if flat is not None:
                sim = sims[k]
                prompt = (np.array([[x, y]]), np.zeros((0, 2)))
            else:
                extra = sample_segment_points(seg, predictor.num_positive, rng, image.valid)
                extra = extra[(extra[:, 0] != x) | (extra[:, 1] != y)][: predictor.num_positive - 1]
                negative = sample_segment_points(~seg, predictor.num_negative, rng, image.valid)
                prompt = (np.concatenate([[[x, y]], extra]), negative)
                sim = _check_map(predictor.similarity(*prompt), (h, w), predictor)
            t1 = time.perf_counter()
            iou, thr = best_iou(sim, seg, image.valid)
            t_metric += time.perf_counter() - t1
            t_predict += t1 - t0
            ious.append(round(iou, 6))
            thresholds.append(round(thr, 6))
            if want_maps and k == 0:
                panel_rows.append({"name": name, "segment": seg, "valid": image.valid, "sim": sim, "threshold": thr,
                                   "iou": iou, "prompt": prompt})  # fmt: skip
        segments.append({
            "name": name,
            "pixels": int((seg & image.valid).sum()),
            "points": points.astype(int).tolist(),
            "ious": ious,
            "thresholds": thresholds,
            "mean_iou": float(np.mean(ious)) if ious else float("nan"),
        })  # fmt: skip
    record = {
        "name": image.name,
        "seed": seed,
        "size": [h, w],
        "sources": image.sources,
        "segments": segments,
        "skipped_segments": image.skipped_segments,
        "mean_iou": float(np.mean([s["mean_iou"] for s in segments])) if segments else float("nan"),
        "timing": {"predict_s": round(t_predict, 4), "metric_s": round(t_metric, 4)},
    }
    if warnings:
        record["warnings"] = warnings
    return record, panel_rows


class MaskJob(_EvalJob):
    """Runner job: mask-dataset image -> ``OUT/images/<name>.json`` (+ panel)."""

    name = "eval masks"
    kind = "masks"

    cfg: MaskEvalConfig
    entries: list[MaskEntry]

    def load(self, entry: MaskEntry) -> MaskImage:
        try:
            image = load_mask_image(
                entry, self.cfg.max_size or None, self.cfg.ignore_label, self.cfg.min_segment_pixels, self.cfg.background_label
            )
        except MaskDatasetError as exc:
            raise ItemError(str(exc)) from None
        if not len(image.segments):
            raise ItemError(f"{image.sources['annotation']}: no segment with >= {self.cfg.min_segment_pixels} pixels")
        return image

    def evaluate(self, image: MaskImage, seed: int, want_panel: bool) -> tuple[dict, np.ndarray | None]:
        from matseg.evaluate.report import mask_panel

        record, rows = evaluate_mask_image(self.predictor, image, self.cfg.num_points, seed, want_panel)
        skipped = [f"segment {name} skipped: {reason}" for name, reason in image.skipped_segments.items()]
        if skipped:
            record["warnings"] = skipped + record.get("warnings", [])
        return record, mask_panel(image.image, rows) if want_panel else None


# ----------------------------------------------------------------------------- collecting


def collect_results(job: _EvalJob) -> tuple[list[dict], dict]:
    """Read every finished image record of ``job`` (dataset order) and average them.

    Returns:
        ``(records, aggregate)``; benchmark: ``metrics.aggregate_images`` of the records;
        masks: ``{"miou_segments", "miou_images", "segments", "images", "points"}`` (mean over all
        segments of their mean IoU, mean over images of their mean).
    """
    records = []
    for entry in job.entries:
        path = job.record_path(entry.name)
        if path.is_file():
            records.append(json.loads(path.read_text(encoding="utf-8")))
    if job.kind == "matseg-bench":
        return records, metrics.aggregate_images([r["results"] for r in records])
    seg_means = [s["mean_iou"] for r in records for s in r["segments"]]
    img_means = [r["mean_iou"] for r in records if r["segments"]]
    aggregate = {
        "miou_segments": float(np.mean(seg_means)) if seg_means else float("nan"),
        "miou_images": float(np.mean(img_means)) if img_means else float("nan"),
        "segments": len(seg_means),
        "images": len(img_means),
        "points": int(sum(len(s["ious"]) for r in records for s in r["segments"])),
    }
    return records, aggregate


def results_document(job: _EvalJob, records: list[dict], aggregate: dict, predictor_params: dict) -> dict:
    """The content of ``results.json``: what was evaluated, how, and the numbers."""
    return {
        "task": job.kind,
        "matseg_version": matseg.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "predictor": {"name": job.cfg.predictor.name, "args": job.cfg.predictor.args, "params": predictor_params},
        "config": to_dict(job.cfg),
        "aggregate": aggregate,
        "images": records,
    }
