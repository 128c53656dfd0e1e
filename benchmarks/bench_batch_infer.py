"""Photos per second of `matseg segment` / `matseg predict` over a folder, by worker count.

Runs the command as a user would (a fresh process each time, the shipped model unless
--weights) on every photo under --photos (default: the 14 photos that ship inside scikit-image,
matseg's built-in default photos), each linked --copies times, once per --workers value into a fresh output folder, then once more into the
last folder (a rerun: every photo is skipped). Prints wall time and the photos/s of the
job's summary.json.

Usage: python benchmarks/bench_batch_infer.py [--photos DIR] [--copies 4] [--command segment|predict] [--workers 1,2] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from matseg.io.images import list_images
from matseg.io.sources import DEFAULT_PHOTOS, skimage_data_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, default=None, help="folder of photos (default: scikit-image's)")
    ap.add_argument("--copies", type=int, default=4, help="each photo this many times (links)")
    ap.add_argument("--command", choices=("segment", "predict"), default="segment")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--weights", type=Path, default=None)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        sources = list_images(args.photos) if args.photos else [skimage_data_dir() / name for name in DEFAULT_PHOTOS]
        for copy in range(args.copies):
            for i, src in enumerate(sources):  # links: the command sees one flat folder
                (photos / f"{copy}_{i:03d}_{src.name}").symlink_to(src.resolve())
        print(f"{platform.processor() or platform.machine()}, {len(sources)} photos x {args.copies}, `matseg {args.command}`")
        extra = ["--point", "1,1"] if args.command == "predict" else []
        if args.weights:
            extra += ["--weights", str(args.weights)]
        for rnd in range(args.rounds):
            for workers in (int(w) for w in args.workers.split(",")):
                out = Path(tmp) / f"out-{rnd}-{workers}"
                for label in ("fresh", "rerun"):
                    cmd = [sys.executable, "-m", "matseg", args.command, str(photos), "-o", str(out), "-w", str(workers), "--no-progress", *extra]
                    start = time.perf_counter()
                    done = subprocess.run(cmd, capture_output=True, text=True)
                    wall = time.perf_counter() - start
                    summary = json.loads((out / "summary.json").read_text())
                    rate = summary["done"] / wall if summary["done"] else float("nan")
                    print(f"  -w {workers} {label:5s}  {wall:6.1f} s wall  {summary['done']:3d} done {summary['skipped']:3d} skipped "
                          f"{len(summary['failed'])} failed  {rate:5.2f} photos/s (start-up included)  exit {done.returncode}")  # fmt: skip
                    if math.isnan(rate) and label == "fresh":
                        print(done.stderr[-2000:], file=sys.stderr)


if __name__ == "__main__":
    main()
