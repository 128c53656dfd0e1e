"""Training throughput of the descriptor net on this machine (images per second at 256x256).

Target (issue 6): >= 8 images/s training at 256 px on the CPU for the default encoder.

Measurements (``--parts``):

1. ``step``: one optimizer step (forward, material loss, backward, AdamW) on an in-memory batch
   of ``--batch`` 256x256 images (7 = what the default pixel budget 700*700*2 gives at 256 px,
   capped by max_images), for fp32 / bf16 autocast x channels-last off / on, at each thread count.
2. ``e2e``: ``matseg.net.train.Trainer`` on a MatSeg folder with the batch side fixed at 256
   (loader workers, crops, augmentation, logging included), images/s from metrics.csv.
3. ``split`` (with ``--data``): where a step of the training loop goes (forward, the rank or
   distillation teacher's views, losses, backward, optimizer, loading), from ``torch.profiler``
   and the trainer's ``matseg.train.<part>`` labels, with the GFLOP/s of each part (a CPU
   measurement: on CUDA the ranges would time kernel launches, not kernels).
4. ``convnext``: the paper's encoder for comparison: a plain-PyTorch ConvNeXt-B (random init -
   same layers and FLOPs as torchvision's, no weights needed for timing) with the reference's
   decoder widths (PSP 512, decoder 512/256/128).

Usage: python benchmarks/bench_train.py [--rounds 4] [--steps 4] [--threads 1,2] [--data DIR ...] [--parts lite,e2e,split,convnext]
                                       [--recipe configs/default-model.yaml]  (e2e with the recipe's crops, decode size, cache)
                                       [--set loss.rank_weight=0 ...]  (e2e: recipe overrides, e.g. the rank term off)
                                       [--busy 1]  (e2e with another process keeping a core busy)
                                       [--warm 30]  (split: steps before the measured --steps x --rounds)
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from matseg.net.config import OptimConfig
from matseg.net.encoders import _ENCODERS, register_encoder
from matseg.net.loss import material_loss
from matseg.net.model import DescriptorNet, ModelConfig
from matseg.net.train import parameter_groups

# ----------------------------------------------------------------------------- ConvNeXt-B, plain PyTorch


class _LayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


class _Block(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1, self.pw2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.pw2(F.gelu(self.pw1(self.norm(y)))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtBase(nn.Module):
    """ConvNeXt-B features (depths 3-3-27-3, widths 128-256-512-1024) at strides 4, 8, 16, 32."""

    feature_channels = (128, 256, 512, 1024)
    feature_strides = (4, 8, 16, 32)

    def __init__(self):
        super().__init__()
        dims, depths = self.feature_channels, (3, 3, 27, 3)
        self.down = nn.ModuleList([nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), _LayerNorm2d(dims[0], eps=1e-6))])
        for i in range(3):
            self.down.append(nn.Sequential(_LayerNorm2d(dims[i], eps=1e-6), nn.Conv2d(dims[i], dims[i + 1], 2, 2)))
        self.stages = nn.ModuleList(nn.Sequential(*[_Block(d) for _ in range(n)]) for d, n in zip(dims, depths))

    @staticmethod
    def normalize(images):
        return (images - 116.8) / 65.0  # the reference's input normalisation (§1.8)

    def forward_features(self, x):
        feats = []
        for down, stage in zip(self.down, self.stages):
            x = stage(down(x))
            feats.append(x)
        return feats


if "convnext_base_plain" not in _ENCODERS:
    register_encoder("convnext_base_plain")(lambda pretrained=True, weights_file=None: ConvNeXtBase())

REFERENCE_WIDTHS = {"psp_channels": 512, "decoder_channels": [512, 256, 128]}


# ----------------------------------------------------------------------------- measurements


def _batch(n: int, size: int):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, size, size, generator=g) * 255
    fractions = torch.zeros(n, 4, size, size)
    for i in range(4):  # four vertical bands per image
        fractions[:, i, :, i * size // 4 : (i + 1) * size // 4] = 1
    return images, fractions, torch.ones(n, size, size, dtype=torch.bool)


class StepTimer:
    """One net + optimizer + batch; ``run(k)`` times k optimizer steps."""

    def __init__(self, cfg: ModelConfig, batch: int, size: int, bf16: bool, channels_last: bool, freeze_stride: int = 0):
        torch.manual_seed(0)
        self.net = DescriptorNet(cfg).train()
        self.net.freeze_encoder(freeze_stride)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        optim = OptimConfig(lr=1e-5, weight_decay=4e-5)
        self.opt = torch.optim.AdamW(parameter_groups(self.net, optim), lr=optim.lr, weight_decay=optim.weight_decay)
        self.images, self.fractions, self.roi = _batch(batch, size)
        if channels_last:
            self.images = self.images.contiguous(memory_format=torch.channels_last)
        self.bf16, self.batch = bf16, batch
        self.times: list[float] = []
        self.run(2, record=False)  # warm-up (allocations, oneDNN kernel choice)

    def run(self, steps: int, record: bool = True) -> None:
        for _ in range(steps):
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                desc = self.net(self.images)
            loss, _ = material_loss(desc, self.fractions, self.roi)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            if record:
                self.times.append(time.perf_counter() - t0)


def compare(timers: dict[str, StepTimer], rounds: int, steps: int) -> dict[str, float]:
    """Round-robin over the variants (so a burst of load from other processes hits them all),
    then print images/s from the median step time and from the fastest round."""
    rates = {}
    for _ in range(rounds):
        for timer in timers.values():
            timer.run(steps)
    for label, t in timers.items():
        per_round = [statistics.median(t.times[r * steps : (r + 1) * steps]) for r in range(rounds)]
        rates[label] = t.batch / statistics.median(t.times)
        print(f"  {label:<34} {rates[label]:6.2f} images/s median  ({t.batch / min(per_round):6.2f} in the fastest round; "
              f"median {statistics.median(t.times):.3f} s/step)")  # fmt: skip
    return rates


def _loop_config(steps: int, size: int, batch: int, precision: str, workers: int | None, recipe: Path | None, overrides: tuple):
    """The TrainConfig of a measured loop of ``steps`` steps: ``recipe`` (a train config YAML,
    ``overrides`` as ``--set`` takes them) or a fixed ``size`` x ``batch``; no validation or
    checkpoints inside the loop."""
    import yaml

    from matseg.config import from_dict, merge_override, parse_override
    from matseg.net.train import TrainConfig

    loop = {"steps": steps, "log_every": steps, "val_every": 10**6, "checkpoint_every": 10**6, "keep_every": 0}
    if recipe:
        raw = yaml.safe_load(recipe.read_text())
        for text in overrides:
            merge_override(raw, *parse_override(text))
        raw.update(loop)
        raw.setdefault("data", {})["val_fraction"] = 0.0
        if workers is not None:
            raw["data"]["workers"] = workers
        return from_dict(TrainConfig, raw)
    return from_dict(TrainConfig, {
        **loop, "precision": precision,
        "data": {"size_min": size, "size_max": size, "max_pixels": size * size * batch, "max_images": batch,
                 "min_images": batch, "val_fraction": 0.0, "workers": 1 if workers is None else workers},
    })  # fmt: skip


def end_to_end(data: Path, steps: int, size: int, batch: int, precision: str, workers: int | None, recipe: Path | None = None,
               overrides: tuple = ()) -> float:  # fmt: skip
    """Images/s of the training loop; with ``recipe`` (a train config YAML, ``overrides`` as
    ``--set`` takes them) its settings (crop sizes, batch budget, decode size, cache, loss)
    replace the fixed ``size`` x ``batch``."""
    from matseg.net.data import loader_workers
    from matseg.net.train import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        cfg = _loop_config(steps + 2, size, batch, precision, workers, recipe, overrides)
        batch = cfg.data.max_images
        trainer = Trainer(cfg, [data], Path(tmp) / "run", progress=False)
        t0 = time.perf_counter()
        trainer.run()
        wall = time.perf_counter() - t0
        with (Path(tmp) / "run" / "metrics.csv").open() as fh:
            rows = list(csv.DictReader(fh))
    rate = float(rows[-1]["images_per_s"])
    setting = f"recipe {recipe} (sides {cfg.data.size_min}-{cfg.data.size_max}, decode_max_side {cfg.data.decode_max_side}, " \
        f"cache {'on' if cfg.data.cache_dir else 'off'}, rank_weight {cfg.loss.rank_weight}{', ' + ' '.join(overrides) if overrides else ''})" \
        if recipe else f"{batch} x {size}x{size}"
    print(f"  {str(data)[-40:]:<40} {rate:6.2f} images/s in the loop (about {(steps + 2) * batch / wall:.2f} incl. start-up), "
          f"{loader_workers(cfg.data.workers)} loader worker(s), precision {cfg.precision} -> "
          f"{str(trainer.autocast_dtype).replace('torch.', '') if trainer.autocast_dtype else 'fp32'}; {setting}")  # fmt: skip
    return rate


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed, _output_padding,
                         _groups, output_mask, out_shape=None, **kwargs) -> int:  # fmt: skip
    """FLOPs of a convolution's backward: one forward's worth per gradient asked for (input,
    weight). torch's own formula ignores ``groups`` and counts a depthwise conv's weight
    gradient as a dense conv's (the recipe's backward came out at 3x the CPU's peak)."""
    from torch.utils.flop_counter import conv_flop_count

    return conv_flop_count(x_shape, w_shape, grad_out_shape, transposed=transposed) * (int(output_mask[0]) + int(output_mask[1]))


