"""``matseg synth3d``: render 3D training scenes in Blender with exact soft material masks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from matseg.cli_common import (
    UsageError,
    absolute_path,
    add_config_args,
    add_runner_args,
    add_shard_arg,
    close_run,
    open_run,
    print_config_requested,
    resolve_config,
    runner_options,
    shard_flag,
)

DESCRIPTION = """\
Render 3D scenes (paper §3.1 "Creating 3D scenes", appendix C) with Blender's Cycles: random
objects whose surface is split into 2-8 materials (PBR folders or random BSDFs) by soft maps
from natural photos, an HDRI, optional ground, distractors and lights, a random camera.
Each material's exact soft weight and the object's visible coverage come out of the same
render (Shader AOVs): one render per scene, no mask renders.

Needs Blender as a Python module: pip install 'matseg[synth3d]' on Python 3.11.
With no --images the built-in scikit-image photos are used, with no --hdri the HDRIs that
ship inside bpy, with no --pbr random Principled BSDFs, with no --objects procedural shapes.
Output: one folder per scene in the MatSeg format (RGB__RGB.jpg, mask001.png...,
ObjectMaskOcluded.png, meta.json with the camera, materials and every draw, Finished.txt)
plus config.yaml and summary.json. A rerun with the same folder skips finished scenes."""


#: Scenes per worker process before it is replaced (Blender's memory grows over long runs).
DEFAULT_SCENES_PER_WORKER = 20


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "synth3d", help="render 3D scenes with exact soft material masks (Blender)", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("-n", "--num-scenes", type=int, help="number of scenes (config: num_scenes, default 10)")
    p.add_argument("-o", "--out", type=Path, default=Path("out/synth3d"), help="output folder (default: out/synth3d)")
    p.add_argument("--pbr", type=Path, action="append", help="folder of PBR material folders (repeatable; default: random BSDFs only)")
    p.add_argument("--images", type=Path, help="natural photos for the material maps: a folder or a text file listing image paths (default: built-in)")
    p.add_argument("--hdri", type=Path, help="folder of .hdr/.exr panoramas (default: the HDRIs inside bpy)")
    p.add_argument("--objects", type=Path, help="folder of .obj/.gltf/.glb/.ply/.stl meshes (default: procedural shapes)")
    p.add_argument("--seed", type=int, help="master seed (config: seed, default 0)")
    p.add_argument("--size", type=int, metavar="PX", help="square image side in pixels (config: render.width/height, default 512)")
    p.add_argument("--samples", type=int, help="Cycles samples per pixel (config: render.samples, default 32)")
    p.add_argument("--device", choices=("cpu", "gpu", "auto"), help="render device (config: render.device, default cpu)")
    p.add_argument("--scenes-per-worker", type=int, default=DEFAULT_SCENES_PER_WORKER, metavar="K",
                   help=f"each worker process renders K scenes, then is replaced (Blender leaks memory; default {DEFAULT_SCENES_PER_WORKER})")  # fmt: skip
    p.add_argument("--retries", type=int, default=1, help="re-runs of a failed scene before it is skipped (default 1)")
    p.add_argument("--force-config", action="store_true", help="allow a config that differs from the one saved in --out")
    add_shard_arg(p)
    add_config_args(p)
    add_runner_args(p)
    p.set_defaults(handler=run)
    return p


def _flag_overrides(args: argparse.Namespace) -> list:
    flags: list = []
    simple = {"num_scenes": ["num_scenes"], "seed": ["seed"], "samples": ["render", "samples"], "device": ["render", "device"]}
    for attr, key in simple.items():
        if getattr(args, attr) is not None:
            flags.append((key, getattr(args, attr)))
    if args.size is not None:
        flags += [(["render", "width"], args.size), (["render", "height"], args.size)]
    for name in ("images", "hdri", "objects"):
        if getattr(args, name) is not None:
            flags.append((["inputs", name], str(getattr(args, name))))
    if args.pbr:
        flags.append((["inputs", "pbr"], [str(p) for p in args.pbr]))
    return flags + shard_flag(args)


def run(args: argparse.Namespace) -> int:
    from matseg.runner import run_job
    from matseg.runner.driver import available_cpus
    from matseg.synth3d.blender import INSTALL_HINT, bpy_available
    from matseg.synth3d.config import Synth3DConfig
    from matseg.synth3d.job import RUN_ONLY_KEYS, Synth3DJob, load_inputs, memory_report

    cfg = resolve_config(Synth3DConfig, args, _flag_overrides(args))
    for name in ("images", "hdri", "objects"):
        if getattr(cfg.inputs, name):
            setattr(cfg.inputs, name, absolute_path(getattr(cfg.inputs, name)))
    cfg.inputs.pbr = [absolute_path(p) for p in cfg.inputs.pbr]
    if print_config_requested(args, cfg):
        return 0
    if args.scenes_per_worker < 1:
        raise UsageError(f"--scenes-per-worker must be >= 1, got {args.scenes_per_worker}")
    if args.retries < 0:
        raise UsageError(f"--retries must be >= 0, got {args.retries}")
    if not bpy_available():
        raise UsageError(f"bpy not installed: {INSTALL_HINT}")

    try:
        inputs, bad = load_inputs(cfg.inputs)
    except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    for path, reason in sorted(bad.items()):
        print(f"warning: skipping unusable input {path}: {reason}", file=sys.stderr)

    out = open_run(args.out, cfg, RUN_ONLY_KEYS, args.force_config)

    workers = args.workers or available_cpus()
    threads = cfg.render.threads or max(1, available_cpus() // workers)
    print(
        f"synth3d: {cfg.num_scenes} scenes of {cfg.render.width}x{cfg.render.height} px, {cfg.render.samples} samples "
        f"-> {out} (seed {cfg.seed}; {len(inputs.photos)} photos, {len(inputs.pbrs)} PBRs, {len(inputs.hdris)} HDRIs, "
        f"{len(inputs.mesh_files)} meshes; {threads} render thread(s) per worker)", file=sys.stderr,
    )  # fmt: skip
    job = Synth3DJob(cfg, out, inputs, threads)
    todo = [it.name for it in job.items() if not job.is_done(it)]
    options = runner_options(args, "synth3d", max_items_per_worker=args.scenes_per_worker, retries=args.retries)
    summary = run_job(job, options)
    job.finish()
    memory = memory_report(out, todo)
    if memory:
        print(f"memory: resident {memory['rss_mb_median']:.0f} MiB median, {memory['rss_mb_max']:.0f} MiB max per scene; "
              f"worker peak {memory['peak_rss_mb_max']:.0f} MiB", file=sys.stderr)  # fmt: skip
    return close_run(out, summary, extra={"memory": memory}, bad_inputs=bad)
