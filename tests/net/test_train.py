"""Training: the loss falls on a tiny 2D set, checkpoints round-trip, resume is exact, DDP runs."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="torch extra not installed (pip install 'matseg[torch]')")
pytest.importorskip("safetensors")

from safetensors.torch import load_file  # noqa: E402

import matseg.cli  # noqa: E402
from matseg.config import from_dict  # noqa: E402
from matseg.net.checkpoint import load_model, read_metadata  # noqa: E402
from matseg.net.train import TrainConfig, lr_factor  # noqa: E402

# A small net and tiny batches: each step takes milliseconds on CPU.
TINY = [
    "--set", "model.pretrained=false", "--set", "model.descriptor_dim=16", "--set", "model.decoder_channels=[32,16,16]",
    "--set", "model.psp_channels=8", "--set", "data.size_min=64", "--set", "data.size_max=96",
    "--set", f"data.max_pixels={96 * 96 * 3}", "--set", "data.max_images=3", "--set", "data.val_size=64",
    "--set", "keep_every=0", "--set", "threads=1", "--precision", "fp32", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    code = matseg.cli.main(["synth2d", "-n", "6", "-o", str(out), "-w", "1", "--no-progress",
                            "--set", "scene.size_min=96", "--set", "scene.size_max=160"])  # fmt: skip
    assert code == 0
    return out


def train(data, run: Path, *extra: str) -> int:
    return matseg.cli.main(["train", *map(str, data), "-o", str(run), *TINY, *extra])


def metrics(run: Path) -> list[dict]:
    with (run / "metrics.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_loss_falls_when_overfitting_and_checkpoints_round_trip(synth, tmp_path):
    run = tmp_path / "run"
    # 000004 is the only sample whose path hash is < 0.5: one held-out sample, five to train on.
    code = train([synth], run, "--steps", "40", "--lr", "1e-3", "-w", "0", "--set", "log_every=5", "--set", "val_every=20",
                 "--set", "data.val_fraction=0.5", "--set", "data.augment.p_any=0", "--set", "input_side=80")  # fmt: skip
    assert code == 0
    rows = metrics(run)
    assert [int(r["step"]) for r in rows] == list(range(5, 41, 5))
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < 0.85 * losses[0], losses
    assert all(float(r["images_per_s"]) > 0 and float(r["lr"]) == 1e-3 for r in rows)
    validated = [r for r in rows if r["val_loss"]]
    assert [int(r["step"]) for r in validated] == [20, 40]
    run_meta = json.loads((run / "run.json").read_text())
    assert run_meta["train_samples"] == 5 and [Path(p).name for p in run_meta["val_samples"]] == ["000004"]

    # Weights: safetensors with the model config and the step; loadable for inference.
    meta = read_metadata(run / "last.safetensors")
    assert meta["extra"]["step"] == 40 and meta["model_config"]["descriptor_dim"] == 16
    best = read_metadata(run / "best.safetensors")["extra"]
    assert best["best"]["metric"] == "val_loss" and best["step"] in (20, 40)
    # The run's input side travels with its weights: inference resizes to it by default.
    from matseg.net.infer import Predictor

    assert meta["extra"]["input_side"] == best["input_side"] == 80 and Predictor(run / "best.safetensors", device="cpu").max_side == 80
    net = load_model(run / "last.safetensors")
    with torch.no_grad():
        out = net(torch.rand(1, 3, 64, 64) * 255)
    assert out.shape == (1, 16, 16, 16)
    # Training state: plain tensors and values only.
    state = torch.load(run / "state.pt", weights_only=True)
    assert state["step"] == 40 and state["best"] == best["best"]
    assert state["scheduler"]["last_epoch"] == 40 and len(state["optimizer"]["state"]) == len(list(net.parameters()))
    assert "descriptor_dim: 16" in (run / "config.yaml").read_text()


def test_resume_is_exact(synth, tmp_path):
    common = ["--lr", "1e-3", "--set", "checkpoint_every=3", "--set", "log_every=3", "--set", "val_every=100",
              "--set", "data.val_fraction=0"]  # fmt: skip
    assert train([synth], tmp_path / "straight", "--steps", "6", "-w", "0", *common) == 0
    # Stop after 3 steps, then resume to 6 with another worker count: the same weights, bit for bit.
    assert train([synth], tmp_path / "split", "--steps", "3", "-w", "0", *common) == 0
    assert matseg.cli.main(["train", "-o", str(tmp_path / "split"), "--resume", "--steps", "6", "-w", "1", "--no-progress"]) == 0
    a, b = load_file(tmp_path / "straight" / "last.safetensors"), load_file(tmp_path / "split" / "last.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    # Ctrl-C during step 3: the run stops after that step, checkpoints, exits 130; --resume ends equal.
    assert interrupted_train([synth], tmp_path / "ctrl-c", 3, "--steps", "6", "-w", "0", *common) == 130
    assert torch.load(tmp_path / "ctrl-c" / "state.pt", weights_only=True)["step"] == 3
    assert matseg.cli.main(["train", "-o", str(tmp_path / "ctrl-c"), "--resume", "--no-progress"]) == 0
    c = load_file(tmp_path / "ctrl-c" / "last.safetensors")
    assert all(torch.equal(a[k], c[k]) for k in a)
    initial = initial_weights(tmp_path / "straight")
    assert sum(not torch.equal(a[k], initial[k]) for k in a) > len(a) // 2  # training did change them
    sa = torch.load(tmp_path / "straight" / "state.pt", weights_only=True)["optimizer"]["state"]
    sb = torch.load(tmp_path / "split" / "state.pt", weights_only=True)["optimizer"]["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    losses = [[(r["step"], r["loss"]) for r in metrics(tmp_path / name)] for name in ("straight", "split")]
    assert losses[0] == losses[1] and len(losses[0]) == 2


def interrupted_train(data, run: Path, at_step: int, *extra: str) -> int:
    """``train`` with a SIGINT delivered to this process while step ``at_step`` computes its loss."""
    import signal

    import matseg.net.train as train_module

    real, calls = train_module.material_loss, []

    def loss_then_ctrl_c(*args, **kwargs):
        calls.append(1)
        if len(calls) == at_step:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    train_module.material_loss = loss_then_ctrl_c
    try:
        return train(data, run, *extra)
    finally:
        train_module.material_loss = real


def initial_weights(run: Path) -> dict:
    """The weights a run starts from (its saved config, its seed)."""
    from matseg.config import load_config
    from matseg.net.model import DescriptorNet

    cfg = load_config(TrainConfig, run / "config.yaml")
    torch.manual_seed(cfg.seed)
    return DescriptorNet(cfg.model).state_dict()


def test_resume_refuses_a_changed_config_and_overwriting(synth, tmp_path, capsys):
    run = tmp_path / "run"
    assert train([synth], run, "--steps", "1", "-w", "0", "--set", "data.val_fraction=0") == 0
    assert train([synth], run, "--steps", "2", "-w", "0") == 2
    assert "already holds a training run" in capsys.readouterr().err
    assert matseg.cli.main(["train", "-o", str(run), "--resume", "--set", "loss.temperature=0.5", "--no-progress"]) == 2
    assert "differs in: loss.temperature" in capsys.readouterr().err
    assert matseg.cli.main(["train", "-o", str(tmp_path / "none"), "--resume", "--no-progress"]) == 2
    assert "config.yaml: missing" in capsys.readouterr().err
    # A run saved before an option existed resumes: the option takes its default (the old behaviour)...
    import yaml

    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["optim"].pop("encoder_lr_scale") == 1.0
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    assert matseg.cli.main(["train", "-o", str(run), "--resume", "--steps", "2", "-w", "0", "--no-progress"]) == 0
    # ...but not when the run asks for anything else than that default.
    assert matseg.cli.main(["train", "-o", str(run), "--resume", "--steps", "3", "--set", "optim.encoder_lr_scale=0.5", "--no-progress"]) == 2
    assert "differs in: optim.encoder_lr_scale" in capsys.readouterr().err
    assert train([synth], tmp_path / "b", "--bench", str(tmp_path / "no-bench")) == 2
    assert "no-bench: benchmark folder not found" in capsys.readouterr().err


def test_lr_schedule_hand_computed():
    cfg = TrainConfig(steps=10)
    cfg.optim.warmup_steps, cfg.optim.schedule, cfg.optim.min_lr_fraction = 2, "cosine", 0.1
    factors = [lr_factor(s, cfg.optim, 10) for s in range(11)]
    assert factors[:2] == [0.5, 1.0]  # linear warm-up
    assert factors[2] == pytest.approx(1.0) and factors[6] == pytest.approx(0.55) and factors[10] == pytest.approx(0.1)
    cfg.optim.schedule = "constant"
    assert [lr_factor(s, cfg.optim, 10) for s in (0, 1, 5)] == [0.5, 1.0, 1.0]


def test_without_torch_the_command_says_what_to_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    assert matseg.cli.main(["train", str(tmp_path), "-o", str(tmp_path / "run")]) == 2
    assert "pip install 'matseg[torch]'" in capsys.readouterr().err


def test_two_process_ddp_on_cpu(train_sample, tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "matseg", "train", str(train_sample), "-o", str(run), *TINY, "--steps", "2", "--device", "cpu",
           "-w", "0", "--set", "data.val_fraction=0", "--set", "data.size_max=64", "--set", "data.p_zoom_out=1", "--set", "log_every=1",
           "--set", f"data.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=150, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_meta = json.loads((run / "run.json").read_text())
    assert run_meta["world_size"] == 2
    entries = {p.name for p in (tmp_path / "cache").rglob("*.npz")}
    planned = _planned_entries(run, [train_sample], 2, world=2)
    assert planned <= entries and "job 'cache'" in proc.stderr  # filled up front for both ranks' batches (redraws add some)
    assert read_metadata(run / "last.safetensors")["extra"]["step"] == 2
    rows = metrics(run)
    assert [r["step"] for r in rows] == ["1", "2"]  # one writer (rank 0), steps counted once
    assert float(rows[0]["images_per_s"]) > 0
    assert "finished at step 2" in proc.stderr


BENCHMARK = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "benchmark_sample"


def test_benchmark_validation_equals_matseg_eval(tmp_path):
    """The --bench hook scores a net exactly as `matseg eval --predictor matseg` scores its checkpoint."""
    if not BENCHMARK.is_dir():
        pytest.skip(f"reference data {BENCHMARK} not available")
    from matseg.evaluate.jobs import evaluate_benchmark_image
    from matseg.evaluate.predictors import create_predictor
    from matseg.net.checkpoint import save_weights
    from matseg.net.model import DescriptorNet, ModelConfig
    from matseg.net.train import benchmark_metrics, load_benchmark

    torch.manual_seed(0)
    net = DescriptorNet(ModelConfig(pretrained=False, descriptor_dim=16, decoder_channels=[32, 16, 16], psp_channels=8)).eval()
    images = load_benchmark(BENCHMARK)
    weights = str(save_weights(tmp_path / "w.safetensors", net))
    for side in (None, 256):  # the net's default side, and a run's input_side
        got = benchmark_metrics(net, images, torch.device("cpu"), max_side=side)
        assert got["bench_images"] == len(images) == 1 and 0 <= got["bench_score"] <= 1
        predictor = create_predictor("matseg", weights=weights, device="cpu", max_side=side)
        expected = evaluate_benchmark_image(predictor, images[0], seed=0)[0]["results"]["all"]["paper"]
        assert got["bench_score"] == pytest.approx(expected["triplet_material"], abs=1e-9)
        assert got["bench_top1_point"] == pytest.approx(expected["top1_point"], abs=1e-9)


class _CollectiveCalled(Exception):
    pass


def test_nccl_reductions_run_on_the_gpu(monkeypatch):
    """NCCL only reduces CUDA tensors: with the nccl backend, Dist must put its tensors on the
    process's GPU (checked without a GPU: the process group calls are stand-ins)."""
    import torch.distributed as dist

    from matseg.net import train as train_module

    calls = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: calls.setdefault("set_device", index))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: calls.setdefault("backend", backend))
    monkeypatch.setattr(dist, "get_backend", lambda: calls["backend"])
    d = train_module.init_distributed("auto")
    assert calls == {"set_device": 1, "backend": "nccl"}
    assert (d.rank, d.world, d.local_rank, d.device) == (1, 2, 1, torch.device("cuda", 1))

    def all_reduce(tensor):
        calls["reduced_on"] = tensor.device
        raise _CollectiveCalled

    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    # "meta" stands in for a device other than the CPU: the tensor must be made where Dist says.
    with pytest.raises(_CollectiveCalled):
        train_module.Dist(0, 2, 0, torch.device("meta")).sum([1.0, 2.0])
    assert calls["reduced_on"] == torch.device("meta")


