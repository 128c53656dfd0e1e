"""``matseg pbr make`` and ``matseg pbr mix``: PBR materials from textures, and mixes of materials."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from matseg import exit_codes
from matseg.cli_common import (
    UsageError,
    add_config_args,
    add_runner_args,
    absolute_path,
    close_run,
    open_run,
    print_config_requested,
    resolve_config,
    runner_options,
)

MAKE_DESCRIPTION = """\
Turn texture images into PBR materials (paper §3.2.2): height, roughness and metallic maps
(sometimes specular, opacity, ambient occlusion) from random image channels with augmentation,
inversion, blur, thresholding and random scaling; the normal map from the height gradient.
--textureless N adds N uniform materials (appendix E); TEXTURES may then be omitted.
Output: OUT/<texture name>/ with OriginColor.jpg, Normal.png (OpenGL), Height.png,
Roughness.png, Metallic.png [, Specular.png, Opacity.png, AmbientOcclusion.png], meta.json,
Finished.txt; plus config.yaml and summary.json. A rerun skips finished materials."""

MIX_DESCRIPTION = """\
Mix PBR materials into new ones (paper appendix F): 2 or more distinct materials, weighted per
material ('equal'), per material and map ('flexible') or pixel-wise maximum ('max'); normals are
mixed as vectors. PBRS is a folder of material folders in any common naming convention
(OriginColor/Color/BaseColor/Albedo/..., see docs/formats.md).
Output: OUT/000000/ ... in the same layout as `matseg pbr make`, meta.json listing the sources,
mode and weights; plus config.yaml and summary.json. A rerun skips finished mixes; raising -n
extends the set."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "pbr", help="PBR materials: make from textures, mix", description="PBR materials from textures (make) and by mixing (mix).",
    )  # fmt: skip
    sub = p.add_subparsers(title="commands", metavar="COMMAND")
    p.set_defaults(handler=lambda args: _print_help(p))

    make = sub.add_parser("make", help="turn textures into PBR materials", description=MAKE_DESCRIPTION,
                          formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    make.add_argument("textures", type=Path, nargs="?", help="folder of texture images (searched recursively)")
    make.add_argument("--textureless", type=int, metavar="N", help="also make N textureless materials (config: textureless.count)")
    _add_common(make, "out/pbr")
    make.set_defaults(handler=run_make)

    mix = sub.add_parser("mix", help="mix PBR materials into new ones", description=MIX_DESCRIPTION,
                         formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    mix.add_argument("pbrs", type=Path, help="folder of PBR material folders")
    mix.add_argument("-n", "--num-mixes", type=int, help="number of mixed materials (config: num_mixes, default 100)")
    _add_common(mix, "out/pbr_mixed")
    mix.set_defaults(handler=run_mix)
    return p


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return exit_codes.USAGE


def _add_common(p: argparse.ArgumentParser, default_out: str) -> None:
    p.add_argument("-o", "--out", type=Path, default=Path(default_out), help=f"output folder (default: {default_out})")
    p.add_argument("--seed", type=int, help="master seed (config: seed, default 0)")
    p.add_argument("--force-config", action="store_true", help="allow a config that differs from the one saved in --out")
    add_config_args(p)
    add_runner_args(p)


def _resolve(cls, args: argparse.Namespace, flags: list, path_key: str, path: Path | None):
    if args.seed is not None:
        flags.append((["seed"], args.seed))
    if path is not None:
        flags.append(([path_key], str(path)))
    cfg = resolve_config(cls, args, flags)
    if getattr(cfg, path_key):
        setattr(cfg, path_key, absolute_path(getattr(cfg, path_key)))
    return cfg


def _execute(job, cfg, args: argparse.Namespace, run_only: tuple[str, ...], bad_inputs: dict[str, str], headline: str) -> int:
    """Output checks, config.yaml, the run, summary.json and the printed summary."""
    from matseg.runner import run_job

    out = open_run(args.out, cfg, run_only, args.force_config)
    print(f"{job.name}: {headline} -> {out} (seed {cfg.seed})", file=sys.stderr)
    return close_run(out, run_job(job, runner_options(args, job.name)), bad_inputs=bad_inputs)


def run_make(args: argparse.Namespace) -> int:
    from matseg.io.sources import ImageSource
    from matseg.materials.jobs import MAKE_RUN_ONLY_KEYS, MakeJob, PBRMakeConfig

    flags = [] if args.textureless is None else [(["textureless", "count"], args.textureless)]
    cfg = _resolve(PBRMakeConfig, args, flags, "textures", args.textures)
    if print_config_requested(args, cfg):
        return 0
    if not cfg.textures and cfg.textureless.count == 0:
        raise UsageError("give a TEXTURES folder and/or --textureless N")
    textures, bad = None, {}
    if cfg.textures:
        try:
            textures = ImageSource.scan(cfg.textures, "textures")
        except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        bad = dict(textures.bad)
    job = MakeJob(cfg, args.out, textures)
    count = f"{len(textures) if textures else 0} textures + {cfg.textureless.count} textureless"
    return _execute(job, cfg, args, MAKE_RUN_ONLY_KEYS, bad, count)


def run_mix(args: argparse.Namespace) -> int:
    from matseg.materials.jobs import MIX_RUN_ONLY_KEYS, MixJob, PBRMixConfig
    from matseg.materials.pbr import find_materials

    flags = [] if args.num_mixes is None else [(["num_mixes"], args.num_mixes)]
    cfg = _resolve(PBRMixConfig, args, flags, "pbrs", args.pbrs)
    if print_config_requested(args, cfg):
        return 0
    try:
        materials, bad = find_materials(cfg.pbrs)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise UsageError(str(exc)) from None
    out = Path(args.out).resolve()
    materials = [m for m in materials if out not in (m, *m.parents)]  # never mix our own outputs
    if len(materials) < 2:
        detail = f"; folders without a colour map: {', '.join(sorted(bad))[:300]}" if bad else ""
        raise UsageError(f"{cfg.pbrs}: need at least 2 PBR material folders, found {len(materials)}{detail}")
    job = MixJob(cfg, args.out, Path(cfg.pbrs), materials)
    return _execute(job, cfg, args, MIX_RUN_ONLY_KEYS, bad, f"{cfg.num_mixes} mixes of {len(materials)} materials")
