"""``matseg train``: train the descriptor net on MatSeg-format data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from matseg import exit_codes
from matseg.cli_common import UsageError, add_config_args
from matseg.net import PRECISIONS

TORCH_HINT = "matseg train needs PyTorch: pip install 'matseg[torch]'"

DESCRIPTION = """\
Train the descriptor net (paper appendix G) on one or more folders of MatSeg-format samples
(ours from `matseg synth2d`, or the published dataset; nested samples included).
Batches have a random size (sides 250-900 px by default) within a pixel budget; crops keep the
annotated region; augmentations as the paper. A share of the samples is held out for
validation (data.val_fraction); with --bench the triplet metric on a benchmark folder also
decides the best checkpoint.

RUN_DIR receives config.yaml, last.safetensors, best.safetensors, state.pt, metrics.csv and
TensorBoard events (tb/). `--resume` continues a run exactly (weights, optimizer, schedule,
step, RNG, data position); DATA and the configuration are taken from RUN_DIR unless given.
Several processes / GPUs: torchrun --nproc_per_node N -m matseg train ... (DDP)."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train", help="train the descriptor net", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("data", nargs="*", metavar="DATA",
                   help="dataset or shard folder(s), or shard folder URLs (s3://..., with fsspec); optional with --resume")  # fmt: skip
    p.add_argument("-o", "--out", type=Path, required=True, metavar="RUN_DIR", help="run folder (checkpoints, logs)")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR")
    p.add_argument("--bench", type=Path, metavar="DIR", help="MatSeg benchmark folder (images/ + data/) for validation")
    p.add_argument("--steps", type=int, help="total optimizer steps (config: steps)")
    p.add_argument("--seed", type=int, help="master seed (config: seed)")
    p.add_argument("--lr", type=float, help="learning rate (config: optim.lr)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N (config: device)")
    p.add_argument("--precision", choices=PRECISIONS, help="(config: precision)")
    p.add_argument("-w", "--workers", type=int, help="loader processes per training process (config: data.workers)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_args(p)
    p.set_defaults(handler=run)
    return p


_FLAG_KEYS = {"steps": "steps", "seed": "seed", "lr": "optim.lr", "device": "device", "precision": "precision", "workers": "data.workers"}


def resolve_train_config(args: argparse.Namespace):
    """Defaults (or, with --resume, RUN_DIR/config.yaml) < --config < flags < --set."""
    import yaml

    from matseg.config import ConfigError, from_dict, merge_override, parse_override
    from matseg.net.config import TrainConfig, TrainError, load_saved_config

    data: dict = {}
    if args.resume:
        try:
            data = load_saved_config(args.out)
        except TrainError as exc:
            raise UsageError(str(exc)) from None
    if args.config:
        try:
            loaded = yaml.safe_load(Path(args.config).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"{args.config}: cannot read config ({exc})") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"{args.config}: the config must be a mapping of keys to values")
        _deep_update(data, loaded)
    try:
        for flag, key in _FLAG_KEYS.items():
            if getattr(args, flag) is not None:
                merge_override(data, key.split("."), getattr(args, flag))
        for text in args.overrides:
            merge_override(data, *parse_override(text))
        return from_dict(TrainConfig, data)
    except ConfigError as exc:
        raise UsageError(f"invalid configuration: {exc}") from None


def _deep_update(base: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value


def _data_folders(args: argparse.Namespace) -> list[Path | str]:
    from matseg.io.shards import is_url

    if args.data:  # URLs (shard folders read through fsspec) stay strings
        return [p if is_url(p) else Path(p).expanduser().resolve() for p in args.data]
    if args.resume:
        import json

        meta = args.out / "run.json"
        try:
            return [p if is_url(p) else Path(p) for p in json.loads(meta.read_text(encoding="utf-8"))["data"]]
        except (OSError, ValueError, KeyError) as exc:
            raise UsageError(f"{meta}: cannot read the run's data folders ({exc}); pass DATA") from None
    raise UsageError("give at least one DATA folder (MatSeg-format samples)")


def run(args: argparse.Namespace) -> int:
    try:
        import torch  # noqa: F401

        from matseg.net.train import Trainer, TrainError
    except ImportError:
        raise UsageError(TORCH_HINT) from None
    from matseg.config import dump_yaml

    cfg = resolve_train_config(args)
    if args.print_config:
        print(dump_yaml(cfg), end="")
        return 0
    if args.bench is not None and not args.bench.is_dir():
        raise UsageError(f"{args.bench}: benchmark folder not found")
    data = _data_folders(args)
    if not args.resume:
        from matseg.cli_common import prepare_output_dir

        prepare_output_dir(args.out)
    try:
        trainer = Trainer(cfg, data, args.out, resume=args.resume, bench=args.bench, progress=not args.no_progress)
        main = trainer.dist.main
        if main:
            print(
                f"train: {len(trainer.train_samples)} training / {len(trainer.val_samples)} validation samples from "
                f"{len(data)} folder(s) -> {args.out} ({trainer.device}, {trainer.dist.world} process(es), "
                f"steps {cfg.steps}, seed {cfg.seed})", file=sys.stderr,
            )  # fmt: skip
        result = trainer.run()
    except TrainError as exc:
        raise UsageError(str(exc)) from None
    finally:
        _leave_process_group()
    if main:
        from matseg.io.atomic import write_json_atomic

        write_json_atomic(args.out / "summary.json", result.to_dict())
        state = "interrupted at" if result.interrupted else "finished at"
        best = f"; best {result.best['metric']} {result.best['value']:.4g} at step {result.best['step']}" if result.best else ""
        print(f"train: {state} step {result.step}{best}; weights: {args.out / 'last.safetensors'}", file=sys.stderr)
    return exit_codes.INTERRUPTED if result.interrupted else exit_codes.OK


def _leave_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
