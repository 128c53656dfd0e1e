"""Training the descriptor net (paper appendix G, reference ``train.py`` of digest §1.8).

A run folder holds everything needed to continue or use the run::

    RUN_DIR/config.yaml        the resolved TrainConfig (resume refuses a different one)
    RUN_DIR/run.json           data folders, sample counts, validation split, versions
    RUN_DIR/last.safetensors   latest weights + ModelConfig (load with matseg.net.checkpoint.load_model)
    RUN_DIR/best.safetensors   weights with the best validation score so far
    RUN_DIR/step_NNNNNNN.safetensors   permanent snapshots every ``keep_every`` steps
    RUN_DIR/state.pt           optimizer, schedule, grad scaler, step, RNG states, best score
                               (tensors and plain values only: torch.load(weights_only=True))
    RUN_DIR/metrics.csv        step, loss, accuracy, lr, images/s, validation figures
    RUN_DIR/validation.jsonl   every validation's full result
    RUN_DIR/tb/                TensorBoard events (when tensorboard is installed)

Exact resume: the batches are a pure function of ``(seed, step)`` (:mod:`matseg.net.data`), and
the weights, optimizer moments, schedule position and RNG states are restored, so a run
interrupted and resumed ends with the same weights as an uninterrupted one (bit for bit on CPU
in fp32; see tests/net/test_train.py).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.profiler import record_function

import matseg
from matseg.config import diff_keys, dump_yaml, from_dict, to_dict
from matseg.io.atomic import write_json_atomic, write_text_atomic
from matseg.io.shards import is_url
from matseg.net.checkpoint import read_metadata, save_weights
from matseg.net.data import (
    BatchStream,
    MatSegTrainingSet,
    fill_cache,
    loader_workers,
    make_loader,
    split_samples,
    validation_plan,
)
from matseg.net.loss import average_references, distill_loss, encoder_reference, material_loss, rank_loss
from matseg.net.config import (  # noqa: F401 (re-exported)
    CONFIG_NAME,
    RUN_ONLY_KEYS,
    LossConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    TrainError,
    load_saved_config,
)
from matseg.net.memory import HUGE_PAGES_VARIABLE, keep_freed_memory, prefer_huge_pages
from matseg.net.model import DescriptorNet
from matseg.net.precision import autocast, resolve_precision
from matseg.runner.driver import available_cpus

logger = logging.getLogger(__name__)

STATE_NAME = "state.pt"
LAST_NAME = "last.safetensors"
BEST_NAME = "best.safetensors"
RUN_META_NAME = "run.json"
METRICS_NAME = "metrics.csv"
VALIDATION_NAME = "validation.jsonl"
TERM_COLUMNS = ("rank_loss", "distill_loss")  # optional loss terms: empty cells when off
METRIC_COLUMNS = ("step", "loss", "accuracy", "materials", "lr", "images_per_s", "val_loss", "val_accuracy", "bench_score", *TERM_COLUMNS)




# ----------------------------------------------------------------------------- small pure pieces


def lr_factor(step: int, cfg: OptimConfig, total_steps: int) -> float:
    """Multiplier of ``cfg.lr`` for the update that follows ``step`` completed steps."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    span = max(1, total_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_fraction + (1 - cfg.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress))


#: On CUDA, more distinct batch shapes than this get a warning (see :func:`batch_shape_hint`).
CUDA_SHAPES_WARN = 16


def batch_shape_hint(data_cfg, device_type: str) -> str | None:
    """A warning for CUDA runs with many distinct batch shapes, else ``None``.

    On an H200 (docs/benchmarks.md) the first step of every new (images, height, width) shape cost
    seconds, so 169 shapes (crops 256-640 px in 32 px steps) kept a run at under 1 image/s for
    minutes; coarser crop steps (``data.size_multiple``) bound that one-off cost.
    """
    if device_type != "cuda":
        return None
    count = len(data_cfg.batch_shapes())
    if count <= CUDA_SHAPES_WARN:
        return None
    return (
        f"{count} distinct batch shapes (data.size_min {data_cfg.size_min}, size_max {data_cfg.size_max}, "
        f"size_multiple {data_cfg.size_multiple}): on a GPU the first step of each new shape can take seconds; "
        f"a larger data.size_multiple gives fewer (configs/default-model-gpu.yaml uses 64)"
    )


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainError(f"device {name!r} requested but CUDA is not available")
        return torch.device(name if ":" in name else f"cuda:{local_rank}")
    return torch.device(name)


