"""What folding eval-mode batch norms into the convolutions (``matseg.net.layers.conv_bn``) saves.

One process, the fold switched on and off between rounds (interleaved, so a noisy VM shifts both
alike), on the shipped model:

- predict: 512x512 image -> descriptors (``Predictor.describe``), the net at 512 px and at the
  model's input side;
- the encoder's frozen part (stem to stride 16, eval mode) on a training batch of
  7 x 352 x 320, the part a training step runs three times (the crop and the rank teacher's
  0.75 and 0.5 views).

Usage: python benchmarks/bench_fold.py [--rounds 6] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from contextlib import contextmanager

import numpy as np
import torch

import matseg.net.encoders.efficientnet_lite as lite_module
import matseg.net.layers as layers_module
from matseg.net.infer import Predictor


@contextmanager
def unfolded():
    """Batch norms run as their own pass, as before the fold."""
    plain = lambda conv, bn, x: bn(conv(x))  # noqa: E731
    saved = layers_module.conv_bn
    layers_module.conv_bn = lite_module.conv_bn = plain
    try:
        yield
    finally:
        layers_module.conv_bn = lite_module.conv_bn = saved


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per round and setting (median taken)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shipped = Predictor(None)  # the shipped default model at its own input side, as `matseg predict`
    net = shipped.model
    print(f"torch {torch.__version__}, {platform.machine()}, {args.threads} threads; "
          f"{args.rounds} rounds x {args.repeats} calls per setting, interleaved")  # fmt: skip
    image = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    torch.manual_seed(0)
    batch = (torch.rand(7, 3, 352, 320) * 255).contiguous(memory_format=torch.channels_last)
    jobs = {
        f"predict 512x512, net at {side} px": Predictor(net, max_side=side).describe
        for side in sorted({512, shipped.max_side}, reverse=True)
    }
    jobs = {name: (lambda describe=describe: describe(image)) for name, describe in jobs.items()}
    jobs["frozen encoder to stride 16, 7 x 352 x 320"] = lambda: net._encode(batch, last_stride=16)
    results = {(name, fold): [] for name in jobs for fold in (False, True)}
    with torch.no_grad():
        for _ in range(args.rounds):
            for name, fn in jobs.items():
                with unfolded():
                    results[name, False].append(median_seconds(fn, args.repeats))
                results[name, True].append(median_seconds(fn, args.repeats))
    for name in jobs:
        before, after = statistics.median(results[name, False]), statistics.median(results[name, True])
        print(f"  {name:<44} batch norm apart {before * 1000:7.1f} ms, folded {after * 1000:7.1f} ms "
              f"({before / after:.2f}x; medians of the rounds' medians)")  # fmt: skip


if __name__ == "__main__":
    main()