def _part_flops(cfg, data: Path, warm: int) -> dict[str, float]:
    """FLOPs per part (``torch.utils.flop_counter``: convolutions and matmuls, backward included)
    of the steps after the first ``warm`` of a training run with ``cfg``, summed."""
    import matseg.net.train as train_module
    from torch.utils.flop_counter import FlopCounterMode

    totals: dict[str, float] = {}
    done = [0]

    @contextlib.contextmanager
    def counting(part: str):
        with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flops}) as counter:
            yield
        if done[0] >= warm:
            totals[part] = totals.get(part, 0.0) + counter.get_total_flops()
        done[0] += part == "step"

    labelled = train_module.step_part
    train_module.step_part = counting
    try:
        with tempfile.TemporaryDirectory() as tmp:
            train_module.Trainer(cfg, [data], Path(tmp) / "run", progress=False).run()
    finally:
        train_module.step_part = labelled
    return totals


def step_split(data: Path, steps: int, warm: int, size: int, batch: int, precision: str, workers: int | None,
               recipe: Path | None, overrides: tuple) -> dict[str, float]:  # fmt: skip
    """Where a training step's time goes: ``Trainer.run`` under ``torch.profiler``, the last
    ``steps`` of ``warm + steps`` steps split by their ``matseg.train.<part>`` labels (the time
    between two steps is loading and bookkeeping); then the same steps again under a FLOP
    counter, for the GFLOP/s of each part's convolutions and matmuls (elementwise work counts
    none). Returns milliseconds per step by part."""
    from torch.profiler import ProfilerActivity, profile

    from matseg.net.data import BatchStream
    from matseg.net.train import STEP_PARTS, Trainer

    if warm < 1:
        raise SystemExit("--warm must be at least 1 (the first step of a run includes its start-up)")
    cfg = _loop_config(warm + steps, size, batch, precision, workers, recipe, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, [data], Path(tmp) / "run", progress=False)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            trainer.run()
        images = sum(len(b) for b in list(BatchStream(cfg.seed, len(trainer.train_samples), cfg.data, 0, cfg.steps, 0, 1))[warm:])
    events = prof.events()
    step_events = sorted((e for e in events if e.name == "matseg.train.step"), key=lambda e: e.time_range.start)
    if len(step_events) != warm + steps:
        raise SystemExit(f"expected {warm + steps} labelled steps in the profile, found {len(step_events)}")
    measured = step_events[warm:]
    first, last = measured[0].time_range.start, measured[-1].time_range.end
    ms = dict.fromkeys(STEP_PARTS[1:], 0.0)
    for e in events:
        part = e.name.removeprefix("matseg.train.")
        if part in ms and first <= e.time_range.start <= last:
            ms[part] += e.time_range.elapsed_us() / 1e3
    ms["loading, bookkeeping"] = sum(b.time_range.start - a.time_range.end for a, b in zip(step_events[warm - 1 : -1], measured)) / 1e3
    flops = _part_flops(cfg, data, warm)
    total = sum(ms.values())
    print(f"  {steps} steps after {warm} warm-up steps, {images / steps:.1f} images per step: {images / total * 1e3:.2f} images/s "
          f"(under the profiler), {flops.get('step', 0) / total / 1e6:.0f} GFLOP/s of convolutions and matmuls overall")  # fmt: skip
    print(f"  {'part':<22} {'ms/step':>8} {'share':>6} {'GFLOP/step':>11} {'GFLOP/s':>8}")
    for part, value in ms.items():
        if value:
            gflop = flops.get(part, 0.0) / 1e9
            rate = f"{gflop / value * 1e3:8.1f}" if gflop else f"{'-':>8}"
            print(f"  {part:<22} {value / steps:8.1f} {value / total:6.1%} {gflop / steps:11.2f} {rate}")
    a = torch.randn(2048, 2048)
    a @ a
    t0 = time.perf_counter()
    for _ in range(5):
        a @ a
    print(f"  for scale: an fp32 2048 x 2048 matmul here runs at {5 * 2 * 2048**3 / (time.perf_counter() - t0) / 1e9:.0f} GFLOP/s")
    return {part: value / steps for part, value in ms.items()}


