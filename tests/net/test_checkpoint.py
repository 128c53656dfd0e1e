import pytest

torch = pytest.importorskip("torch", reason="torch extra not installed (pip install 'matseg[torch]')")
pytest.importorskip("safetensors")

from matseg.net.checkpoint import CheckpointError, load_model, read_metadata, save_weights  # noqa: E402
from matseg.net.model import DescriptorNet, ModelConfig  # noqa: E402


@pytest.mark.parametrize("encoder", ["efficientnet_lite0", "efficientnet_lite2"])
def test_round_trip_is_exact_and_carries_config(tmp_path, monkeypatch, encoder):
    cfg = ModelConfig(encoder=encoder, pretrained=False, descriptor_dim=16, decoder_channels=[32, 16, 16], psp_channels=8)
    net = DescriptorNet(cfg).eval()
    path = save_weights(tmp_path / "w.safetensors", net, extra={"step": 7})
    meta = read_metadata(path)
    assert meta["extra"] == {"step": 7} and meta["model_config"]["descriptor_dim"] == 16
    assert meta["model_config"]["encoder"] == encoder
    # A trained net loads without the ImageNet weights package of its encoder.
    from matseg.net.encoders import efficientnet_lite

    monkeypatch.setattr(efficientnet_lite, "imagenet_weights_path", lambda *a: pytest.fail("ImageNet weights read"))
    again = load_model(path)
    x = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        assert torch.equal(net(x), again(x))
    assert not list(tmp_path.glob(".*tmp"))


def test_bad_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load_model(tmp_path / "junk.safetensors")
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a matseg descriptor-net checkpoint"):
        load_model(tmp_path / "other.safetensors")
