"""Throughput of the 2D generator (`matseg synth2d`) against the reference's figures.

Reference (digest §3.1, same 2-core machine class, same inputs: ../shared/data/natural_images
and ../shared/data/textures, scene sides 400-999 px): median 0.30 s per scene, mean 0.59 s,
on one core, including writing the files.

Usage:  python benchmarks/bench_synth2d.py [-n 60] [--images DIR] [--textures DIR]
Prints per-scene times on one core (generate + write, in this process) and the throughput of
the full job through the runner with 1 worker and with all cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from matseg.io.sources import ImageSource
from matseg.runner import RunnerOptions, run_job
from matseg.synth2d.job import Synth2DConfig, Synth2DJob

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REFERENCE_MEDIAN_S = 0.30
REFERENCE_MEAN_S = 0.59


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=200, help="scenes per measurement")
    ap.add_argument("--images", type=Path, default=SHARED / "natural_images")
    ap.add_argument("--textures", type=Path, default=SHARED / "textures")
    args = ap.parse_args()

    cv2.setNumThreads(1)
    cfg = Synth2DConfig(num_scenes=args.n, seed=2000)
    cfg.inputs.images, cfg.inputs.textures = str(args.images), str(args.textures)
    photos = ImageSource.scan(args.images, "natural images")
    textures = ImageSource.scan(args.textures, "textures")
    cores = os.cpu_count() or 1
    print(f"machine: {platform.processor() or platform.machine()}, {cores} cores, python {platform.python_version()}, "
          f"numpy {np.__version__}, opencv {cv2.__version__}")  # fmt: skip
    print(f"inputs: {len(photos)} photos ({args.images}), {len(textures)} textures ({args.textures})")

    with tempfile.TemporaryDirectory() as tmp:
        # 1) one core, in this process: per-scene wall time, generate + write (the reference's unit).
        job = Synth2DJob(cfg, Path(tmp) / "inline", photos, textures)
        job.setup()
        times = []
        for item in job.items():
            t0 = time.perf_counter()
            job.run(item)
            times.append(time.perf_counter() - t0)
        median, mean = statistics.median(times), statistics.mean(times)
        print(f"\none core, {len(times)} scenes (first includes decoding the photos):")
        print(f"  median {median:.4f} s/scene, mean {mean:.4f} s/scene, p90 {np.percentile(times, 90):.4f}, max {max(times):.4f}")
        print(f"  vs reference: {REFERENCE_MEDIAN_S / median:.1f}x (median), {REFERENCE_MEAN_S / mean:.1f}x (mean)")

        # 2) the runner: 1 worker and all cores (process pool, includes worker start-up).
        for workers in sorted({1, cores}):
            out = Path(tmp) / f"pool{workers}"
            t0 = time.perf_counter()
            summary = run_job(Synth2DJob(cfg, out, photos, textures), RunnerOptions(workers=workers, progress=False))
            wall = time.perf_counter() - t0
            rate = summary.done / wall
            print(f"\nrunner, {workers} worker(s): {summary.done} scenes in {wall:.2f} s = {rate:.2f} scenes/s "
                  f"({rate / workers:.2f} per core; reference 1 core: {1 / REFERENCE_MEAN_S:.2f} scenes/s by mean, "
                  f"{1 / REFERENCE_MEDIAN_S:.2f} by median) -> {rate / workers * REFERENCE_MEAN_S:.1f}x per core")  # fmt: skip


if __name__ == "__main__":
    main()