def test_encoder_learning_rate_scale():
    from matseg.net.model import DescriptorNet, ModelConfig
    from matseg.net.train import parameter_groups

    net = DescriptorNet(ModelConfig(pretrained=False))
    cfg = from_dict(TrainConfig, {"optim": {"lr": 1e-3, "encoder_lr_scale": 0.1, "warmup_steps": 0}}).optim
    opt = torch.optim.AdamW(parameter_groups(net, cfg), lr=cfg.lr)
    rest, encoder = opt.param_groups
    assert rest["lr"] == 1e-3 and encoder["lr"] == pytest.approx(1e-4)
    assert {id(p) for p in encoder["params"]} == {id(p) for p in net.encoder.parameters()}
    assert len(rest["params"]) + len(encoder["params"]) == len(list(net.parameters()))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)  # the schedule scales both groups alike
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([5e-4, 5e-5])
    del sched
    one = parameter_groups(net, from_dict(TrainConfig, {}).optim)  # scale 1: one group, as before the option
    assert len(one) == 1 and len(one[0]["params"]) == len(list(net.parameters()))
    with pytest.raises(ValueError, match="encoder_lr_scale"):
        from_dict(TrainConfig, {"optim": {"encoder_lr_scale": 0}})


def test_init_weights_fine_tunes_a_trained_net(tmp_path):
    from matseg.net.checkpoint import save_weights
    from matseg.net.model import DescriptorNet, ModelConfig
    from matseg.net.train import TrainError, _load_initial_weights

    torch.manual_seed(0)
    trained = DescriptorNet(ModelConfig(pretrained=False))
    save_weights(tmp_path / "trained.safetensors", trained)
    torch.manual_seed(1)
    fresh = DescriptorNet(ModelConfig(pretrained=False))
    assert not torch.equal(fresh.head.weight, trained.head.weight)
    _load_initial_weights(fresh, str(tmp_path / "trained.safetensors"))
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), trained.state_dict().values()))
    other = DescriptorNet(ModelConfig(pretrained=False, descriptor_dim=64))
    with pytest.raises(TrainError, match="another architecture than model.*descriptor_dim"):
        _load_initial_weights(other, str(tmp_path / "trained.safetensors"))
    with pytest.raises(TrainError, match="model.init_weights: .*not found"):
        _load_initial_weights(other, str(tmp_path / "missing.safetensors"))


