"""Inference latency of the descriptor net on this machine (512x512 RGB -> descriptors).

Target (issue 6): <= 0.3 s per 512x512 image on the CPU for the default encoder.
Usage: python benchmarks/bench_infer.py [--size 512] [--repeats 10] [--threads N] [--encoder NAME ...] [--tta]
(--encoder: also time a fresh net of that encoder, e.g. efficientnet_lite2; same speed as a trained one;
--tta: also time the test-time augmentation of `matseg predict --tta`). The shipped model is
timed with the net at the full --size and, when its registry entry names a smaller input side,
as `matseg predict` runs it: the image resized to that side first.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch

from matseg.net.infer import TTA_PRESET, Predictor
from matseg.net.infer_cli import add_precision_arg
from matseg.net.model import DescriptorNet, ModelConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    add_precision_arg(ap)
    ap.add_argument("--encoder", action="append", default=[], help="also time a fresh net of this encoder")
    ap.add_argument("--tta", action="store_true", help="also time each net with the --tta views")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}, device {args.device}")
    image = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    # The shipped default model when one is installed (same architecture as a fresh net: same speed).
    sides = [args.size]
    try:
        from matseg.models import model_info

        shipped = Predictor(None, device=args.device)  # at the model's own input side, as `matseg predict`
        nets = {f"{model_info()['name']} (shipped)": shipped.model}
        sides += [shipped.max_side] if shipped.max_side < args.size else []
    except LookupError:
        nets = {"efficientnet_lite0 (random init)": DescriptorNet(ModelConfig(pretrained=False))}
    for name in args.encoder:
        nets[f"{name} (random init)"] = DescriptorNet(ModelConfig(encoder=name, pretrained=False))
    runs = [(name, net, {}) for name, net in nets.items()]
    if args.tta:
        runs += [(f"{name} + tta {TTA_PRESET}", net, TTA_PRESET) for name, net in nets.items()]
    for (encoder, net, views), side in ((run, side) for run in runs for side in sides):
        params = sum(p.numel() for p in net.parameters()) / 1e6
        predictor = Predictor(net, device=args.device, max_side=side, precision=args.precision, **views)
        for _ in range(2):  # warm-up
            predictor.describe(image)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            dmap = predictor.describe(image)
            dmap.similarity(dmap.point_descriptor(args.size / 2, args.size / 2, 10))
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        print(f"{encoder} ({params:.1f} M params), net at {side} px: median {statistics.median(times):.3f} s, "
              f"min {min(times):.3f} s per {args.size}x{args.size} image (descriptors + one similarity map, {args.precision})")  # fmt: skip


if __name__ == "__main__":
    main()
