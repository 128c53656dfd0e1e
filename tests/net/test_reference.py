"""The authors' architecture (ReferenceNet): exact state-dict layout, loading their checkpoint, conversion.

ConvNeXt-B has 132 M parameters: one random checkpoint is written per module and every test reuses
it and the nets loaded from it; inputs are 64x96.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch extra not installed (pip install 'matseg[torch]')")
pytest.importorskip("safetensors")

from PIL import Image  # noqa: E402

from matseg.cli import main  # noqa: E402
from matseg.net.checkpoint import (  # noqa: E402
    FORMAT,
    CheckpointError,
    load_model,
    load_reference_checkpoint,
    read_metadata,
)
from matseg.net.reference import CLASSIFIER_PREFIX, ReferenceNet, reference_manifest  # noqa: E402

MANIFEST = reference_manifest()


def random_state(seed: int = 0) -> dict:
    """A state dict with exactly the manifest's keys and shapes (classifier included), random values."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in {**MANIFEST["keys"], **MANIFEST["dropped"]}.items():
        if name.endswith("num_batches_tracked"):
            t = torch.tensor(7)
        elif name.endswith("running_var"):
            t = torch.rand(shape, generator=g) + 0.5
        elif name.endswith("layer_scale"):  # large enough that every block changes the output
            t = torch.rand(shape, generator=g) * 0.5 + 0.1
        elif len(shape) == 1 and name.endswith("weight"):  # norm scales
            t = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            t = 0.02 * torch.randn(shape, generator=g)
        state[name] = t
    return state


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "Defult.torch"
    state = random_state()
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def image():
    return torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(1)) * 255


@pytest.fixture(scope="module")
def loaded(checkpoint, image):
    """The checkpoint loaded in both channel orders and its descriptors of ``image``."""
    net = load_reference_checkpoint(checkpoint[0])
    with torch.no_grad():
        rgb = net(image)
        flipped = net(image.flip(1))
        net.channel_order = "bgr"
        bgr = net(image)
    net.channel_order = "rgb"
    return net, {"rgb": rgb, "rgb_of_flipped": flipped, "bgr": bgr}


def test_state_dict_is_exactly_the_manifest():
    # The manifest was generated from the authors' own Desnet.Net (see docs/deviations.md).
    assert "Desnet.py" in MANIFEST["source"]
    with torch.device("meta"):  # the same modules, without allocating 132 M parameters
        net = ReferenceNet()
    shapes = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert list(shapes) == list(MANIFEST["keys"])  # same keys in the same order
    assert shapes == MANIFEST["keys"]
    assert MANIFEST["dropped"] and all(k.startswith(CLASSIFIER_PREFIX) for k in MANIFEST["dropped"])


def test_authors_checkpoint_loads_strictly_and_runs(checkpoint, loaded):
    path, state = checkpoint
    net, out = loaded
    got = net.state_dict()
    assert not any(k.startswith(CLASSIFIER_PREFIX) for k in got)
    assert torch.equal(got["upsample_ModuleList.4.0.weight"], state["upsample_ModuleList.4.0.weight"])
    assert got["PSPLayers.0.1.num_batches_tracked"].dtype == torch.int64
    assert not net.training
    d = out["rgb"]
    assert d.shape == (1, 128, 16, 24) and d.dtype == torch.float32
    assert torch.allclose(d.norm(dim=1), torch.ones(1, 16, 24), atol=1e-5)
    assert torch.isfinite(d).all() and d.std() > 0.01
    raw = net.forward_raw(torch.zeros(1, 3, 64, 96))
    assert not torch.allclose(raw.norm(dim=1), torch.ones(1, 16, 24))  # the reference's output is not unit length


def test_sizes_not_divisible_by_32_are_floored(loaded):
    net = loaded[0]
    with torch.no_grad():
        assert net(torch.rand(1, 3, 70, 101) * 255).shape == (1, 128, 17, 25)
        with pytest.raises(ValueError, match="at least 32x32"):
            net(torch.rand(1, 3, 31, 64))