def _load_weights_spec(spec: str, key: str):
    """The net named by a weights option ``key``: a checkpoint path, or ``default`` (the shipped model)."""
    from matseg.net.checkpoint import CheckpointError, load_model

    path = spec
    if spec == "default":
        from matseg.models import verify

        path = verify()["path"]
    try:
        return path, load_model(path)
    except CheckpointError as exc:
        raise TrainError(f"{key}: {exc}") from None


def _load_initial_weights(net: DescriptorNet, spec: str) -> None:
    """Fine-tuning: ``net`` takes the weights of ``spec`` (a checkpoint, or ``default``); the
    architectures must match (the message names what differs)."""
    from dataclasses import asdict

    path, source = _load_weights_spec(spec, "model.init_weights")
    ours = {k: v for k, v in asdict(net.cfg).items() if k not in ("pretrained", "encoder_weights", "init_weights")}
    theirs = {k: v for k, v in asdict(getattr(source, "cfg", None) or net.cfg).items() if k in ours}
    if not isinstance(source, DescriptorNet) or ours != theirs:
        differs = sorted(k for k in ours if ours[k] != theirs.get(k))
        raise TrainError(f"model.init_weights {path}: another architecture than model.* ({', '.join(differs) or 'not a matseg net'})")
    net.load_state_dict(source.state_dict(), strict=True)


def samples_digest(samples: list[Path]) -> str:
    """Fingerprint of the ordered sample list (the batch stream depends on it)."""
    h = hashlib.sha256()
    for p in samples:
        h.update(str(p).encode("utf-8") + b"\0")
    return h.hexdigest()[:16]


def _rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }  # fmt: skip
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- distributed


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    #: where collectives put their tensors: NCCL reduces CUDA tensors only, gloo CPU ones
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def sum(self, values: list[float]) -> list[float]:
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()


