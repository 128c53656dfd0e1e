"""Items per second against workers and backends (issue 13, docs/scaling.md).

Runs ``matseg synth2d -n N`` (default 512x512 scenes from the built-in inputs) on: the inline
backend (1 worker), the process pool (2 workers), a private local Ray instance (2 workers),
and a two-node Ray cluster on this machine (``ray.cluster_utils.Cluster``, 1 CPU per node),
and prints scenes/s and the per-item overhead of each backend against the inline run.
Usage: python benchmarks/bench_scaling.py [-n 40] [--size 512]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from matseg.cli import main as matseg


def _run(out: Path, n: int, size: int, extra: list[str]) -> tuple[float, float]:
    t0 = time.perf_counter()
    args = ["synth2d", "-n", str(n), "-o", str(out), "--no-progress",
            "--set", f"scene.size_min={size}", "--set", f"scene.size_max={size}", *extra]  # fmt: skip
    assert matseg(args) == 0
    wall = time.perf_counter() - t0
    summary = json.loads((out / "summary.json").read_text())
    return wall, summary.get("median_item_s", 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=40)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    tmp = Path(tempfile.mkdtemp(prefix="matseg-scaling-"))
    print(f"{platform.machine()}, {os.cpu_count()} cores; synth2d -n {args.n} at {args.size}x{args.size}")
    rows = []
    try:
        rows.append(("inline, 1 worker", *_run(tmp / "inline", args.n, args.size, ["-w", "1"])))
        rows.append(("process pool, 2 workers", *_run(tmp / "pool", args.n, args.size, ["-w", "2"])))
        rows.append(("Ray local, 2 workers", *_run(tmp / "ray", args.n, args.size, ["-w", "2", "--ray"])))
        import ray
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        try:
            rows.append(("Ray, 2 nodes x 1 CPU", *_run(tmp / "ray2", args.n, args.size, ["--ray-address", cluster.address])))
        finally:
            ray.shutdown()
            cluster.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base_wall, base_item = rows[0][1], rows[0][2]
    for label, wall, item in rows:
        workers = 1 if "1 worker" in label else 2
        overhead = (wall * workers - base_wall) / args.n
        print(f"{label}: {wall:.2f} s, {args.n / wall:.2f} scenes/s, median {item * 1000:.0f} ms/scene in the worker, "
              f"overhead vs inline {overhead * 1000:+.0f} ms per scene and worker (includes start-up)")  # fmt: skip


if __name__ == "__main__":
    main()