def test_bad_checkpoints_name_the_problem(tmp_path):
    wrong_stem = torch.zeros(128, 3, 4, 4)  # an RGB-only stem: a plain ConvNeXt
    small = {"Encoder1.features.0.0.weight": wrong_stem, "extra.head.weight": torch.zeros(2),
             "Encoder1.classifier.2.bias": torch.zeros(1000)}  # fmt: skip
    torch.save({"model": {f"module.{k}": v for k, v in small.items()}}, tmp_path / "small.pt")
    with pytest.raises(CheckpointError) as info:
        load_reference_checkpoint(tmp_path / "small.pt")
    msg = str(info.value)
    assert "small.pt" in msg
    assert "405 missing keys: Encoder1.features.0.0.bias," in msg
    assert "1 unexpected keys: extra.head.weight" in msg  # the classifier key is not reported
    assert "1 shape mismatches: Encoder1.features.0.0.weight [128, 3, 4, 4] (net: [128, 4, 4, 4])" in msg

    (tmp_path / "junk.torch").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="junk.torch: not a readable PyTorch checkpoint"):
        load_reference_checkpoint(tmp_path / "junk.torch")
    torch.save({"epoch": 3}, tmp_path / "nostate.pth")
    with pytest.raises(CheckpointError, match="no state dict of tensors found"):
        load_reference_checkpoint(tmp_path / "nostate.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_reference_checkpoint(tmp_path / "missing.torch")


def test_one_missing_key_in_a_full_checkpoint(checkpoint, tmp_path):
    state = dict(checkpoint[1])
    del state["SqueezeLayers.1.running_var"]
    torch.save(state, tmp_path / "cut.torch")
    with pytest.raises(CheckpointError, match=r"cut.torch: .*: 1 missing keys: SqueezeLayers.1.running_var$"):
        load_reference_checkpoint(tmp_path / "cut.torch")


def test_bgr_is_rgb_of_the_flipped_image(loaded):
    out = loaded[1]
    assert torch.equal(out["bgr"], out["rgb_of_flipped"])
    assert (out["bgr"] - out["rgb"]).abs().max() > 1e-3  # the option changes the result


def test_convert_to_safetensors_and_load(checkpoint, loaded, image, tmp_path, capsys):
    out = tmp_path / "model.safetensors"
    assert main(["convert", str(checkpoint[0]), "-o", str(out), "--channel-order", "bgr"]) == 0
    meta = read_metadata(out)
    assert meta["format"] == FORMAT and meta["architecture"] == "reference"
    assert meta["model_config"] == {"channel_order": "bgr"} and meta["extra"]["converted_from"] == "Defult.torch"
    net = load_model(out)
    assert isinstance(net, ReferenceNet) and net.channel_order == "bgr" and not net.training
    with torch.no_grad():
        assert torch.equal(net(image), loaded[1]["bgr"])
    assert main(["convert", str(tmp_path / "nothing.torch")]) == 2
    assert "nothing.torch: weights file not found" in capsys.readouterr().err


def test_bad_architecture_metadata(tmp_path):
    from safetensors.torch import save_file

    for arch, config, message in (("reference", '{"channel_order": "xyz"}', "bad channel_order 'xyz'"),
                                  ("vit", "{}", "unknown architecture 'vit'")):  # fmt: skip
        path = tmp_path / f"{arch}.safetensors"
        metadata = {"format": FORMAT, "architecture": arch, "model_config": config}
        save_file({"a": torch.zeros(1)}, str(path), metadata=metadata)
        with pytest.raises(CheckpointError, match=f"{arch}.safetensors: {message}"):
            load_model(path)


def test_predict_with_the_authors_checkpoint(checkpoint, tmp_path, capsys):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    args = ["predict", str(tmp_path / "photo.png"), "--weights", str(checkpoint[0]), "--point", "20,30",
            "-o", str(tmp_path / "out"), "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    sim = np.load(tmp_path / "out" / "photo_p0.npy")
    assert sim.shape == (64, 96) and sim.dtype == np.float32
    assert sim[30, 20] > np.percentile(sim, 90)  # the point is most like itself
    # A panorama too thin for the net after --max-side: a message naming it, exit 1, the other image done.
    Image.fromarray(rng.integers(0, 256, (40, 400, 3), dtype=np.uint8)).save(tmp_path / "thin.png")
    args[1:2] = [str(tmp_path / "thin.png"), str(tmp_path / "photo.png")]
    assert main([*args, "--max-side", "200"]) == 1
    assert "thin.png: the reference net needs images of at least 32x32 pixels" in capsys.readouterr().err


def test_predictor_follows_the_authors_resolution_rules(loaded):
    from matseg.net.infer import DEFAULT_MAX_SIDE, Predictor
    from matseg.net.model import DescriptorNet, ModelConfig

    net = loaded[0]
    predictor = Predictor(net, device="cpu")
    assert predictor.max_side == 700 and predictor.reference_rules
    # 1400x1000 -> 700x500 (bilinear, int sizes) -> floor(/4) descriptor grid, as their scripts.
    image = np.random.default_rng(0).integers(0, 256, (1000, 1400, 3), dtype=np.uint8)
    assert tuple(predictor.describe(image).descriptors.shape[1:]) == (125, 175)
    ours = Predictor(DescriptorNet(ModelConfig(pretrained=False)), device="cpu")
    assert ours.max_side == DEFAULT_MAX_SIDE and not ours.reference_rules


def test_bf16_precision_stays_close_to_fp32():
    from matseg.net.infer import Predictor
    from matseg.net.model import DescriptorNet, ModelConfig

    torch.manual_seed(0)
    net = DescriptorNet(ModelConfig(pretrained=False))
    image = np.random.default_rng(1).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    fp32 = Predictor(net, device="cpu").describe(image).descriptors
    bf16 = Predictor(net, device="cpu", precision="bf16").describe(image).descriptors
    assert bf16.dtype == torch.float32 and torch.allclose(bf16.norm(dim=0), torch.ones(1), atol=1e-3)
    assert (fp32 * bf16).sum(0).mean() > 0.98  # mean cosine between the two descriptor maps
    assert not torch.equal(fp32, bf16)  # autocast did run in bf16