def init_distributed(device_name: str) -> Dist:
    """Join the process group torchrun describes in the environment (WORLD_SIZE, RANK, ...)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device_name != "cpu" and torch.cuda.is_available()
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(local_rank)
        # Reductions are tiny (metrics, the stop flag); gloo also carries the DDP gradients on CPU.
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    reduce_on_cuda = dist.get_backend() == "nccl"
    return Dist(rank, world, local_rank, torch.device("cuda", local_rank) if reduce_on_cuda else torch.device("cpu"))


# ----------------------------------------------------------------------------- logging


class MetricsLog:
    """metrics.csv (always), validation.jsonl and TensorBoard (when available); rank 0 only.

    On resume, rows after the resumed step (written before an interruption) are discarded so
    the log reads as one uninterrupted run.
    """

    def __init__(self, run_dir: Path, start_step: int):
        self.path = run_dir / METRICS_NAME
        self.val_path = run_dir / VALIDATION_NAME
        rows = []
        if start_step and self.path.exists():
            with self.path.open(newline="", encoding="utf-8") as fh:
                rows = [r for r in csv.DictReader(fh) if r.get("step", "").isdigit() and int(r["step"]) <= start_step]
        with self.path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, METRIC_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        if self.val_path.exists():
            kept = [line for line in self.val_path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= start_step]  # fmt: skip
            write_text_atomic(self.val_path, "".join(line + "\n" for line in kept))
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=start_step + 1 if start_step else None)
        except Exception as exc:  # tensorboard not installed (ImportError) or unusable
            logger.info("TensorBoard logging off (%s); metrics.csv only", exc)

    def write(self, row: dict) -> None:
        with self.path.open("a", newline="", encoding="utf-8") as fh:
            csv.DictWriter(fh, METRIC_COLUMNS, extrasaction="ignore").writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
            )
        if self.tb is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.tb.add_scalar(key if key.startswith(("val", "bench")) else f"train/{key}", value, row["step"])
            self.tb.flush()

    def write_validation(self, step: int, metrics: dict) -> None:
        with self.val_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": step, **metrics}) + "\n")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# ----------------------------------------------------------------------------- validation


@torch.no_grad()
def validation_loss(net: DescriptorNet, loader, device: torch.device, autocast_dtype, cfg: LossConfig) -> dict:
    """Held-out loss and accuracy, pixel-weighted over the fixed validation batches."""
    total = {"loss": 0.0, "accuracy": 0.0, "pixels": 0, "images": 0}
    for batch in loader:
        if not batch["paths"]:
            continue
        images = batch["images"].to(device)
        with autocast(device, autocast_dtype):
            desc = net(images)
        loss, stats = material_loss(desc, batch["fractions"].to(device), batch["roi"].to(device), cfg.temperature, cfg.target)
        if stats["pixels"] and math.isfinite(stats["accuracy"]):
            total["loss"] += float(loss) * stats["pixels"]
            total["accuracy"] += stats["accuracy"] * stats["pixels"]
            total["pixels"] += stats["pixels"]
            total["images"] += len(batch["paths"])
    if not total["pixels"]:
        return {}
    return {"val_loss": total["loss"] / total["pixels"], "val_accuracy": total["accuracy"] / total["pixels"], "val_images": total["images"]}


def parameter_groups(net: DescriptorNet, cfg: OptimConfig) -> list[dict]:
    """AdamW parameter groups: the decoder and head at ``lr``, the encoder at ``lr * encoder_lr_scale``;
    frozen parameters (``freeze_encoder_stride``) in none.

    One group when the scale is 1, so runs saved before the option existed resume unchanged;
    the learning-rate schedule multiplies each group's own rate.
    """
    trained = [p for p in net.parameters() if p.requires_grad]
    if cfg.encoder_lr_scale == 1:
        return [{"params": trained}]
    in_encoder = {id(p) for p in net.encoder.parameters()}
    encoder = [p for p in trained if id(p) in in_encoder]
    rest = [p for p in trained if id(p) not in in_encoder]
    return [{"params": rest}, {"params": encoder, "lr": cfg.lr * cfg.encoder_lr_scale}]


def load_benchmark(bench_dir: Path) -> list:
    """Every readable image of a MatSeg benchmark folder (``matseg.evaluate.benchmark``), at the
    evaluation's default size (longer side 700); unreadable ones are logged and left out."""
    from matseg.evaluate.benchmark import BenchmarkFormatError, load_benchmark_image, scan_benchmark

    try:
        entries = scan_benchmark(bench_dir)
    except BenchmarkFormatError as exc:
        raise TrainError(str(exc)) from None
    images = []
    for entry in entries:
        try:
            images.append(load_benchmark_image(entry))
        except BenchmarkFormatError as exc:
            logger.warning("benchmark image left out of validation: %s", exc)
    if not images:
        raise TrainError(f"{bench_dir}: no readable benchmark image")
    return images


def benchmark_metrics(net: DescriptorNet, images: list, device: torch.device, max_side: int | None = None) -> dict:
    """The evaluation stage's triplet metric of ``net`` on loaded benchmark images.

    The net is run exactly as ``matseg eval --predictor matseg`` runs a saved checkpoint
    (``matseg.net.infer.Predictor`` at ``max_side``, the run's ``input_side``; descriptors
    upsampled bilinearly to the image), and scored
    with ``matseg.evaluate.jobs.evaluate_benchmark_image``.

    Returns:
        ``{"bench_score": triplet accuracy averaged per material (mode all, paper variant; the
        paper's headline figure, higher is better), "bench_triplet_point", "bench_top1_material",
        "bench_top1_point", "bench_images"}``.
    """
    import torch.nn.functional as F

    from matseg.evaluate.jobs import evaluate_benchmark_image
    from matseg.evaluate.metrics import aggregate_images
    from matseg.evaluate.predictors import DescriptorPredictor
    from matseg.net.infer import Predictor

    class TrainingNet(DescriptorPredictor):
        name = "matseg"

        def __init__(self):
            self.predictor = Predictor(net, device=str(device), max_side=max_side)

        def describe(self, image: np.ndarray) -> np.ndarray:
            dmap = self.predictor.describe(image)
            up = F.interpolate(dmap.descriptors[None], size=dmap.image_size, mode="bilinear", align_corners=False)[0]
            return up.permute(1, 2, 0).float().cpu().numpy()

    predictor = TrainingNet()
    records = [evaluate_benchmark_image(predictor, image, seed=0)[0]["results"] for image in images]
    summary = aggregate_images(records)["all"]["paper"]
    return {
        "bench_score": summary["triplet_material"],
        "bench_triplet_point": summary["triplet_point"],
        "bench_top1_material": summary["top1_material"],
        "bench_top1_point": summary["top1_point"],
        "bench_images": summary["images"],
    }