def test_batch_shape_hint_only_for_cuda_runs_with_many_shapes():
    from matseg.net.data import DataConfig
    from matseg.net.train import CUDA_SHAPES_WARN, batch_shape_hint

    wide = DataConfig(size_min=256, size_max=640)  # 13 x 13 sides in 32 px steps
    assert len(wide.batch_shapes()) == 169 > CUDA_SHAPES_WARN
    hint = batch_shape_hint(wide, "cuda")
    assert hint.startswith("169 distinct batch shapes") and "size_multiple 32" in hint
    assert batch_shape_hint(wide, "cpu") is None  # a CPU pays nothing per new shape
    coarse = DataConfig(size_min=256, size_max=384, size_multiple=64)  # the GPU recipe: 3 x 3
    assert len(coarse.batch_shapes()) == 9 and batch_shape_hint(coarse, "cuda") is None


def test_freeze_encoder_stride_keeps_those_layers_as_loaded(synth, tmp_path):
    from matseg.net.model import DescriptorNet, ModelConfig
    from matseg.net.train import parameter_groups

    torch.manual_seed(0)
    net = DescriptorNet(ModelConfig(pretrained=False))
    net.freeze_encoder(4)
    frozen = {id(p) for layer in net.encoder.layers_to_stride(4) for p in layer.parameters()}
    assert frozen and all(not layer.training for layer in net.encoder.layers_to_stride(4))
    net.eval().train()  # switching modes keeps the frozen layers' batch-norm statistics fixed
    assert not net.encoder._bn0.training and net.encoder._blocks[3].training
    net.freeze_encoder(2)  # a second call replaces the first
    assert net.encoder._blocks[1].training and net.encoder._blocks[1]._project_conv.weight.requires_grad
    assert not net.encoder._blocks[0].training and not net.encoder._blocks[0]._project_conv.weight.requires_grad
    net.freeze_encoder(4)
    for scale in (1.0, 0.5):
        groups = parameter_groups(net, from_dict(TrainConfig, {"optim": {"encoder_lr_scale": scale}}).optim)
        grouped = [id(p) for g in groups for p in g["params"]]
        assert not frozen & set(grouped) and len(grouped) == len(list(net.parameters())) - len(frozen)

    run = tmp_path / "frozen"
    assert train([synth], run, "--set", "steps=3", "--set", "model.pretrained=true", "--set", "optim.freeze_encoder_stride=8") == 0
    start = DescriptorNet(ModelConfig(pretrained=True, descriptor_dim=16, decoder_channels=[32, 16, 16], psp_channels=8)).state_dict()
    after = load_file(str(run / "last.safetensors"))
    stem_to_8 = [k for k in start if k.startswith(("encoder._conv_stem", "encoder._bn0", *(f"encoder._blocks.{i}." for i in range(5))))]
    assert stem_to_8 and all(torch.equal(after[k], start[k]) for k in stem_to_8)  # weights and BN statistics as loaded
    assert not torch.equal(after["encoder._blocks.5._project_conv.weight"], start["encoder._blocks.5._project_conv.weight"])

    class NoStrides(torch.nn.Module):
        pass

    net.encoder = NoStrides()
    net.freeze_encoder(0)  # nothing to freeze: fine for any encoder
    with pytest.raises(ValueError, match="cannot freeze layers by stride"):
        net.freeze_encoder(4)


