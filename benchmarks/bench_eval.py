"""Evaluation speed and baseline figures on the shared MatSeg benchmark sample.

Prints, for each baseline predictor (random, colour, texture): the triplet metric on
../shared/data/benchmark_sample (every mode and variant), the time per image of the predictor
and of the metric, and the time of the IoU-at-optimal-threshold search per point on a map of
the same size. Also compares the colour baseline for several blur kernels with the reference
metric's numbers (digest §3.6).

    .venv/bin/python benchmarks/bench_eval.py [--repeats 5] [--root ../shared/data/benchmark_sample]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from matseg.evaluate import metrics
from matseg.evaluate.benchmark import load_benchmark_image, scan_benchmark
from matseg.evaluate.iou import best_iou
from matseg.evaluate.predictors import create_predictor

DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmark_sample"
# digest §3.6: the reference metric on this image at 525x700, soft branch (triplet point / material / top-1 point / material)
REFERENCE = {"colour (blurred Lab)": (0.9129, 0.9265, 1.0, 1.0), "random (8-D)": (0.4831, 0.4866, 0.3784, 0.3394)}


def _median_time(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _metric(descriptors, image):
    vectors = metrics.point_descriptors(descriptors, image.points)
    pred = metrics.descriptor_similarity(vectors)
    return metrics.evaluate_points(pred, image.material_similarity, image.labels, image.has_relations)


def _row(results, mode, variant):
    e = results[mode][variant]
    return "skipped" if "skipped" in e else " / ".join(f"{e[k]:.4f}" for k in metrics.METRIC_KEYS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cv2.setNumThreads(1)  # one image per core, as the evaluation job runs it

    print(f"machine: {platform.machine()} {platform.processor() or ''}, Python {platform.python_version()}, "
          f"NumPy {np.__version__}, OpenCV {cv2.__version__}, single thread")  # fmt: skip
    entries = scan_benchmark(args.root)
    load_s, image = _median_time(lambda: load_benchmark_image(entries[0]), args.repeats)
    print(f"image {image.name}: {image.original_size[1]}x{image.original_size[0]} -> {image.image.shape[1]}x{image.image.shape[0]}, "
          f"{image.num_points} points, {len(image.materials)} materials; load (decode 12 Mpx JPEG + EXIF + resize) {load_s * 1000:.0f} ms")  # fmt: skip
    print()
    print("predictor (options)                          | predict ms | metric ms | mode/variant: triplet point / material / top-1 point / material")
    seeds = {}
    for name, kwargs in [("random", {}), ("colour", {}), ("texture", {})]:
        predictor = create_predictor(name, **kwargs)
        predictor.describe(image.image)  # warm-up (imports, allocations)
        predict_s, descriptors = _median_time(lambda: predictor.describe(image.image), args.repeats)
        metric_s, results = _median_time(lambda: _metric(descriptors, image), args.repeats)
        label = f"{name} {predictor.params()}"
        print(f"{label:44s} | {predict_s * 1000:10.1f} | {metric_s * 1000:9.2f} | all/paper {_row(results, 'all', 'paper')}")
        print(f"{'':44s} | {'':10s} | {'':9s} | all/reference {_row(results, 'all', 'reference')}")
        seeds[name] = descriptors
    print()
    print("random baseline over seeds 0-9 (chance level), all/paper triplet point:")
    values = []
    for seed in range(10):
        d = create_predictor("random", seed=seed).describe(image.image)
        values.append(_metric(d, image)["all"]["paper"]["triplet_point"])
    print(f"  mean {np.mean(values):.4f}, min {np.min(values):.4f}, max {np.max(values):.4f}")
    print()
    print("colour baseline vs the reference metric (digest §3.6: 0.9129 / 0.9265 / 1.0 / 1.0), all/reference:")
    for blur in (0, 9, 15, 17, 19, 21, 31):
        results = _metric(create_predictor("colour", blur=blur).describe(image.image), image)
        print(f"  blur {blur:2d}: {_row(results, 'all', 'reference')}")
    results = _metric(create_predictor("colour", centre=False).describe(image.image), image)
    print(f"  blur 19, not centred: {_row(results, 'all', 'reference')}")
    print()
    h, w = image.image.shape[:2]
    flat = metrics.l2_normalize(seeds["colour"].reshape(-1, 3))
    segment = np.zeros((h, w), bool)
    segment[:, : w // 2] = True
    rng = np.random.default_rng(0)
    points = rng.integers(0, h * w, size=20)
    sim_s, sims = _median_time(lambda: metrics.dot_rows(flat[points], flat).reshape(-1, h, w), args.repeats)
    iou_s, _ = _median_time(lambda: [best_iou(s, segment) for s in sims], args.repeats)
    print(f"IoU protocol on {w}x{h}: 20 similarity maps {sim_s * 1000:.1f} ms, optimal-threshold search "
          f"{iou_s / 20 * 1000:.1f} ms per point")  # fmt: skip


if __name__ == "__main__":
    main()
