#!/usr/bin/env python3
"""Why the encoder's depthwise convolutions train in fp32 on the CPU (docs/benchmarks.md).

Times forward and backward of one depthwise convolution, for the shapes of EfficientNet-Lite0's
costliest depthwise layers in a 6 x 320x320 training batch, in fp32 and bf16, with and without
channels-last. On CPUs with native bf16 the bf16 forward is the fastest, but oneDNN's bf16
channels-last depthwise *backward* is several times slower than fp32's, so
``Conv2dSame`` runs depthwise convs in fp32 when a backward pass will follow (training) and in
bf16 otherwise (inference).

Usage: python benchmarks/bench_depthwise.py [--threads 2] [--repeats 6]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

# (batch, channels, height, width), kernel, stride: Lite0's depthwise layers at 6 x 320².
SHAPES = [
    ((6, 96, 161, 161), 3, 2),
    ((6, 144, 83, 83), 5, 2),
    ((6, 240, 40, 40), 5, 1),
    ((6, 672, 20, 20), 5, 1),
    ((6, 1152, 10, 10), 5, 1),
]


def time_conv(shape, kernel: int, stride: int, dtype: torch.dtype, channels_last: bool, repeats: int) -> tuple[float, float]:
    """Median forward and backward seconds of a depthwise conv on random data."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(*shape, dtype=dtype).contiguous(memory_format=fmt).requires_grad_(True)
    w = torch.randn(shape[1], 1, kernel, kernel, dtype=dtype).contiguous(memory_format=fmt).requires_grad_(True)
    padding = kernel // 2 if stride == 1 else 0  # strided inputs above are already padded (TF SAME)
    forward, backward = [], []
    for i in range(repeats + 2):
        t0 = time.perf_counter()
        y = F.conv2d(x, w, stride=stride, padding=padding, groups=shape[1])
        t1 = time.perf_counter()
        y.backward(torch.ones_like(y))
        t2 = time.perf_counter()
        if i >= 2:  # warm-up: oneDNN picks its kernels on the first calls
            forward.append(t1 - t0)
            backward.append(t2 - t1)
    return statistics.median(forward), statistics.median(backward)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=6)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); median ms forward / backward")
    variants = [(dt, cl) for dt in (torch.float32, torch.bfloat16) for cl in (False, True)]
    print(f"{'input, kernel, stride':<32}" + "".join(f"{str(dt)[6:]}{' cl' if cl else '':<3}{'':>12}" for dt, cl in variants))
    totals = [[0.0, 0.0] for _ in variants]
    for shape, kernel, stride in SHAPES:
        cells = []
        for i, (dtype, cl) in enumerate(variants):
            f, b = time_conv(shape, kernel, stride, dtype, cl, args.repeats)
            totals[i][0] += f
            totals[i][1] += b
            cells.append(f"{f * 1e3:6.1f} / {b * 1e3:6.1f}  ")
        print(f"{str(shape) + f' k{kernel} s{stride}':<32}" + "".join(cells))
    print(f"{'sum':<32}" + "".join(f"{f * 1e3:6.1f} / {b * 1e3:6.1f}  " for f, b in totals))


if __name__ == "__main__":
    main()