def test_rank_term_trains_and_is_logged(synth, tmp_path):
    run = tmp_path / "rank"
    frozen = ["--set", "model.pretrained=true", "--set", "optim.freeze_encoder_stride=16", "--set", "log_every=2"]
    assert train([synth], run, "--set", "steps=4", *frozen, "--set", "loss.rank_weight=0.5") == 0
    rows = metrics(run)
    assert [int(r["step"]) for r in rows] == [2, 4]
    assert all(float(r["rank_loss"]) >= 0 for r in rows)
    assert "rank_weight: 0.5" in (run / "config.yaml").read_text()
    # A teacher that also sees each crop at 0.5x and 0.75x: same batches, another rank loss.
    multi = tmp_path / "multi"
    assert train([synth], multi, "--set", "steps=4", *frozen, "--set", "loss.rank_weight=0.5",
                 "--set", "loss.rank_teacher_scales=[1.0,0.75,0.5]") == 0  # fmt: skip
    assert [r["rank_loss"] for r in metrics(multi)] != [r["rank_loss"] for r in rows]
    # Off (the default): the column stays empty.
    off = tmp_path / "off"
    assert train([synth], off, "--set", "steps=2", *frozen) == 0
    assert [r["rank_loss"] for r in metrics(off)] == [""]


def test_steps_and_their_parts_carry_profiler_labels(synth, tmp_path):
    """Each step is one ``matseg.train.step`` range in a torch.profiler trace, with its parts
    (forward, teacher views, losses, backward, optimizer) inside it: what
    benchmarks/bench_train.py --parts split reads."""
    from torch.profiler import ProfilerActivity, profile

    from matseg.net.train import STEP_PARTS

    frozen = ["--set", "model.pretrained=true", "--set", "optim.freeze_encoder_stride=16", "--set", "loss.rank_weight=0.5"]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        assert train([synth], tmp_path / "run", "--set", "steps=3", *frozen) == 0
    labelled = [e for e in prof.events() if e.name.startswith("matseg.train.")]
    steps = sorted((e for e in labelled if e.name == "matseg.train.step"), key=lambda e: e.time_range.start)
    assert len(steps) == 3
    assert {e.name.removeprefix("matseg.train.") for e in labelled} == set(STEP_PARTS) - {"distill_teacher"}
    for step in steps:
        inside = [e.name.removeprefix("matseg.train.") for e in labelled
                  if e is not step and step.time_range.start <= e.time_range.start and e.time_range.end <= step.time_range.end]  # fmt: skip
        # Two loss ranges: the contrastive loss before the rank teacher, the rank term after it.
        assert sorted(inside) == sorted(["forward", "loss", "rank_teacher", "loss", "backward", "optimizer"])
    assert all(a.time_range.end <= b.time_range.start for a, b in zip(steps, steps[1:]))