def loader_views(data: Path, recipe: Path | None, views: int) -> None:
    """CPU milliseconds per training view (read + crop + augment), without and with the decoded cache.

    CPU time of this process, so other jobs on the machine distort it less than wall time. The
    cache is filled first (its cost is the no-cache figure, once per sample).
    """
    import yaml

    from matseg.config import from_dict
    from matseg.net.data import DataConfig, MatSegTrainingSet, plan_batch, split_samples

    raw = (yaml.safe_load(recipe.read_text()) or {}).get("data", {}) if recipe else {}
    train, _ = split_samples([data], 0.0)
    keys = []
    stream = 0
    while len(keys) < views:
        keys += plan_batch(0, stream, len(train), from_dict(DataConfig, {**raw, "cache_dir": ""}))
        stream += 1
    keys = keys[:views]
    with tempfile.TemporaryDirectory() as tmp:
        for label, cache in (("decode every view", ""), ("cache, filling", f"{tmp}/cache"), ("cache, warm", f"{tmp}/cache")):
            cfg = from_dict(DataConfig, {**raw, "cache_dir": cache})
            dataset = MatSegTrainingSet(train, cfg, seed=0)
            t0 = time.process_time()
            for key in keys:
                dataset[key]
            ms = (time.process_time() - t0) / len(keys) * 1000
            print(f"  {label:<18} {ms:7.1f} ms CPU per view ({len(keys)} views, sides {cfg.size_min}-{cfg.size_max}, "
                  f"decode_max_side {cfg.decode_max_side})")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=7)
    ap.add_argument("--steps", type=int, default=4, help="steps per round")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", default="2", help="comma-separated torch thread counts to try")
    ap.add_argument("--data", type=Path, nargs="*", default=[], help="MatSeg folders for the end-to-end measurement")
    ap.add_argument("--workers", type=int, default=None, help="e2e loader processes (default: the recipe's data.workers, else 1)")
    ap.add_argument("--freeze", default="4,8", help="lite: also time bf16 + channels-last with the encoder frozen to these strides (optim.freeze_encoder_stride)")
    ap.add_argument("--parts", default="lite,e2e,convnext", help="which measurements: lite, e2e, split, convnext, loader")
    ap.add_argument("--warm", type=int, default=30, help="split: steps before the measured ones (every batch shape of the recipe's first steps seen once)")
    ap.add_argument("--views", type=int, default=200, help="loader: training views to time")
    ap.add_argument("--recipe", type=Path, default=None, help="e2e: take the settings from this train config (e.g. configs/default-model.yaml)")
    ap.add_argument("--busy", type=int, default=0, help="e2e: keep this many other processes busy (a pure-Python loop each) while measuring, as on a shared machine")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="e2e with --recipe: override a recipe key")
    args = ap.parse_args()

    print(f"torch {torch.__version__}, {platform.machine()}, {platform.processor() or '?'}; "
          f"{args.batch} x {args.size}x{args.size} per step")  # fmt: skip
    parts = set(args.parts.split(","))
    thread_counts = [int(t) for t in args.threads.split(",")]
    lite = ModelConfig(pretrained=False)  # weights do not change the speed
    for threads in thread_counts if "lite" in parts else []:
        torch.set_num_threads(threads)
        print(f"efficientnet_lite0 (default model), {threads} thread(s), {args.rounds} rounds x {args.steps} steps:")
        timers = {
            f"{'bf16' if bf16 else 'fp32'}, channels_last {'on' if cl else 'off'}": StepTimer(lite, args.batch, args.size, bf16, cl)
            for bf16 in (False, True)
            for cl in (False, True)
        }
        for stride in [int(s) for s in args.freeze.split(",") if s]:
            timers[f"bf16, channels_last on, frozen to stride {stride}"] = StepTimer(lite, args.batch, args.size, True, True, stride)
        compare(timers, args.rounds, args.steps)
        del timers
    torch.set_num_threads(max(thread_counts))
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy if "e2e" in parts else 0)]
    try:
        for data in args.data if "e2e" in parts else []:
            print(f"end to end (Trainer: loader + step; the autocast dtype precision resolves to on this CPU is printed)"
                  f"{f', {args.busy} other busy process(es)' if busy else ''}:")  # fmt: skip
            end_to_end(data, args.steps * args.rounds, args.size, args.batch, "bf16", args.workers, args.recipe, tuple(args.overrides))
    finally:
        for process in busy:
            process.kill()
    for data in args.data if "split" in parts else []:
        print(f"where a training step's time goes ({torch.get_num_threads()} thread(s)), {data}:")
        step_split(data, args.steps * args.rounds, args.warm, args.size, args.batch, "bf16", args.workers, args.recipe, tuple(args.overrides))
    for data in args.data if "loader" in parts else []:
        print(f"loader views of {data} (one process, {'recipe ' + str(args.recipe) if args.recipe else 'default data settings'}):")
        loader_views(data, args.recipe, args.views)
    if "convnext" in parts:
        cfg = ModelConfig(encoder="convnext_base_plain", pretrained=False, **REFERENCE_WIDTHS)
        params = sum(p.numel() for p in DescriptorNet(cfg).parameters()) / 1e6
        print(f"convnext_base (plain PyTorch, random init; {params:.1f} M params with the reference decoder), "
              f"{torch.get_num_threads()} thread(s):")  # fmt: skip
        timers = {f"{'bf16' if bf16 else 'fp32'}, channels_last on": StepTimer(cfg, args.batch, args.size, bf16, True) for bf16 in (False, True)}
        compare(timers, 2, 2)

if __name__ == "__main__":
    main()
