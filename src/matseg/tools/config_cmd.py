"""``matseg config STAGE``: print a stage's parameters as commented YAML with their defaults."""

from __future__ import annotations

import argparse
import importlib

from matseg import exit_codes

# stage -> "module:ConfigClass"; stages of later issues add themselves here.
STAGE_CONFIGS = {
    "synth2d": "matseg.synth2d.job:Synth2DConfig",
    "synth3d": "matseg.synth3d.config:Synth3DConfig",
    "textures": "matseg.extract.textures_job:TextureJobConfig",
    "eval-bench": "matseg.evaluate.jobs:BenchmarkEvalConfig",
    "eval-masks": "matseg.evaluate.jobs:MaskEvalConfig",
    "pbr-make": "matseg.materials.jobs:PBRMakeConfig",
    "pbr-mix": "matseg.materials.jobs:PBRMixConfig",
    "train": "matseg.net.config:TrainConfig",
}


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "config", help="print a stage's documented parameters and defaults (YAML)",
        description="Print the parameters of a stage as YAML, each with its help text and source "
        "([§x.y] = section of the reference digest). Save it, edit it, pass it with --config.",
    )  # fmt: skip
    p.add_argument("stage", choices=sorted(STAGE_CONFIGS))
    p.set_defaults(handler=run)
    return p


def config_class(stage: str):
    module, name = STAGE_CONFIGS[stage].split(":")
    return getattr(importlib.import_module(module), name)


def run(args: argparse.Namespace) -> int:
    from matseg.config import describe

    print(describe(config_class(args.stage)))
    return exit_codes.OK