def test_rank_term_needs_the_frozen_pretrained_encoder():
    for optim, model in (({"freeze_encoder_stride": 8}, {}), ({"freeze_encoder_stride": 16}, {"pretrained": False})):
        with pytest.raises(ValueError, match="rank_weight 0.2 needs optim.freeze_encoder_stride >= 16"):
            from_dict(TrainConfig, {"loss": {"rank_weight": 0.2}, "optim": optim, "model": model})
    with pytest.raises(ValueError, match="must be >= 0"):
        from_dict(TrainConfig, {"loss": {"rank_margin": -0.1}})
    with pytest.raises(ValueError, match="rank_teacher_scales"):
        from_dict(TrainConfig, {"loss": {"rank_teacher_scales": []}})


def test_self_distillation_trains_towards_a_frozen_teacher(synth, tmp_path):
    from matseg.net.train import Trainer, TrainError

    teacher_run = tmp_path / "teacher"
    assert train([synth], teacher_run, "--set", "steps=2") == 0
    teacher = teacher_run / "last.safetensors"
    before = teacher.read_bytes()
    plain, distilled = tmp_path / "plain", tmp_path / "distilled"
    common = ("--set", "steps=4", "--set", "log_every=2", "--set", f"model.init_weights={teacher}")
    assert train([synth], plain, *common) == 0
    assert train([synth], distilled, *common, "--set", "loss.distill_weight=1.0", "--set", "loss.distill_teacher=init") == 0
    # Same batches, one more term: the logged loss is higher by the (positive) distillation term.
    assert all(float(d["loss"]) > float(p["loss"]) for d, p in zip(metrics(distilled), metrics(plain)))
    assert all(0 < float(d["distill_loss"]) <= 2 for d in metrics(distilled)) and all(p["distill_loss"] == "" for p in metrics(plain))
    assert teacher.read_bytes() == before

    # The target: the teacher's descriptors averaged over sizes and mirrors, computed here by hand.
    cfg = from_dict(TrainConfig, {"model": {"pretrained": False, "descriptor_dim": 16, "decoder_channels": [32, 16, 16], "psp_channels": 8},
                                  "precision": "fp32", "loss": {"distill_weight": 1.0, "distill_teacher": str(teacher), "distill_scales": [1.0, 0.5]}})  # fmt: skip
    trainer = Trainer(cfg, [synth], tmp_path / "unused", progress=False)
    trainer._build()
    net = load_model(teacher).eval()
    images = torch.rand(2, 3, 64, 96) * 255
    with torch.no_grad():
        small = torch.nn.functional.interpolate(images, size=(32, 48), mode="bilinear", antialias=True, align_corners=False)
        views = [net(images), net(images.flip(-1)).flip(-1), net(small), net(small.flip(-1)).flip(-1)]
        views = [torch.nn.functional.interpolate(v, size=(16, 24), mode="bilinear", align_corners=False) for v in views]
        expected = torch.nn.functional.normalize(sum(views), dim=1)
    assert torch.allclose(trainer._distill_target(images, (16, 24)), expected, atol=1e-5)
    assert not any(p.requires_grad for p in trainer.teacher.parameters()) and not trainer.teacher.training

    with pytest.raises(ValueError, match="distill_weight 0.5 needs distill_teacher"):
        from_dict(TrainConfig, {"loss": {"distill_weight": 0.5}})
    with pytest.raises(ValueError, match="distill_teacher 'init' needs model.init_weights"):
        from_dict(TrainConfig, {"loss": {"distill_weight": 0.5, "distill_teacher": "init"}})
    with pytest.raises(ValueError, match="distill_scales"):
        from_dict(TrainConfig, {"loss": {"distill_scales": [0.1]}})
    missing = from_dict(TrainConfig, {"model": {"pretrained": False}, "loss": {"distill_weight": 1.0, "distill_teacher": str(tmp_path / "nope.safetensors")}})
    with pytest.raises(TrainError, match="loss.distill_teacher: .*not found"):
        Trainer(missing, [synth], tmp_path / "unused2", progress=False)._build()


