"""Large photo libraries (issue 13): scan, index reuse, draw cost, and synth2d on 10^5 photos.

Builds a library of N symbolic links to the photos of ../shared/data/natural_images (or a
folder given with --photos) in a temporary folder, then measures, each in a fresh process:
  * the header scan without an index, and again with the index of the first run;
  * ``matseg synth2d -n 20 -w 1`` on the photos themselves and on the N-link library
    (wall time and peak memory of the process);
and in this process the cost of one ``ImageSource.choose`` at 10^5 and 10^6 entries.
Usage: python benchmarks/bench_library.py [--links 100000] [--scenes 20] [--photos DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from matseg.io.sources import EntryTable, ImageSource

SHARED_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "natural_images"


def _run(args: list[str], env: dict) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of a child process."""
    t0 = time.perf_counter()
    code = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)"
    )
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{proc.stderr[-2000:]}")
    peak_kb = int(proc.stderr.strip().splitlines()[-1])
    return wall, peak_kb / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--links", type=int, default=100_000)
    ap.add_argument("--scenes", type=int, default=20)
    ap.add_argument("--photos", type=Path, default=SHARED_PHOTOS)
    args = ap.parse_args()
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    tmp = Path(tempfile.mkdtemp(prefix="matseg-library-"))
    env = {**os.environ, "MATSEG_CACHE_DIR": str(tmp / "cache")}
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{len(photos)} photos in {args.photos}, library of {args.links} links")  # fmt: skip
    try:
        library = tmp / "library"
        t0 = time.perf_counter()
        for i in range(args.links):
            folder = library / f"{i // 1000:04d}"
            if i % 1000 == 0:
                folder.mkdir(parents=True)
            os.symlink(photos[i % len(photos)], folder / f"{i:07d}{photos[i % len(photos)].suffix}")
        print(f"made the library in {time.perf_counter() - t0:.1f} s")
        scan = ["-c", f"from matseg.io.sources import ImageSource; s = ImageSource.scan({str(library)!r}, 'photos'); print(len(s))"]
        for label in ("scan, no index", "scan, index reused"):
            wall, peak = _run([sys.executable, *scan], env)
            print(f"{label}: {wall:.2f} s, peak {peak:.0f} MB ({args.links / wall:,.0f} files/s)")
        for label, images in (("photos themselves", args.photos), (f"{args.links} links", library)):
            out = tmp / f"out-{label.split()[0]}"
            cmd = [sys.executable, "-m", "matseg", "synth2d", "-n", str(args.scenes), "-w", "1", "--images", str(images),
                   "-o", str(out), "--no-progress"]  # fmt: skip
            wall, peak = _run(cmd, env)
            print(f"synth2d -n {args.scenes} -w 1 on the {label}: {wall:.2f} s, peak {peak:.0f} MB (index warm)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rng = np.random.default_rng(0)
    for n in (100_000, 1_000_000):
        widths = rng.integers(200, 2000, n).astype(np.int32)
        heights = rng.integers(200, 2000, n).astype(np.int32)
        source = ImageSource("x", EntryTable([""] * n, [""] * n, widths, heights))
        t0 = time.perf_counter()
        draws = 2000
        for _ in range(draws):
            source.choose(rng, int(rng.integers(250, 900)), int(rng.integers(250, 900)), 0.3)
        print(f"choose() at {n:,} entries: {(time.perf_counter() - t0) / draws * 1e6:.1f} us per draw")
    print(f"this process peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
