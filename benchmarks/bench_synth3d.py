"""Speed and memory of the 3D generator (`matseg synth3d`, Blender/Cycles on the CPU).

Reference (digest §1.7, §3.1): ~24 s per 1600 px scene end to end on the authors' RTX 3090
(Cycles RGB 8.9-38 s at 120 samples, then one EEVEE render per material plus one for the ROI).
Our annotation comes from AOVs of the RGB render itself; this script measures what that costs.

Usage (run with the Python that has bpy, e.g. /work/bpyvenv/bin/python):
    python benchmarks/bench_synth3d.py [--sizes 256 512] [-n 6] [--overhead-scenes 6] [--overhead-reps 4]
                                       [--ground-scenes 6] [--ground-reps 2] [--ground-dicing 2]
                                       [--memory-scenes 100] [--memory-size 64] [--skip throughput ...]
Prints:
1. scenes/min on one core (one render thread, in this process) per image size, default config
   (32 samples, adaptive sampling, OpenImageDenoise) and the time split build / render / read;
2. annotation overhead: the same scenes rendered with the AOVs and their EXR outputs on and off
   (CPU time of render + read-back), interleaved, with the off-vs-off noise floor;
3. ground displacement: the same scenes, each with a ground, rendered with the ground truly
   displaced (adaptive subdivision, the default) and with bump only, interleaved;
4. resident memory of one worker process over a run of many small scenes, without recycling,
   and the same run through the runner with workers recycled every 20 scenes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from matseg.config import load_config
from matseg.synth3d.config import Synth3DConfig
from matseg.synth3d.job import Synth3DJob, load_inputs
from matseg.synth3d.scene import attempt_rng, build_and_render, cycles_seed, draw_plan, generate_scene

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def config(size: int, extra: list[str] = ()) -> Synth3DConfig:
    overrides = [f"render.width={size}", f"render.height={size}", *extra]
    if (SHARED / "natural_images").is_dir():
        overrides.append(f"inputs.images={SHARED / 'natural_images'}")
    if (SHARED / "pbr").is_dir():
        overrides.append(f"inputs.pbr=[{SHARED / 'pbr'}]")
    return load_config(Synth3DConfig, None, overrides)


def throughput(size: int, n: int) -> None:
    cfg = config(size)
    inputs, _ = load_inputs(cfg.inputs)
    rows, cpu = [], []
    for i in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        scene = generate_scene(1000 + i, cfg, inputs, threads=1)
        rows.append((time.perf_counter() - t0, scene.info["timing"], scene.info["attempt"]))
        cpu.append(time.process_time() - c0)
    total = [r[0] for r in rows]
    build = sum(r[1]["build_s"] for r in rows)
    render = sum(r[1]["render_s"] for r in rows)
    read = sum(r[1]["read_passes_s"] for r in rows)
    redraws = sum(r[2] for r in rows)
    print(f"{size} px, {cfg.render.samples} samples: {60 / statistics.mean(total):.2f} scenes/min on one core "
          f"(median {statistics.median(total):.1f} s, min {min(total):.1f}, max {max(total):.1f} s per scene; "
          f"{n} scenes, {redraws} redrawn by the quality gate); CPU time {statistics.mean(cpu):.1f} s per scene "
          f"(median {statistics.median(cpu):.1f}) = {60 / statistics.mean(cpu):.2f} scenes per CPU-minute")  # fmt: skip
    print(f"   time split: build {build / sum(total):.1%}, render {render / sum(total):.1%}, "
          f"read passes {read / sum(total):.2%} (rest: quality gate, python)")  # fmt: skip


def paired_cpu(size: int, n: int, reps: int, first_seed: int, on: tuple[list[str], bool], off: tuple[list[str], bool]):
    """Render + read-back CPU seconds of the same scenes in two variants, interleaved.

    ``on``/``off``: (config overrides, annotate). CPU seconds of this process (all its
    threads), not wall time: on a shared machine the wall time of one render varies several-fold
    with the load. A warm-up render comes first (kernel and texture loading). ``off``-against-
    ``off`` ratios of the same scene show the noise floor. Returns per scene
    ``(seed, median on, median off, off-vs-off ratio)``.
    """
    variants = {}
    for key, (overrides, annotate) in (("on", on), ("off", off)):
        cfg = config(size, overrides)
        variants[key] = (cfg, load_inputs(cfg.inputs)[0], annotate)

    def cpu_seconds(seed: int, key: str) -> float:
        cfg, inputs, annotate = variants[key]
        rng = attempt_rng(seed, 0)
        plan = draw_plan(rng, cfg, inputs)
        _, _, info = build_and_render(plan, rng, cfg, inputs, cycles_seed(seed, 0), threads=1, annotate=annotate)
        return info["timing"]["render_cpu_s"] + info["timing"]["read_passes_cpu_s"]

    cpu_seconds(first_seed - 1, "on")  # warm-up
    rows = []
    for i in range(n):
        seed = first_seed + i
        times = {"on": [], "off": []}
        for r in range(reps):
            for key in (("on", "off") if r % 2 == 0 else ("off", "on")):
                times[key].append(cpu_seconds(seed, key))
        on_s, off_s = statistics.median(times["on"]), statistics.median(times["off"])
        noise = statistics.median(times["off"][::2]) / statistics.median(times["off"][1::2]) - 1
        rows.append((seed, on_s, off_s, noise))
        print(f"   scene {seed}: on {on_s:.2f} s, off {off_s:.2f} s CPU ({on_s / off_s - 1:+.1%}; off vs off {noise:+.1%})", flush=True)
    return rows


def summarize(title: str, rows) -> None:
    ratios = [on / off - 1 for _, on, off, _ in rows]
    noise = [r[3] for r in rows]
    total_on, total_off = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{title}: {total_on / total_off - 1:+.1%} in total ({total_on / len(rows):.2f} vs {total_off / len(rows):.2f} s CPU "
          f"per scene), per scene median {statistics.median(ratios):+.1%} (range {min(ratios):+.1%} to {max(ratios):+.1%}); "
          f"noise floor (off vs off) median {statistics.median(noise):+.1%}, range {min(noise):+.1%} to {max(noise):+.1%}")  # fmt: skip


def overhead(size: int, n: int, reps: int) -> None:
    """The AOV annotation: the same scenes with the AOVs and their EXR outputs on and off."""
    rows = paired_cpu(size, n, reps, 2000, ([], True), ([], False))
    summarize(f"annotation overhead at {size} px ({n} scenes x {reps} renders each way, CPU time of render + read-back)", rows)


def ground(size: int, n: int, reps: int, dicing_px: float) -> None:
    """True displacement of the ground: the same scenes, all with a ground (a PBR with a height
    map when PBR folders are given), displaced (the default) or bump only."""
    forced = ["world.p_ground=1.0", f"world.ground_dicing_px={dicing_px}"]
    rows = paired_cpu(size, n, reps, 3000, ([*forced, "world.ground_displacement=both"], True),
                      ([*forced, "world.ground_displacement=bump"], True))  # fmt: skip
    summarize(f"ground displacement (dicing {dicing_px} px) against bump only at {size} px "
              f"({n} scenes with a ground x {reps} renders each way, CPU time of render + read-back)", rows)  # fmt: skip


def memory(size: int, n: int) -> None:
    from matseg.runner import RunnerOptions, run_job

    cfg = config(size, ["render.samples=4", f"num_scenes={n}"])
    inputs, _ = load_inputs(cfg.inputs)
    for recycle in (None, 20):
        with tempfile.TemporaryDirectory() as tmp:
            job = Synth3DJob(cfg, Path(tmp), inputs, threads=1)
            t0 = time.perf_counter()
            summary = run_job(job, RunnerOptions(workers=1, max_items_per_worker=recycle or 10**6, progress=False))
            elapsed = time.perf_counter() - t0
            rss = []
            for item in job.items():
                path = Path(tmp) / item.name / "meta.json"
                if path.exists():
                    rss.append(json.loads(path.read_text())["memory"]["rss_mb"])
        first, last = np.mean(rss[:10]), np.mean(rss[-10:])
        label = "no recycling" if recycle is None else f"recycled every {recycle} scenes"
        print(f"memory, 1 worker, {label}: {summary.done}/{n} scenes of {size} px in {elapsed:.0f} s; resident "
              f"{min(rss):.0f}-{max(rss):.0f} MiB, mean of the first 10 scenes {first:.0f} MiB, of the last 10 "
              f"{last:.0f} MiB ({(last - first) / max(1, len(rss) - 10):+.2f} MiB per scene)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("-n", type=int, default=6, help="scenes per size for the throughput")
    ap.add_argument("--overhead-scenes", type=int, default=6)
    ap.add_argument("--overhead-size", type=int, default=256)
    ap.add_argument("--overhead-reps", type=int, default=4, help="renders per scene and mode")
    ap.add_argument("--ground-scenes", type=int, default=6)
    ap.add_argument("--ground-size", type=int, default=256)
    ap.add_argument("--ground-reps", type=int, default=2, help="renders per scene and mode (>= 2)")
    ap.add_argument("--ground-dicing", type=float, default=Synth3DConfig().world.ground_dicing_px, help="world.ground_dicing_px")
    ap.add_argument("--memory-scenes", type=int, default=100)
    ap.add_argument("--memory-size", type=int, default=64)
    ap.add_argument("--skip", nargs="*", default=[], choices=("throughput", "overhead", "ground", "memory"))
    args = ap.parse_args()

    from matseg.synth3d.blender import blender_version, require_bpy

    require_bpy()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}, Blender {blender_version()}, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    if "throughput" not in args.skip:
        for size in args.sizes:
            throughput(size, args.n)
    if "overhead" not in args.skip:
        overhead(args.overhead_size, args.overhead_scenes, args.overhead_reps)
    if "ground" not in args.skip:
        ground(args.ground_size, args.ground_scenes, args.ground_reps, args.ground_dicing)
    if "memory" not in args.skip:
        memory(args.memory_size, args.memory_scenes)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
