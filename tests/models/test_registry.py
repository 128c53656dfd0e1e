"""Shipped models: export (averaging, fp16), registry, sha256 check, default loading everywhere."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch extra not installed (pip install 'matseg[torch]')")
pytest.importorskip("safetensors")

import matseg.cli  # noqa: E402
import matseg.models  # noqa: E402
from matseg.models import ENV_DIR, ModelNotAvailable, model_info, registry, sha256_file, verify  # noqa: E402
from matseg.net.checkpoint import load_model, save_weights  # noqa: E402
from matseg.net.model import DescriptorNet, ModelConfig  # noqa: E402

EXPORT_PY = Path(__file__).resolve().parents[2] / "recipes" / "model" / "export.py"
TINY = ModelConfig(pretrained=False, descriptor_dim=16, decoder_channels=[32, 16, 16], psp_channels=8)


def _export_module():
    spec = importlib.util.spec_from_file_location("matseg_recipes_model_export", EXPORT_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _checkpoint(path: Path, seed: int, **extra) -> Path:
    torch.manual_seed(seed)
    net = DescriptorNet(TINY)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so they are exported too
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    return save_weights(path, net, extra={"step": seed, **extra})


def _export(tmp_path: Path, *checkpoints: Path, name: str = "tiny-1", extra: tuple = ()) -> Path:
    folder = tmp_path / "models"
    argv = [*map(str, checkpoints), "--name", name, "--models-dir", str(folder), "--trained", "test", *extra]
    assert _export_module().main(argv) == 0
    return folder


def test_export_averages_stores_fp16_and_registers(tmp_path):
    a, b = _checkpoint(tmp_path / "a.safetensors", 1), _checkpoint(tmp_path / "b.safetensors", 2)
    folder = _export(tmp_path, a, b)
    info = verify("tiny-1", folder)
    assert registry(folder)["default"] == "tiny-1" and info["sha256"] == sha256_file(folder / "tiny-1.safetensors")
    assert info["steps"] == [1, 2] and info["averaged"] == [f"{tmp_path.name}/a.safetensors", f"{tmp_path.name}/b.safetensors"]
    from safetensors.torch import load_file

    stored = load_file(str(folder / "tiny-1.safetensors"))
    sa, sb = load_model(a).state_dict(), load_model(b).state_dict()
    for key, value in stored.items():
        if sa[key].is_floating_point():
            assert value.dtype == torch.float16
            expected = ((sa[key].double() + sb[key].double()) / 2).half()
            assert torch.equal(value, expected), key
        else:
            assert torch.equal(value, sa[key])


def test_export_carries_the_input_side_the_default_model_is_used_at(tmp_path, monkeypatch):
    from matseg.net.infer import Predictor

    a, b = (_checkpoint(tmp_path / f"{n}.safetensors", seed, input_side=96) for n, seed in (("a", 1), ("b", 2)))
    folder = _export(tmp_path, a, b)
    assert model_info("tiny-1", folder)["input_side"] == 96
    monkeypatch.setenv(ENV_DIR, str(folder))
    assert Predictor(device="cpu").max_side == 96 and Predictor(device="cpu", max_side=64).max_side == 64
    # The registry entry decides for a shipped model (its file may predate the field).
    reg = json.loads((folder / "models.json").read_text())
    reg["models"]["tiny-1"]["input_side"] = 160
    (folder / "models.json").write_text(json.dumps(reg))
    assert Predictor(device="cpu").max_side == 160
    # --input-side overrides the checkpoints'; checkpoints that disagree are refused.
    folder2 = _export(tmp_path / "x", a, extra=("--input-side", "128"))
    assert model_info("tiny-1", folder2)["input_side"] == 128
    assert Predictor(folder2 / "tiny-1.safetensors", device="cpu").max_side == 128  # also in the file
    c = _checkpoint(tmp_path / "c.safetensors", 3, input_side=512)
    assert _export_module().main([str(a), str(c), "--name", "y", "--models-dir", str(tmp_path / "z")]) == 2
    assert not (tmp_path / "z").exists()


def test_fp16_model_gives_the_fp32_descriptors(tmp_path):
    from matseg.net.infer import Predictor

    ckpt = _checkpoint(tmp_path / "a.safetensors", 3)
    folder = _export(tmp_path, ckpt)
    image = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    full = Predictor(ckpt, device="cpu").describe(image).descriptors
    half = Predictor(load_model(folder / "tiny-1.safetensors"), device="cpu").describe(image).descriptors
    cosine = (full * half).sum(0)  # unit vectors
    assert cosine.min() > 0.999


def test_damaged_or_missing_models_are_refused_by_name(tmp_path, monkeypatch):
    folder = _export(tmp_path, _checkpoint(tmp_path / "a.safetensors", 4))
    path = folder / "tiny-1.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelNotAvailable, match="tiny-1.safetensors: sha256 .* does not match"):
        verify(folder=folder)
    path.unlink()
    with pytest.raises(ModelNotAvailable, match="weights of model 'tiny-1' are missing"):
        verify(folder=folder)
    with pytest.raises(ModelNotAvailable, match=r"'nope' is not registered .* \(registered: tiny-1\)"):
        model_info("nope", folder)
    with pytest.raises(ModelNotAvailable, match="no default model"):
        model_info(folder=tmp_path / "empty")


def test_commands_use_the_default_model(tmp_path, monkeypatch, capsys):
    from matseg.io.images import write_image

    folder = _export(tmp_path, _checkpoint(tmp_path / "a.safetensors", 5))
    monkeypatch.setenv(ENV_DIR, str(folder))
    photo = tmp_path / "photo.png"
    write_image(photo, np.random.default_rng(1).integers(0, 256, (64, 80, 3), dtype=np.uint8))
    out = tmp_path / "pred"
    assert matseg.cli.main(["predict", str(photo), "--point", "10,20", "-o", str(out), "--device", "cpu"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["model"] == {"model": "tiny-1", "sha256": sha256_file(folder / "tiny-1.safetensors")}
    assert (out / "photo_p0.npy").exists()

    from matseg.evaluate.predictors import create_predictor

    assert create_predictor("matseg", device="cpu").params()["model"] == "tiny-1"

    monkeypatch.setenv(ENV_DIR, str(tmp_path / "nothing-here"))
    assert matseg.cli.main(["segment", str(photo), "-o", str(tmp_path / "seg")]) == 2
    err = capsys.readouterr().err
    assert "no default model is registered" in err and "--weights" in err


def test_export_refuses_bad_input_before_writing(tmp_path, capsys):
    export = _export_module()
    ckpt = _checkpoint(tmp_path / "a.safetensors", 6)
    folder = tmp_path / "models"
    assert export.main([str(ckpt), "--name", "../escape", "--models-dir", str(folder)]) == 2
    assert "--name" in capsys.readouterr().err
    assert export.main([str(tmp_path / "none.safetensors"), "--name", "x", "--models-dir", str(folder)]) == 2
    assert "none.safetensors" in capsys.readouterr().err
    other = tmp_path / "b.safetensors"
    save_weights(other, DescriptorNet(ModelConfig(pretrained=False, descriptor_dim=8, decoder_channels=[32, 16, 16], psp_channels=8)))
    assert export.main([str(ckpt), str(other), "--name", "x", "--models-dir", str(folder)]) == 2
    assert "different architectures" in capsys.readouterr().err
    folder.mkdir()
    (folder / "models.json").write_text("{broken")
    assert export.main([str(ckpt), "--name", "x", "--models-dir", str(folder)]) == 2
    assert "unreadable model registry" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["models.json"]


def test_the_shipped_registry_is_consistent(monkeypatch):
    """The package's own models.json: every registered file present, sha256 and size as recorded, <= 25 MB."""
    monkeypatch.delenv(ENV_DIR, raising=False)
    folder = Path(matseg.models.__file__).parent
    assert (folder / "models.json").is_file()  # ships even before a model does
    reg = registry(folder)
    assert reg["default"] is None or reg["default"] in reg["models"]
    for name, entry in reg["models"].items():
        info = verify(name, folder)
        assert Path(info["path"]).stat().st_size == entry["bytes"] <= 25_000_000
        assert load_model(info["path"]).cfg.encoder == entry["encoder"]
