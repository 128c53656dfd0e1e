"""The recipes in configs/ resolve into valid training configs (no torch needed)."""

from pathlib import Path

import pytest
import yaml

from matseg.config import load_config, to_dict
from matseg.net.config import TrainConfig
from matseg.net.data import DataConfig

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_configs_exist():
    assert {p.name for p in CONFIGS} >= {"default-model.yaml", "default-model-gpu.yaml", "paper.yaml"}


# Stage 2 of the default model names its starting net on the command line.
STAGE1 = {"default-model-distill.yaml": ["model.init_weights=stage1.safetensors"]}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_resolves(path):
    resolved = to_dict(load_config(TrainConfig, path, STAGE1.get(path.name, [])))  # validates every value; unknown keys are errors
    written = yaml.safe_load(path.read_text(encoding="utf-8"))
    if path.name in STAGE1:
        assert written["model"].pop("init_weights") is None and resolved["model"]["init_weights"] == "stage1.safetensors"
    # Every key the file sets survives resolution unchanged (no silently ignored key).
    for section, value in written.items():
        if isinstance(value, dict):
            for key, v in value.items():
                assert resolved[section][key] == v, (path.name, section, key)
        else:
            assert resolved[section] == value, (path.name, section)


def test_gpu_recipe_is_the_cpu_recipe_with_fewer_batch_shapes():
    cpu, gpu = (yaml.safe_load((CONFIGS[0].parent / n).read_text()) for n in ("default-model.yaml", "default-model-gpu.yaml"))
    assert gpu["device"] == "cuda"
    assert {k: v for k, v in gpu.items() if k not in ("device", "data")} == {k: v for k, v in cpu.items() if k != "data"}
    machine = ("size_multiple", "workers")
    assert {k: v for k, v in gpu["data"].items() if k not in machine} == {k: v for k, v in cpu["data"].items() if k != "workers"}
    shapes = lambda d: DataConfig(**d).batch_shapes()  # noqa: E731
    assert len(shapes(gpu["data"])) == 9 < len(shapes(cpu["data"])) == 25


def test_distill_recipe_fine_tunes_stage_one_with_its_own_teacher():
    stage1, stage2 = (yaml.safe_load((CONFIGS[0].parent / n).read_text()) for n in ("default-model.yaml", "default-model-distill.yaml"))
    fine_tune = {"steps", "seed", "val_every", "checkpoint_every", "keep_every"}
    assert {k: v for k, v in stage2.items() if k not in fine_tune | {"optim", "model", "loss"}} == \
        {k: v for k, v in stage1.items() if k not in fine_tune | {"optim", "model", "loss"}}  # fmt: skip
    assert stage2["model"] == {**stage1["model"], "init_weights": None}
    assert {k: v for k, v in stage2["optim"].items() if k not in ("lr", "warmup_steps")} == \
        {k: v for k, v in stage1["optim"].items() if k not in ("lr", "warmup_steps")}  # fmt: skip
    assert {k: v for k, v in stage2["loss"].items() if not k.startswith("distill_")} == stage1["loss"]
    assert stage2["loss"]["distill_teacher"] == "init" and stage2["loss"]["distill_weight"] > 0
    assert stage2["steps"] < stage1["steps"] and stage2["optim"]["lr"] < stage1["optim"]["lr"]
    with pytest.raises(ValueError, match="distill_teacher 'init' needs model.init_weights"):
        load_config(TrainConfig, CONFIGS[0].parent / "default-model-distill.yaml")


def test_input_side_is_validated():
    from matseg.config import from_dict

    assert from_dict(TrainConfig, {"input_side": 384}).input_side == 384
    with pytest.raises(ValueError, match="input_side must be >= 32"):
        from_dict(TrainConfig, {"input_side": 16})


def test_train_script_exports_checkpoints_its_configs_keep():
    """recipes/model/train.sh averages step_N files: each N must be a kept step of its stage."""
    import re

    script = (CONFIGS[0].parents[1] / "recipes" / "model" / "train.sh").read_text()
    for stage, config in (("stage1", "default-model.yaml"), ("stage2", "default-model-distill.yaml")):
        cfg = yaml.safe_load((CONFIGS[0].parent / config).read_text())
        steps = [int(n) for n in re.findall(rf"/{stage}/step_(\d+)\.safetensors", script)]
        assert len(steps) == 2, stage
        assert all(n % cfg["keep_every"] == 0 and n <= cfg["steps"] for n in steps) and max(steps) == cfg["steps"], (stage, steps)


def test_gpu_stage_two_takes_the_gpu_recipes_machine_settings():
    """The --set of train.sh's GPU stage 2 resolve, and match configs/default-model-gpu.yaml."""
    import re

    script = (CONFIGS[0].parents[1] / "recipes" / "model" / "train.sh").read_text()
    overrides = re.findall(r"--set (\S+)", re.search(r"STAGE2_MACHINE=\((--set .*)\)", script).group(1))
    cfg = load_config(TrainConfig, CONFIGS[0].parent / "default-model-distill.yaml", overrides + STAGE1["default-model-distill.yaml"])
    gpu = load_config(TrainConfig, CONFIGS[0].parent / "default-model-gpu.yaml")
    assert (cfg.device, cfg.data.workers, cfg.data.size_multiple) == (gpu.device, gpu.data.workers, gpu.data.size_multiple) == ("cuda", 12, 64)
