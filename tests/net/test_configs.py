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


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_resolves(path):
    resolved = to_dict(load_config(TrainConfig, path))  # validates every value; unknown keys are errors
    written = yaml.safe_load(path.read_text(encoding="utf-8"))
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



def test_input_side_is_validated():
    from matseg.config import from_dict

    assert from_dict(TrainConfig, {"input_side": 384}).input_side == 384
    with pytest.raises(ValueError, match="input_side must be >= 32"):
        from_dict(TrainConfig, {"input_side": 16})
