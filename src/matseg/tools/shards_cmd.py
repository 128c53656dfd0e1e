"""``matseg shards pack|unpack``: a MatSeg-format folder <-> WebDataset-style tar shards.

Shard folders are read directly by ``check``, ``show`` and ``train`` (see :mod:`matseg.io.shards`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from matseg import exit_codes
from matseg.cli_common import UsageError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "shards", help="pack a dataset into tar shards with an index, or unpack shards",
        description="pack: every finished sample of DIR (nested ones included) into SHARDS/shard-NNNNNN.tar "
        "(members <key>.<file name>, WebDataset-style) plus SHARDS/index.json (offsets for random access); "
        "deterministic, atomic per shard, a rerun resumes. unpack: shards back into sample folders. "
        "check, show and train read a shard folder as they read a dataset folder.",
    )  # fmt: skip
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    pk = sub.add_parser("pack", help="dataset folder -> shards")
    pk.add_argument("dataset", type=Path)
    pk.add_argument("-o", "--out", type=Path, required=True, help="shard folder")
    pk.add_argument("--samples-per-shard", type=int, default=1000)
    pk.add_argument("--no-progress", action="store_true")
    up = sub.add_parser("unpack", help="shards -> dataset folder")
    up.add_argument("shards", type=Path)
    up.add_argument("-o", "--out", type=Path, required=True, help="dataset folder")
    up.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    from matseg.io.shards import ShardFormatError, is_shard_folder, pack, unpack

    bar = tqdm(total=0, unit="shard" if args.action == "pack" else "sample", disable=True if args.no_progress else None)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        if args.action == "pack":
            if not args.dataset.is_dir():
                raise UsageError(f"{args.dataset}: not a folder")
            if args.out.resolve() == args.dataset.resolve() or args.out.resolve().is_relative_to(args.dataset.resolve()):
                raise UsageError(f"{args.out}: the shard folder must not be inside the dataset it packs")
            index = pack(args.dataset, args.out, args.samples_per_shard, progress)
            bar.close()
            print(f"shards pack: {index['samples']} samples in {len(index['shards'])} shard(s) -> {args.out}", file=sys.stderr)
        else:
            if not is_shard_folder(args.shards):
                raise UsageError(f"{args.shards}: not a shard folder (no {args.shards / 'index.json'} of matseg shards pack)")
            written = unpack(args.shards, args.out, progress)
            bar.close()
            print(f"shards unpack: {written} sample(s) written -> {args.out} (finished ones skipped)", file=sys.stderr)
    except (ValueError, ShardFormatError) as exc:
        raise UsageError(str(exc)) from None
    return exit_codes.OK