def _best_entry(metrics: dict, step: int) -> dict | None:
    """The figure that picks the best checkpoint: the benchmark score when there is one
    (higher is better), else the held-out loss (lower is better)."""
    if math.isfinite(metrics.get("bench_score", math.nan)):
        return {"metric": "bench_score", "value": metrics["bench_score"], "higher_is_better": True, "step": step}
    if math.isfinite(metrics.get("val_loss", math.nan)):
        return {"metric": "val_loss", "value": metrics["val_loss"], "higher_is_better": False, "step": step}
    return None


def _improves(metrics: dict, best: dict | None) -> bool:
    entry = _best_entry(metrics, 0)
    if entry is None:
        return False
    if best is None or best["metric"] != entry["metric"]:
        return True  # first validation, or the score changed kind (e.g. --bench added on resume)
    return entry["value"] > best["value"] if entry["higher_is_better"] else entry["value"] < best["value"]


# ----------------------------------------------------------------------------- the trainer


@dataclass
class TrainResult:
    step: int
    interrupted: bool
    best: dict | None
    last_metrics: dict
    run_dir: Path

    def to_dict(self) -> dict:
        return {"step": self.step, "interrupted": self.interrupted, "best": self.best, "last_metrics": self.last_metrics, "run_dir": str(self.run_dir)}


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop stops after the current step and checkpoints."""

    def __init__(self):
        self.set = False
        self._old = {}

    def __enter__(self):
        if sys.platform != "win32":
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(ValueError):  # not the main thread
                    self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.set:  # second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.set = True

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def _unwrap(model):
    return getattr(model, "module", model)


class Trainer:
    """Train a :class:`DescriptorNet` on MatSeg-format folders into ``run_dir``.

    Args:
        cfg: the run's configuration.
        data_roots: dataset folders (ours, published, nested samples included when ``cfg.data.nested``).
        run_dir: output folder (created).
        resume: continue the run in ``run_dir`` exactly where its last checkpoint left it.
        bench: optional MatSeg benchmark folder; validation then also reports the triplet
            metric, which decides the best checkpoint.
        progress: show a progress bar (rank 0).

    On the CPU, :meth:`run` tells the process's C library to keep freed memory for reuse
    (:func:`matseg.net.memory.keep_freed_memory`; ``MATSEG_KEEP_FREED_MEMORY=0`` opts out), and
    the constructor asks PyTorch for huge pages (:func:`matseg.net.memory.prefer_huge_pages`;
    ``THP_MEM_ALLOC_ENABLE=0`` opts out).
    """

    def __init__(self, cfg: TrainConfig, data_roots: list[Path], run_dir: Path, resume: bool = False,
                 bench: Path | None = None, progress: bool = True):  # fmt: skip
        self.cfg, self.run_dir, self.resume, self.bench, self.progress = cfg, Path(run_dir), resume, bench, progress
        self.data_roots = [p if is_url(p) else Path(p) for p in data_roots]  # URLs: shard folders via fsspec
        self._bench_images: list = []
        self.dist = init_distributed(cfg.device)
        self.device = resolve_device(cfg.device, self.dist.local_rank)
        if self.device.type == "cpu":
            prefer_huge_pages()  # 5-12 % faster steps, where no tensor exists yet (matseg.net.memory)
        self.autocast_dtype = resolve_precision(cfg.precision, self.device)
        try:
            self.train_samples, self.val_samples = split_samples(self.data_roots, cfg.data.val_fraction, cfg.data.nested)
        except (OSError, ValueError) as exc:
            raise TrainError(str(exc)) from None
        if not self.train_samples:
            raise TrainError(f"all {len(self.val_samples)} samples fell into the validation split; lower data.val_fraction")
        hint = batch_shape_hint(cfg.data, self.device.type)
        if hint and self.dist.main:
            logger.warning("%s", hint)

    # -- setup

    def _build(self):
        torch.manual_seed(self.cfg.seed)  # same initial head on every rank (DDP also broadcasts rank 0's)
        net = DescriptorNet(self.cfg.model)
        if self.cfg.model.init_weights:
            _load_initial_weights(net, self.cfg.model.init_weights)
        net.freeze_encoder(self.cfg.optim.freeze_encoder_stride)
        net = net.to(self.device)
        if self.cfg.channels_last:
            net = net.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(parameter_groups(net, self.cfg.optim), lr=self.cfg.optim.lr, weight_decay=self.cfg.optim.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, self.cfg.optim, self.cfg.steps))
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.autocast_dtype == torch.float16)
        self.teacher = self._build_teacher()
        return net, opt, sched, scaler

    def _build_teacher(self) -> DescriptorNet | None:
        """The frozen self-distillation teacher (``loss.distill_teacher``), or None when off."""
        if not self.cfg.loss.distill_weight:
            return None
        spec = self.cfg.loss.distill_teacher
        _, teacher = _load_weights_spec(self.cfg.model.init_weights if spec == "init" else spec, "loss.distill_teacher")
        if not isinstance(teacher, DescriptorNet):
            raise TrainError(f"loss.distill_teacher {self.cfg.loss.distill_teacher}: not a matseg descriptor net")
        teacher.eval().requires_grad_(False)
        teacher = teacher.to(self.device)
        return teacher.to(memory_format=torch.channels_last) if self.cfg.channels_last else teacher

    def _restore(self, net, opt, sched, scaler) -> dict:
        from safetensors.torch import load_file

        state_path, weights_path = self.run_dir / STATE_NAME, self.run_dir / LAST_NAME
        if not state_path.exists() or not weights_path.exists():
            raise TrainError(f"{self.run_dir}: nothing to resume ({STATE_NAME} and {LAST_NAME} are written at the first checkpoint)")
        try:
            state = torch.load(state_path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise TrainError(f"{state_path}: unreadable ({exc})") from None
        weights_step = read_metadata(weights_path)["extra"].get("step")
        if weights_step != state["step"]:
            raise TrainError(
                f"{self.run_dir}: {LAST_NAME} is from step {weights_step} but {STATE_NAME} from step {state['step']} "
                "(interrupted while checkpointing); cannot resume exactly"
            )
        net.load_state_dict(load_file(str(weights_path), device=str(self.device)), strict=True)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        data = state.get("data", {})
        if data.get("digest") != samples_digest(self.train_samples):
            logger.warning(
                "the training samples changed since the checkpoint (%s -> %s samples): batches after the resume "
                "differ from an uninterrupted run", data.get("num_samples"), len(self.train_samples),
            )  # fmt: skip
        if state.get("world_size", 1) != self.dist.world:
            logger.warning("resuming a %s-process run with %s processes: the batch stream is sharded differently",
                           state.get("world_size", 1), self.dist.world)  # fmt: skip
        return state

    def _checkpoint_extra(self, step: int, best: dict | None) -> dict:
        """Metadata of every weights file the run writes; inference reads ``input_side``."""
        extra = {"step": step, "seed": self.cfg.seed, "best": best}
        return {**extra, "input_side": self.cfg.input_side} if self.cfg.input_side else extra

    def _save(self, net, opt, sched, scaler, step: int, best: dict | None) -> None:
        extra = self._checkpoint_extra(step, best)
        save_weights(self.run_dir / LAST_NAME, _unwrap(net), extra=extra)
        state = {
            "step": step,
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": _rng_state(),
            "best": best,
            "data": {"num_samples": len(self.train_samples), "digest": samples_digest(self.train_samples)},
            "world_size": self.dist.world,
            "matseg_version": matseg.__version__,
        }
        tmp = self.run_dir / f".{STATE_NAME}.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.run_dir / STATE_NAME)
        if self.cfg.keep_every and step % self.cfg.keep_every == 0:
            save_weights(self.run_dir / f"step_{step:07d}.safetensors", _unwrap(net), extra=extra)

    def _write_run_meta(self) -> None:
        write_json_atomic(self.run_dir / RUN_META_NAME, {
            "data": [str(p) if is_url(p) else str(p.resolve()) for p in self.data_roots],
            "bench": str(self.bench.resolve()) if self.bench else None,
            "train_samples": len(self.train_samples),
            "val_samples": [str(p) for p in self.val_samples],
            "world_size": self.dist.world,
            "device": str(self.device),
            "autocast": str(self.autocast_dtype).replace("torch.", "") if self.autocast_dtype else "fp32",
            "matseg_version": matseg.__version__,
            "torch_version": torch.__version__,
            "keep_freed_memory": keep_freed_memory() if self.device.type == "cpu" else None,
            "huge_pages": os.environ.get(HUGE_PAGES_VARIABLE) == "1" if self.device.type == "cpu" else None,  # matseg.net.memory.prefer_huge_pages
        })  # fmt: skip

    def _check_config(self) -> None:
        saved = load_saved_config(self.run_dir)
        with contextlib.suppress(TypeError, ValueError):
            # Options added since the run started take their defaults, which keep the old behaviour.
            saved = to_dict(from_dict(TrainConfig, saved))
        changed = [k for k in diff_keys(saved, to_dict(self.cfg)) if k not in RUN_ONLY_KEYS]
        if changed:
            raise TrainError(
                f"{self.run_dir} was trained with a different configuration (differs in: {', '.join(changed)}); "
                f"only {', '.join(RUN_ONLY_KEYS)} may change on --resume"
            )

    # -- validation

    def _validate(self, net, step: int, val_loader) -> dict:
        model = _unwrap(net)
        model.eval()
        metrics = {}
        try:
            if val_loader is not None:
                metrics.update(validation_loss(model, val_loader, self.device, self.autocast_dtype, self.cfg.loss))
            if self._bench_images:
                metrics.update(benchmark_metrics(model, self._bench_images, self.device, self.cfg.input_side))
        finally:
            model.train()
        return metrics

    # -- the loop

    def run(self) -> TrainResult:
        if self.device.type == "cpu":
            keep_freed_memory()  # a fresh mmap per activation cost 15 % of a CPU step (matseg.net.memory)
        threads = torch.get_num_threads()
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        try:
            return self._run()
        finally:
            torch.set_num_threads(threads)

    def _run(self) -> TrainResult:
        cfg, d = self.cfg, self.dist
        if d.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        d.barrier()
        if self.resume:
            self._check_config()
        elif (self.run_dir / STATE_NAME).exists():
            raise TrainError(f"{self.run_dir} already holds a training run; use --resume to continue it or another folder")

        if d.main and self.bench is not None:
            self._bench_images = load_benchmark(self.bench)  # fail now, not at the first validation
        net, opt, sched, scaler = self._build()
        state = self._restore(net, opt, sched, scaler) if self.resume else {"step": 0, "best": None}
        step, best = int(state["step"]), state.get("best")
        if cfg.data.cache_dir and step < cfg.steps:
            self._fill_cache(step)
        if d.main:
            write_text_atomic(self.run_dir / CONFIG_NAME, dump_yaml(cfg))
            self._write_run_meta()
        if step >= cfg.steps:
            return TrainResult(step, False, best, {}, self.run_dir)

        if d.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        net.train()
        workers = loader_workers(cfg.data.workers, d.world)
        train_set = MatSegTrainingSet(self.train_samples, cfg.data, cfg.seed)
        stream = BatchStream(cfg.seed, len(self.train_samples), cfg.data, step, cfg.steps, d.rank, d.world)
        loader = make_loader(train_set, stream, workers, pin_memory=self.device.type == "cuda")
        val_loader = None
        if d.main and self.val_samples:
            val_set = MatSegTrainingSet(self.val_samples[: cfg.data.val_max_samples], cfg.data, cfg.seed)
            val_loader = make_loader(val_set, validation_plan(len(val_set), cfg.data), workers)

        log = MetricsLog(self.run_dir, step) if d.main else None
        bar = None
        if d.main and self.progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, initial=step, desc="train", unit="step", dynamic_ncols=True)
        window = _Window()
        last_metrics: dict = {}
        interrupted = False
        try:
            with _StopFlag() as stop:
                for batch in loader:
                    with step_part("step"):
                        loss_value, accuracy, materials, images, terms = self._step(net, opt, sched, scaler, batch)
                    step += 1
                    window.add(loss_value, accuracy, materials, images, terms)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{loss_value:.4f}", refresh=False)
                    stop_now = d.sum([float(stop.set)])[0] > 0 if d.world > 1 else stop.set
                    final = step == cfg.steps or stop_now
                    row = None
                    if step % cfg.log_every == 0 or final or step % cfg.val_every == 0:
                        row = {"step": step, "lr": opt.param_groups[0]["lr"], **window.summary(d)}
                    paused = time.perf_counter()
                    if step % cfg.val_every == 0 or (final and not stop_now):
                        metrics = self._validate(net, step, val_loader) if d.main else {}
                        d.barrier()
                        if d.main and metrics:
                            log.write_validation(step, metrics)
                            row.update(metrics)
                            if _improves(metrics, best):
                                best = _best_entry(metrics, step)
                                save_weights(self.run_dir / BEST_NAME, _unwrap(net), extra=self._checkpoint_extra(step, best))
                    if row is not None and d.main:
                        log.write(row)
                        last_metrics = row
                    if step % cfg.checkpoint_every == 0 or final:
                        if d.main:
                            self._save(net, opt, sched, scaler, step, best)
                        d.barrier()
                    window.t0 += time.perf_counter() - paused  # images/s counts training only
                    if stop_now:
                        interrupted = step < cfg.steps
                        break
        finally:
            if bar is not None:
                bar.close()
            if log is not None:
                log.close()
        return TrainResult(step, interrupted, best, last_metrics, self.run_dir)

    def _fill_cache(self, step: int) -> None:
        """Decode what ``data.cache_dir`` lacks of the samples this run will draw (each rank
        those of its own batches from ``step`` on, the main rank also the validation samples)
        before the first step, in parallel, instead of one at a time inside the training loop.
        Only the planned first choices: a sample a run never draws is not decoded, however
        large the dataset; the rare redraw of an unusable view decodes in the loop as before."""
        cfg, d = self.cfg, self.dist
        stream = BatchStream(cfg.seed, len(self.train_samples), cfg.data, step, cfg.steps, d.rank, d.world)
        drawn = sorted({key.sample for batch in stream for key in batch})
        samples = [self.train_samples[i] for i in drawn]
        if d.main:
            samples += self.val_samples[: cfg.data.val_max_samples]
        workers = max(1, available_cpus() // d.world)
        summary = fill_cache(samples, cfg.data, workers, progress=self.progress and d.main)
        if d.main and (summary.done or summary.failed):
            print(summary.format(), file=sys.stderr)
        d.barrier()

    def _step(self, net, opt, sched, scaler, batch) -> tuple[float, float, int, int, dict]:
        images = batch["images"].to(self.device, non_blocking=True)
        if self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        fractions = batch["fractions"].to(self.device, non_blocking=True)
        roi = batch["roi"].to(self.device, non_blocking=True)
        loss_cfg = self.cfg.loss
        with step_part("forward"), autocast(self.device, self.autocast_dtype):
            if loss_cfg.rank_weight:
                descriptors, taps = net(images, with_taps=True)
            else:
                descriptors = net(images)
        # The loss runs in fp32 (the net returns fp32 unit vectors): softmax at temperature 0.2
        # over many materials is sensitive to bf16 rounding.
        with step_part("loss"):
            loss, stats = material_loss(descriptors, fractions, roi, loss_cfg.temperature, loss_cfg.target)
        terms = {}  # the optional terms' values, unweighted (TERM_COLUMNS)
        if loss_cfg.rank_weight:
            with step_part("rank_teacher"):
                reference = self._rank_reference(net, images, taps, tuple(descriptors.shape[-2:]))
            with step_part("loss"):
                rank, rank_stats = rank_loss(descriptors, reference, fractions, roi, loss_cfg.rank_scale, loss_cfg.rank_margin)
                loss = loss + loss_cfg.rank_weight * rank
            if rank_stats["triplets"]:
                terms["rank_loss"] = float(rank.detach())
        if loss_cfg.distill_weight:
            with step_part("distill_teacher"):
                target = self._distill_target(images, tuple(descriptors.shape[-2:]))
            with step_part("loss"):
                distill = distill_loss(descriptors, target)
                loss = loss + loss_cfg.distill_weight * distill
            terms["distill_loss"] = float(distill.detach())
        with step_part("backward"):
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
        with step_part("optimizer"):
            if self.cfg.optim.grad_clip:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(net.parameters(), self.cfg.optim.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
        return float(loss.detach()), stats["accuracy"], stats["materials"], int(images.shape[0]), terms

    def _rank_reference(self, net, images: torch.Tensor, taps: list, size: tuple[int, int]) -> torch.Tensor:
        """The rank term's ImageNet reference: the crop's own taps, plus the encoder's view of
        the crop at each other ``loss.rank_teacher_scales`` size (no gradients), averaged."""
        references = []
        model = _unwrap(net)
        for scale in self.cfg.loss.rank_teacher_scales:
            if scale == 1.0:
                references.append(encoder_reference(taps, size))
                continue
            with torch.no_grad(), autocast(self.device, self.autocast_dtype):
                scaled = _scaled_view(images, scale)
                h, w = scaled.shape[-2:]
                references.append(encoder_reference(model.encoder_taps(scaled), (-(-h // 4), -(-w // 4))))
        return references[0] if len(references) == 1 else average_references(references, size)

    def _distill_target(self, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The teacher's descriptors of the crop averaged over ``loss.distill_scales`` sizes (and
        their mirror images with ``loss.distill_flip``) on the descriptor grid ``size``: the
        --tta views of the crop."""
        views = []
        with torch.no_grad(), autocast(self.device, self.autocast_dtype):
            for scale in self.cfg.loss.distill_scales:
                scaled = _scaled_view(images, scale)
                views.append(self.teacher(scaled).float())
                if self.cfg.loss.distill_flip:
                    views.append(self.teacher(scaled.flip(-1)).float().flip(-1))
        return average_references(views, size)