def _planned_entries(run: Path, data: list[Path], steps: int, world: int = 1) -> set[str]:
    """Cache entry names of the samples a run's batches draw first (all ranks) and of its held-out samples."""
    from matseg.config import load_config
    from matseg.net.data import BatchStream, DecodedSampleCache, split_samples

    cfg = load_config(TrainConfig, run / "config.yaml")
    train_samples, val_samples = split_samples(data, cfg.data.val_fraction, cfg.data.nested)
    drawn = {key.sample for rank in range(world)
             for batch in BatchStream(cfg.seed, len(train_samples), cfg.data, 0, steps, rank, world) for key in batch}  # fmt: skip
    cache = DecodedSampleCache(cfg.data.cache_dir, cfg.data.decode_max_side)
    return {cache.entry(train_samples[i]).name for i in drawn} | {cache.entry(p).name for p in val_samples}


def test_a_run_fills_the_decode_cache_before_its_first_step(synth, tmp_path, capsys):
    cache = tmp_path / "cache"
    code = train([synth], tmp_path / "run", "--steps", "2", "-w", "0", "--set", f"data.cache_dir={cache}",
                 "--set", "data.val_fraction=0.5", "--set", "val_every=100")  # fmt: skip
    assert code == 0
    entries = {p.name for p in cache.rglob("*.npz")}
    # The first choices of both steps and the held-out sample, nothing the run never draws.
    assert entries == _planned_entries(tmp_path / "run", [synth], 2) and 2 <= len(entries) < 6
    assert f"done     {len(entries):>7}" in capsys.readouterr().err
    assert train([synth], tmp_path / "run2", "--steps", "2", "-w", "0", "--set", f"data.cache_dir={cache}",
                 "--set", "data.val_fraction=0.5", "--set", "val_every=100") == 0  # fmt: skip
    assert "job 'cache'" not in capsys.readouterr().err  # a warm cache: nothing to report
