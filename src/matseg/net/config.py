"""Configuration of the descriptor net and its training (no torch import: ``matseg config train``
and ``--print-config`` work without the torch extra)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from matseg.config import option, section
from matseg.net import PRECISIONS
from matseg.net.data import DataConfig

CONFIG_NAME = "config.yaml"


@dataclass
class ModelConfig:
    """Architecture of the descriptor net."""

    encoder: str = option("efficientnet_lite0", "encoder name (see matseg.net.encoders.available_encoders)", "§G.2 (paper: convnext_base)")
    pretrained: bool = option(True, "start from ImageNet weights", "§G.2")
    encoder_weights: str | None = option(None, "local encoder checkpoint instead of the default pretrained weights (e.g. timm's convnext_base file when offline)", "ours")
    descriptor_dim: int = option(128, "descriptor length per pixel", "§G")
    psp_scales: list[float] = option([1.0, 0.5, 0.25, 0.125], "PSP pooling scales on the deepest features", "§1.8")
    psp_channels: int = option(128, "channels per PSP branch (reference: 512 for ConvNeXt-B)", "§1.8")
    decoder_channels: list[int] = option([256, 128, 128], "channels of the three upsampling stages (reference: 512, 256, 128)", "§1.8")
    init_weights: str | None = option(None, "start from a trained net of this architecture (.safetensors from matseg train, or 'default' = the shipped model) to fine-tune it; a resumed run ignores it", "ours")

    def __post_init__(self):
        if len(self.decoder_channels) != 3:
            raise ValueError(f"decoder_channels needs 3 stages, got {self.decoder_channels}")
        if self.descriptor_dim < 2:
            raise ValueError(f"descriptor_dim must be >= 2, got {self.descriptor_dim}")
        if not self.psp_scales or any(not 0 < s <= 1 for s in self.psp_scales):
            raise ValueError(f"psp_scales must lie in (0, 1], got {self.psp_scales}")


@dataclass
class OptimConfig:
    """AdamW and its learning-rate schedule."""

    lr: float = option(1e-5, "AdamW learning rate", "§G.2")
    weight_decay: float = option(4e-5, "AdamW weight decay", "§1.8")
    schedule: str = option("constant", "learning rate after warm-up: constant (paper, reference) or cosine decay to min_lr_fraction at the last step", "§1.8", choices=("constant", "cosine"))
    warmup_steps: int = option(0, "linear warm-up from 0 over this many steps (0: none, as the reference)", "ours")
    min_lr_fraction: float = option(0.0, "cosine schedule: final lr as a fraction of lr", "ours")
    grad_clip: float = option(0.0, "clip the gradient norm to this (0: off, as the reference)", "ours")
    encoder_lr_scale: float = option(1.0, "learning rate of the pretrained encoder as a fraction of lr (below 1 keeps more of its ImageNet features while the decoder learns; 1: one rate for all, as the reference)", "ours")
    freeze_encoder_stride: int = option(0, "keep the encoder's stem and blocks up to this output stride (2, 4, 8, 16, 32) at their pretrained weights and batch-norm statistics; 0: train all, as the reference. Skipping their backward makes a CPU step 1.5x faster at 8 and 1.9x at 16 (docs/benchmarks.md)", "ours", choices=(0, 2, 4, 8, 16, 32))

    def __post_init__(self):
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"need lr > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}")
        if not 0 < self.encoder_lr_scale <= 1:
            raise ValueError(f"encoder_lr_scale must be in (0, 1], got {self.encoder_lr_scale}")
        if self.warmup_steps < 0 or self.grad_clip < 0 or not 0 <= self.min_lr_fraction <= 1:
            raise ValueError(
                f"need warmup_steps >= 0, grad_clip >= 0, 0 <= min_lr_fraction <= 1; got "
                f"{self.warmup_steps}, {self.grad_clip}, {self.min_lr_fraction}"
            )


@dataclass
class LossConfig:
    """The material-contrastive loss (matseg.net.loss.material_loss)."""

    temperature: float = option(0.2, "softmax temperature", "§G.1")
    target: str = option("hard", "hard: one-hot by the highest fraction (paper); soft: the reference code's soft targets scaled by 1/M", "§G.1, §1.8", choices=("hard", "soft"))
    rank_weight: float = option(0.0, "weight of the rank term (matseg.net.loss.rank_loss): the net keeps the frozen ImageNet encoder's ranking of material similarities, which teaches partial similarity; needs optim.freeze_encoder_stride >= 16 and a pretrained encoder. 0: off, as the paper", "ours")
    rank_scale: float = option(0.5, "rank term: share of the ImageNet features' similarity gap the descriptors must reproduce", "ours")
    rank_margin: float = option(0.05, "rank term: ImageNet similarity gaps at or below this are ties and constrain nothing", "ours")
    rank_teacher_scales: list[float] = option([1.0], "rank term: sizes at which the ImageNet teacher sees each crop, as fractions of it; their features are averaged on the descriptor grid (several sizes rank partial similarity better, as --tta shows for the effnet baseline)", "ours")
    distill_weight: float = option(0.0, "weight of the self-distillation term (matseg.net.loss.distill_loss): the net's single view of a crop learns a frozen teacher net's descriptors averaged over several sizes and mirrors of it, i.e. what --tta computes; needs loss.distill_teacher. 0: off", "ours")
    distill_teacher: str | None = option(None, "self-distillation: the teacher net (.safetensors from matseg train, 'default' = the shipped model, or 'init' = the net of model.init_weights, i.e. the run's own starting point); its architecture may differ from model.*", "ours")
    distill_scales: list[float] = option([1.0, 0.75, 0.5], "self-distillation: sizes at which the teacher sees each crop, as fractions of it (averaged on the descriptor grid)", "ours")
    distill_flip: bool = option(True, "self-distillation: the teacher also sees the mirror image of every size", "ours")

    def __post_init__(self):
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.rank_weight < 0 or self.rank_scale < 0 or self.rank_margin < 0:
            raise ValueError(
                f"rank_weight, rank_scale and rank_margin must be >= 0, got "
                f"{self.rank_weight}, {self.rank_scale}, {self.rank_margin}"
            )
        for name in ("rank_teacher_scales", "distill_scales"):  # a teacher's views of a crop
            sizes = getattr(self, name)
            if not sizes or any(not 0.25 <= s <= 2 for s in sizes):
                raise ValueError(f"{name} must be a non-empty list of sizes in [0.25, 2], got {sizes}")
        if self.distill_weight < 0:
            raise ValueError(f"distill_weight must be >= 0, got {self.distill_weight}")
        if self.distill_weight and not self.distill_teacher:
            raise ValueError(f"distill_weight {self.distill_weight} needs distill_teacher (a .safetensors path, 'default' or 'init')")


@dataclass
class TrainConfig:
    """Everything that defines a training run (the resolved copy is saved as RUN_DIR/config.yaml)."""

    steps: int = option(1000000, "optimizer steps in total (a resumed run continues up to this)", "§1.8")
    seed: int = option(0, "master seed: model head initialisation and every batch (data.py)", "ours")
    log_every: int = option(50, "write a metrics.csv row every this many steps", "ours")
    val_every: int = option(2000, "validate (held-out loss, --bench triplet metric) every this many steps and at the end", "ours")
    checkpoint_every: int = option(2000, "write last.safetensors + state.pt every this many steps and at the end", "§1.8")
    keep_every: int = option(20000, "keep a permanent step_NNNNNNN.safetensors every this many steps (0: never)", "§1.8")
    device: str = option("auto", "auto (CUDA when available), cpu, cuda, cuda:N; under torchrun each rank uses cuda:LOCAL_RANK", "ours")
    precision: str = option("auto", "auto (bf16 autocast on CPUs with native bf16 and on CUDA GPUs that support it; else fp32 on CPU, fp16 on CUDA), fp32, bf16, fp16 (CUDA, with gradient scaling)", "ours", choices=PRECISIONS)
    channels_last: bool = option(True, "channels-last memory layout (faster convolutions on CPU and tensor cores; see docs/benchmarks.md)", "ours")
    threads: int = option(0, "torch intra-op threads per process (0: torch's default, every core); on a machine where other jobs take cores, set it to the free ones: 2 threads on 2 cores with one busy ran 1.8x slower than 1 thread (docs/benchmarks.md)", "ours")
    input_side: int | None = option(None, "longer image side the trained net is meant to see at inference, written into its checkpoints: predict, segment, eval, the app and --bench validation resize to it unless told otherwise (None: 1024 px)", "ours")
    model: ModelConfig = section(ModelConfig, "the descriptor net")
    data: DataConfig = section(DataConfig, "training data and batches")
    optim: OptimConfig = section(OptimConfig, "optimizer")
    loss: LossConfig = section(LossConfig, "loss")

    def __post_init__(self):
        if self.steps < 1 or self.seed < 0:
            raise ValueError(f"need steps >= 1 and seed >= 0, got {self.steps}, {self.seed}")
        for name in ("log_every", "val_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.keep_every < 0 or self.threads < 0:
            raise ValueError(f"keep_every and threads must be >= 0, got {self.keep_every}, {self.threads}")
        if self.input_side is not None and self.input_side < 32:
            raise ValueError(f"input_side must be >= 32 (the net's stride) or null, got {self.input_side}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.loss.distill_weight and self.loss.distill_teacher == "init" and not self.model.init_weights:
            raise ValueError("loss.distill_teacher 'init' needs model.init_weights (the net to start from and distil)")
        # The rank term's teacher is the encoder up to stride 16: it must stay ImageNet's.
        if self.loss.rank_weight and (self.optim.freeze_encoder_stride < 16 or not self.model.pretrained):
            raise ValueError(
                f"loss.rank_weight {self.loss.rank_weight} needs optim.freeze_encoder_stride >= 16 and "
                f"model.pretrained true (got {self.optim.freeze_encoder_stride}, {self.model.pretrained}): "
                f"its reference is the pretrained encoder's fixed features"
            )


# Keys that may differ when a run is resumed: they change when and where, not what, is computed.
RUN_ONLY_KEYS = ("steps", "log_every", "val_every", "checkpoint_every", "keep_every", "device", "precision", "threads",
                 "data.workers", "data.cache_dir", "input_side")  # fmt: skip


class TrainError(RuntimeError):
    """The run cannot start or continue (bad run folder, mismatching config, no data)."""


def load_saved_config(run_dir: Path) -> dict:
    import yaml

    path = run_dir / CONFIG_NAME
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise TrainError(f"{path}: missing (not a matseg train run folder)") from None
    except (OSError, yaml.YAMLError) as exc:
        raise TrainError(f"{path}: cannot read ({exc})") from None
