"""What matseg.net.memory.keep_freed_memory is worth: the same benchmark run with glibc's default
(MATSEG_KEEP_FREED_MEMORY=0: a fresh mmap per large block, unmapped on free) and with freed memory
kept, alternating, each in its own process; the peak resident memory of each process too.

- ``infer``: benchmarks/bench_infer.py (the shipped model on a 512x512 image, 2 threads).
- ``train``: benchmarks/bench_train.py --parts e2e with a recipe (default configs/default-model.yaml)
  on a MatSeg folder given with --data.

Usage: python benchmarks/bench_memory.py [--rounds 2] [--parts infer,train] [--data DIR] [--recipe YAML] [--steps 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODES = {"glibc default": "0", "freed memory kept": "1"}


def run(command: list[str], keep: str) -> tuple[list[str], float]:
    """The figure lines a benchmark printed and its peak resident memory in MiB."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["MATSEG_KEEP_FREED_MEMORY"] = keep
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)  # wait4: this child's own peak memory
    code = os.waitstatus_to_exitcode(status)
    if code:
        sys.exit(f"{' '.join(command)} failed ({code}):\n{output}")
    lines = [line.strip() for line in output.splitlines() if " s per " in line or "images/s" in line]
    return lines, usage.ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--parts", default="infer,train")
    ap.add_argument("--data", type=Path, default=None, help="train: a MatSeg folder (without it the train part is skipped)")
    ap.add_argument("--recipe", type=Path, default=Path("configs/default-model.yaml"))
    ap.add_argument("--steps", type=int, default=5, help="train: steps per bench_train round (4 rounds)")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    commands = {}
    if "infer" in parts:
        commands["infer"] = [sys.executable, str(HERE / "bench_infer.py"), "--repeats", "20", "--threads", "2"]
    if "train" in parts and args.data:
        commands["train"] = [sys.executable, str(HERE / "bench_train.py"), "--parts", "e2e", "--recipe", str(args.recipe),
                             "--data", str(args.data), "--steps", str(args.steps), "--threads", "2"]  # fmt: skip
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.libc_ver()[0]} {platform.libc_ver()[1]}")
    for name, command in commands.items():
        for round_ in range(args.rounds):
            for mode, keep in MODES.items():
                lines, peak = run(command, keep)
                print(f"{name} round {round_ + 1}, {mode} (peak RSS {peak:.0f} MiB):")
                for line in lines:
                    print(f"  {line}")


if __name__ == "__main__":
    main()
