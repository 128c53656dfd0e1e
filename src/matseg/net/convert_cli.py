"""``matseg convert``: the MatSeg authors' trained net (their ``Defult.torch``) -> a matseg ``.safetensors`` file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from matseg import exit_codes
from matseg.cli_common import UsageError, prepare_output_dir
from matseg.net.infer_cli import TORCH_HINT


DESCRIPTION = (
    "Reads a torch.save'd state dict of the authors' Desnet.Net (their logs/Defult.torch; read with "
    "weights_only=True, nothing in it runs), checks every key and shape, and writes a .safetensors file that "
    "`matseg predict/segment/eval/app --weights` load without pickle. The ConvNeXt ImageNet classifier keys, unused "
    "by the net, are dropped. --weights also takes the .torch file directly."
)


def add_parser(subparsers) -> None:
    help_line = "convert the MatSeg authors' checkpoint (Defult.torch) to a matseg weights file"
    p = subparsers.add_parser("convert", help=help_line, description=DESCRIPTION)
    p.add_argument("checkpoint", type=Path, help="the authors' checkpoint (.torch/.pt/.pth)")
    p.add_argument("-o", "--out", type=Path, default=None,
                   help="output .safetensors file (default: CHECKPOINT with the suffix .safetensors)")  # fmt: skip
    p.add_argument("--channel-order", choices=("rgb", "bgr"), default="rgb",
                   help="rgb (default): as the authors trained the net; bgr: as their Demo.py and Evaluate.py feed "
                   "it (cv2.imread order), which reproduces their published numbers")  # fmt: skip
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        from matseg.io.hashing import sha256_file
        from matseg.net.checkpoint import CheckpointError, load_reference_checkpoint, save_weights
    except ImportError:
        raise UsageError(TORCH_HINT) from None
    out = args.out or args.checkpoint.with_suffix(".safetensors")
    if out.suffix != ".safetensors":
        raise UsageError(f"{out}: the output must be a .safetensors file")
    if out.resolve() == args.checkpoint.resolve():
        raise UsageError(f"{out}: the output would overwrite the checkpoint")
    try:
        model = load_reference_checkpoint(args.checkpoint, channel_order=args.channel_order)
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None
    prepare_output_dir(out.parent)
    extra = {"converted_from": args.checkpoint.name, "source_sha256": sha256_file(args.checkpoint),
             "origin": "MatSeg authors' Desnet.Net checkpoint"}  # fmt: skip
    save_weights(out, model, extra=extra)
    print(f"{args.checkpoint} -> {out} (reference architecture, channel order {args.channel_order})", file=sys.stderr)
    return exit_codes.OK