#: The parts of a training step that carry a ``torch.profiler`` label ``matseg.train.<part>``:
#: ``step`` encloses the others; the time between two steps is loading and bookkeeping.
#: ``python benchmarks/bench_train.py --parts split`` reports where a step's time goes by them.
STEP_PARTS = ("step", "forward", "rank_teacher", "distill_teacher", "loss", "backward", "optimizer")


def step_part(part: str) -> record_function:
    """A ``torch.profiler`` label for one of :data:`STEP_PARTS` (microseconds when no profiler runs)."""
    return record_function(f"matseg.train.{part}")


def _scaled_view(images: torch.Tensor, scale: float) -> torch.Tensor:
    """(B, 3, H, W) images resized (bilinear, antialiased when shrinking) by ``scale``, each
    side at least 32 px (the net's stride); the input itself when the size does not change."""
    h, w = (max(32, round(side * scale)) for side in images.shape[-2:])
    if (h, w) == tuple(images.shape[-2:]):
        return images
    return F.interpolate(images, size=(h, w), mode="bilinear", antialias=scale < 1, align_corners=False)


class _Window:
    """Running sums of the training figures between two log rows."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.loss = self.acc = self.materials = 0.0
        self.steps = self.acc_steps = self.images = 0
        self.terms = {name: [0.0, 0] for name in TERM_COLUMNS}  # sum, steps that had the term
        self.t0 = time.perf_counter()

    def add(self, loss: float, accuracy: float, materials: int, images: int, terms: dict | None = None) -> None:
        self.loss += loss
        self.materials += materials
        self.steps += 1
        self.images += images
        if math.isfinite(accuracy):
            self.acc += accuracy
            self.acc_steps += 1
        for name, value in (terms or {}).items():
            if math.isfinite(value):
                self.terms[name][0] += value
                self.terms[name][1] += 1

    def summary(self, d: Dist) -> dict:
        term_sums = [x for name in TERM_COLUMNS for x in self.terms[name]]  # same order on every rank
        loss, acc, acc_steps, materials, steps, images, *term_sums = d.sum(
            [self.loss, self.acc, self.acc_steps, self.materials, self.steps, self.images, *term_sums]
        )
        seconds = time.perf_counter() - self.t0
        out = {
            "loss": loss / max(steps, 1),
            "accuracy": acc / acc_steps if acc_steps else float("nan"),
            "materials": materials / max(steps, 1),
            "images_per_s": images / seconds if seconds > 0 else float("nan"),
        }
        for name, total, count in zip(TERM_COLUMNS, term_sums[::2], term_sums[1::2]):
            if count:  # an empty cell in metrics.csv when the term is off
                out[name] = total / count
        self.reset()
        return out
