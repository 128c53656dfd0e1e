"""recipes/model/*.sh run the commands of the default model's recipe, in order (stand-in tools)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "model"


def _run_script(tmp_path: Path, script: str, env: dict[str, str] | None = None, out: Path | None = None) -> list[str]:
    """Run recipes/model/SCRIPT with stand-ins for matseg, matseg3d and python that log their
    arguments; the calls, with the output folder written as OUT."""
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    log = tmp_path / "calls.log"
    tools = {}
    for tool, variable in (("matseg", "MATSEG"), ("matseg3d", "MATSEG3D"), ("py", "PY")):
        stub = tmp_path / f"{tool}-stub"
        stub.write_text(f'#!/usr/bin/env bash\necho "{tool} $*" >> "{log}"\n')
        stub.chmod(0o755)
        tools[variable] = str(stub)
    out = out or tmp_path / "out"
    run_env = {**os.environ, **tools, **(env or {})}
    subprocess.run(["bash", str(RECIPES / script), str(out), "m"], env=run_env, check=True, capture_output=True, text=True)
    return [line.replace(str(out), "OUT") for line in log.read_text().splitlines()]


@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_train_script_runs_both_stages(tmp_path, gpu):
    calls = _run_script(tmp_path, "train.sh", {"GPU": "1" if gpu else "0"})
    stage1 = "configs/default-model-gpu.yaml" if gpu else "configs/default-model.yaml"
    machine = "--set device=cuda --set data.workers=12 --set data.size_multiple=64 " if gpu else ""
    assert calls == [
        f"matseg train --config {stage1} OUT/synth2d -o OUT/stage1",
        "py recipes/model/export.py OUT/stage1/step_0002000.safetensors OUT/stage1/step_0002500.safetensors --name m-stage1 --models-dir OUT/models --no-default",
        f"matseg train --config configs/default-model-distill.yaml {machine}--set model.init_weights=OUT/models/m-stage1.safetensors OUT/synth2d -o OUT/stage2",
        "py recipes/model/export.py OUT/stage2/step_0000400.safetensors OUT/stage2/step_0000600.safetensors --name m --models-dir OUT/models --no-default",
    ]


def test_train_script_continues_a_started_stage(tmp_path):
    out = tmp_path / "out"
    (out / "stage1").mkdir(parents=True)
    (out / "stage1" / "state.pt").write_bytes(b"")
    assert _run_script(tmp_path, "train.sh", {"GPU": "0"}, out)[0] == "matseg train --resume -o OUT/stage1"


BUILD_2D = [
    "py recipes/photos/fetch.py -o OUT/photos",
    "py recipes/devset/build.py -o OUT/devset --photos OUT/photos",
    "matseg textures extract OUT/photos/train -o OUT/textures --tile-size 24 --min-cells 5 -w 1",
    "matseg synth2d --images OUT/photos/train --textures OUT/textures -n 3000 --seed 11 -o OUT/synth2d",
]


def test_build_data_script_makes_the_2d_data_with_the_named_tools(tmp_path):
    assert _run_script(tmp_path, "build_data.sh", {"MATSEG_3D": "0"}) == BUILD_2D


def test_build_data_script_renders_3d_scenes_with_the_3d_tool(tmp_path):
    assert _run_script(tmp_path, "build_data.sh", {"MATSEG_3D": "1"}) == BUILD_2D + [
        "matseg pbr make OUT/textures -o OUT/pbr --seed 12",
        "matseg pbr mix OUT/pbr -n 150 -o OUT/pbr_mix --seed 13",
        "matseg3d synth3d -n 400 --size 384 --seed 14 -o OUT/synth3d --pbr OUT/pbr --pbr OUT/pbr_mix --images OUT/photos/train",
    ]
