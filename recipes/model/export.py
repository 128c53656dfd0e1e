#!/usr/bin/env python3
"""Turn training checkpoints into a shipped model (maintainers; see docs/model-card.md).

    python recipes/model/export.py RUN/step_0002000.safetensors RUN/step_0002500.safetensors \\
        --name matseg-lite0-2026.12 --trained "..." [--models-dir src/matseg/models] [--no-default] [--input-side N]

Several checkpoints are averaged tensor by tensor (checkpoint averaging: they must come from
one run, i.e. share architecture and initialisation); floating-point tensors are stored as fp16
(BatchNorm's integer counters stay as they are); the model config and a provenance record go
into the safetensors metadata, with the input side the checkpoints name (``input_side`` of the
training config; ``--input-side`` overrides), which inference uses by default. ``models.json`` gets the file's sha256 and size and, unless
``--no-default``, makes it the default model. Exit status 2 on bad input, naming the file.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch

from matseg.io.atomic import write_json_atomic
from matseg.models import REGISTRY_NAME, ModelNotAvailable, models_dir, registry, sha256_file
from matseg.net.checkpoint import CheckpointError, load_model, read_metadata, save_weights
from matseg.net.infer import MIN_VIEW_SIDE


def average_state(paths: list[Path]) -> tuple[torch.nn.Module, dict]:
    """The net of ``paths[0]`` with every floating tensor replaced by the mean over ``paths``."""
    nets = [load_model(p) for p in paths]
    if any(net.cfg != nets[0].cfg for net in nets[1:]):
        raise CheckpointError(f"{paths}: checkpoints of different architectures cannot be averaged")
    states = [net.state_dict() for net in nets]
    averaged = {}
    for key, value in states[0].items():
        if value.is_floating_point():
            averaged[key] = torch.stack([s[key].double() for s in states]).mean(0).to(value.dtype)
        else:
            averaged[key] = value  # num_batches_tracked: not averaged
    nets[0].load_state_dict(averaged)
    names = [f"{p.parent.name}/{p.name}" for p in paths]  # run folder and file: no machine paths
    extras = [read_metadata(p)["extra"] for p in paths]
    sides = {extra.get("input_side") for extra in extras}
    if len(sides) > 1:
        raise CheckpointError(f"{paths}: the checkpoints name different input sides {sorted(map(str, sides))}")
    provenance = {"averaged": names, "steps": [extra.get("step") for extra in extras]}
    if None not in sides:
        provenance["input_side"] = sides.pop()
    return nets[0], provenance


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a file stem: no folders, no hidden files
SIZE_BUDGET = 25_000_000  # bytes a shipped model may take in the wheel


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", type=Path, help=".safetensors files from `matseg train` (averaged)")
    ap.add_argument("--name", required=True, help="version name, e.g. matseg-lite0-2026.12")
    ap.add_argument("--trained", default="", help="one line on data and recipe (goes into models.json)")
    ap.add_argument("--models-dir", type=Path, default=None, help="default: $MATSEG_MODELS_DIR or the package's folder")
    ap.add_argument("--no-default", action="store_true", help="register without making it the default")
    ap.add_argument("--input-side", type=int, default=None,
                    help="longer image side the model is used at by default (default: the checkpoints' input_side, else 1024)")
    args = ap.parse_args(argv)
    if not NAME.fullmatch(args.name) or args.name.endswith(".safetensors"):
        print(f"error: --name {args.name!r}: a version name like matseg-lite0-2026.12 (letters, digits, . _ -)", file=sys.stderr)
        return 2
    folder = args.models_dir or models_dir()
    try:
        reg = registry(folder)  # a broken registry is refused before anything is written
        net, provenance = average_state(args.checkpoints)
        if args.input_side is not None:
            if args.input_side < MIN_VIEW_SIDE:
                raise CheckpointError(f"--input-side {args.input_side}: must be >= {MIN_VIEW_SIDE} (the net's stride)")
            provenance["input_side"] = args.input_side
    except (CheckpointError, ModelNotAvailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{args.name}.safetensors"
    save_weights(out, net.half(), extra={"name": args.name, "trained": args.trained, **provenance})
    reg["models"][args.name] = {
        "file": out.name,
        "sha256": sha256_file(out),
        "bytes": out.stat().st_size,
        "encoder": net.cfg.encoder,
        "trained": args.trained,
        "card": "docs/model-card.md",
        **provenance,
    }
    if not args.no_default:
        reg["default"] = args.name
    write_json_atomic(folder / REGISTRY_NAME, reg)
    print(json.dumps(reg["models"][args.name], indent=2))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); registry {folder / REGISTRY_NAME}")
    if out.stat().st_size > SIZE_BUDGET:
        print(f"warning: {out.name} is over the {SIZE_BUDGET / 1e6:.0f} MB budget of a shipped model", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
