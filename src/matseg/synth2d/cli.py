"""``matseg synth2d``: generate a 2D pattern-infusion training set."""

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
Generate 2D scenes by infusing patterns from natural photos (paper §3.1): soft maps from a
random channel of a photo decide where each texture goes; the annotation is exact.
With no --images/--textures the built-in photos and textures of scikit-image are used.
Output: one folder per scene in the MatSeg format (RGB__RGB.jpg, mask001.png..., 
ObjectMaskOcluded.png, meta.json, Finished.txt) plus config.yaml and summary.json.
A rerun with the same folder skips finished scenes."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "synth2d", help="generate 2D pattern-infusion scenes", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("-n", "--num-scenes", type=int, help="number of scenes (config: num_scenes, default 100)")
    p.add_argument("-o", "--out", type=Path, default=Path("out/synth2d"), help="output folder (default: out/synth2d)")
    p.add_argument("--images", type=Path, help="natural photos: a folder (recursive) or a text file listing image paths (default: built-in)")
    p.add_argument("--textures", type=Path, help="textures: a folder (recursive) or a text file listing image paths (default: built-in)")
    p.add_argument("--seed", type=int, help="master seed (config: seed, default 0)")
    add_shard_arg(p)
    p.add_argument("--force-config", action="store_true", help="allow a config that differs from the one saved in --out")
    add_config_args(p)
    add_runner_args(p)
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    from matseg.runner import run_job
    from matseg.synth2d.job import RUN_ONLY_KEYS, Synth2DConfig, Synth2DJob, load_sources

    flags = []
    if args.num_scenes is not None:
        flags.append((["num_scenes"], args.num_scenes))
    if args.seed is not None:
        flags.append((["seed"], args.seed))
    for name in ("images", "textures"):
        if getattr(args, name) is not None:
            flags.append((["inputs", name], str(getattr(args, name))))
    flags += shard_flag(args)
    cfg = resolve_config(Synth2DConfig, args, flags)
    for name in ("images", "textures"):
        if getattr(cfg.inputs, name):
            setattr(cfg.inputs, name, absolute_path(getattr(cfg.inputs, name)))
    if print_config_requested(args, cfg):
        return 0

    try:
        photos, textures = load_sources(cfg.inputs)
    except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    for source in (photos, textures):
        for path, reason in sorted(source.bad.items()):
            print(f"warning: skipping unreadable {source.name[:-1]} {path}: {reason}", file=sys.stderr)

    out = open_run(args.out, cfg, RUN_ONLY_KEYS, args.force_config)

    print(
        f"synth2d: {cfg.num_scenes} scenes -> {out} (seed {cfg.seed}; {len(photos)} photos, "
        f"{len(textures)} textures)", file=sys.stderr,
    )  # fmt: skip
    job = Synth2DJob(cfg, out, photos, textures)
    summary = run_job(job, runner_options(args, "synth2d"))
    job.finish()
    return close_run(out, summary, bad_inputs={**photos.bad, **textures.bad})
