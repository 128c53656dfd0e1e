import sys
import types

import numpy as np
import pytest

from matseg.evaluate.metrics import point_descriptors
from matseg.evaluate.predictors import (
    DescriptorPredictor,
    PredictorError,
    PredictorUnavailable,
    available_predictors,
    canonical_predictor_args,
    canonical_predictor_name,
    create_predictor,
    predictor_aliases,
    predictor_parameters,
    register_predictor,
)
from matseg.evaluate.predictors.sam import guess_model_type


def test_registry_lists_names_and_options_in_errors():
    assert {"random", "colour", "texture", "sam"} <= set(available_predictors())
    with pytest.raises(PredictorError, match="unknown predictor 'nope'; available: .*colour.*random.*texture"):
        create_predictor("nope")
    with pytest.raises(PredictorError, match=r"no option\(s\) sigma; options: blur=19, centre=True"):
        create_predictor("colour", sigma=3)
    with pytest.raises(PredictorError, match="needs checkpoint"):
        create_predictor("sam")
    with pytest.raises(PredictorError, match="blur must be 0 .* or an odd number"):
        create_predictor("colour", blur=4)


def test_user_predictors_register_themselves():
    @register_predictor("test_constant")
    class Constant(DescriptorPredictor):
        """Every pixel the same vector."""

        def __init__(self, value: float = 1.0):
            self.value = value

        def describe(self, image):
            return np.full(image.shape[:2] + (2,), self.value, np.float32)

    p = create_predictor("test_constant", value=2.0)
    assert p.name == "test_constant" and "test_constant" in available_predictors()
    assert predictor_parameters("test_constant") == {"value": 1.0}
    assert p.describe(np.zeros((4, 5, 3), np.uint8)).shape == (4, 5, 2)


def test_american_spellings_resolve_to_the_registered_names(bench):
    assert canonical_predictor_name("color") == "colour" == canonical_predictor_name("colour")
    assert canonical_predictor_name("nope") == "nope"  # unknown: left for create_predictor to report
    assert predictor_aliases("colour") == ["color"] and predictor_aliases("texture") == []
    assert "colour" in available_predictors() and "color" not in available_predictors()  # one name listed
    assert predictor_parameters("color") == predictor_parameters("colour") == {"blur": 19, "centre": True}

    p = create_predictor("color", blur=5, center=False)
    assert p.name == "colour" and p.params() == {"blur": 5, "centre": False}
    img = bench.image(30, 40)
    np.testing.assert_array_equal(p.describe(img), create_predictor("colour", blur=5, centre=False).describe(img))
    assert not np.array_equal(p.describe(img), create_predictor("colour", blur=5).describe(img))  # center took effect
    assert canonical_predictor_args("color", {"center": False, "blur": 3}) == {"centre": False, "blur": 3}
    assert canonical_predictor_args("nope", {"center": 1}) == {"center": 1}
    with pytest.raises(PredictorError, match=r"option centre given twice \(as centre and center\)"):
        create_predictor("colour", centre=True, center=False)
    with pytest.raises(PredictorError, match="unknown predictor 'colr'; available: .*colour"):
        create_predictor("colr")


def test_spelling_aliases_follow_user_predictors():
    @register_predictor("test_grey_level")
    class GreyLevel(DescriptorPredictor):
        """Grey level."""

        def __init__(self, normalised: bool = False):
            self.normalised = normalised

    p = create_predictor("test_gray_level", normalized=True)
    assert p.name == "test_grey_level" and p.normalised is True
    assert predictor_aliases("test_grey_level") == ["test_gray_level"]

    # A name registered in the American spelling is taken as it is and has no alias.
    @register_predictor("test_color_exact")
    class ColorExact(DescriptorPredictor):
        """Exact."""

    assert canonical_predictor_name("test_color_exact") == "test_color_exact"
    assert predictor_aliases("test_color_exact") == []
    with pytest.raises(PredictorError, match="unknown predictor 'test_colour_exact'"):
        create_predictor("test_colour_exact")


def test_cli_takes_the_american_spelling_and_lists_the_british_one(tmp_path, capsys):
    from matseg.cli import main

    args = ["eval", "masks", str(tmp_path), "--predictor", "color", "--predictor-arg", "center=false", "--print-config"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "name: colour\n" in out and "args: {centre: false}" in out  # saved config and output folder use these
    assert main(["eval", "masks", str(tmp_path), "--predictor", "color", "--predictor-arg", "center=false",
                 "--predictor-arg", "centre=true"]) == 2  # fmt: skip
    assert "option centre given twice (as center and centre)" in capsys.readouterr().err
    assert main(["eval", "predictors"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines if line.startswith("colo")] == ["colour"]
    assert next(line for line in lines if line.startswith("colour")).endswith("(alias: color)")


def test_random_is_reproducible_per_image_and_seed(bench):
    img = bench.image(40, 50)
    a, b = create_predictor("random"), create_predictor("random", seed=1)
    d = a.describe(img)
    assert d.shape == (40, 50, 8) and d.dtype == np.float32
    assert np.array_equal(d, create_predictor("random").describe(img))
    assert not np.array_equal(d, b.describe(img))
    assert not np.array_equal(d, a.describe(img[::-1].copy()))
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8 RGB image, got float64 \(4, 4, 3\)"):
        a.describe(np.zeros((4, 4, 3)))


def test_colour_separates_two_colours(bench):
    img = bench.image(60, 80)
    desc = create_predictor("colour").describe(img)
    assert desc.shape == (60, 80, 3) and desc.dtype == np.float32
    v = point_descriptors(desc, np.array([[10.0, 30.0, 4.0], [20.0, 10.0, 4.0], [70.0, 30.0, 4.0]]))
    assert v[0] @ v[1] > 0.95 and v[0] @ v[2] < 0.0


def test_texture_tells_stripes_from_noise_and_ignores_brightness():
    rng = np.random.default_rng(0)
    img = np.zeros((64, 128, 3), np.uint8)
    img[:, :64] = (np.arange(64) // 2 % 2 * 100)[None, :, None]  # vertical stripes, 0 / 100
    img[:, 64:] = rng.integers(0, 120, size=(64, 64, 1))
    texture = create_predictor("texture", window=15)
    desc = texture.describe(img)
    assert desc.shape == (64, 128, 30)
    assert np.allclose(np.linalg.norm(desc[..., :10], axis=2), 1.0, atol=1e-5)
    v = point_descriptors(desc, np.array([[20.0, 30.0, 3.0], [40.0, 30.0, 3.0], [100.0, 30.0, 3.0]]))
    assert v[0] @ v[1] > 0.99 and v[0] @ v[2] < 0.8
    brighter = img * 2  # twice the contrast (a power of two keeps float interpolation exact): same patterns
    assert np.allclose(texture.describe(brighter), desc)


def test_sam_without_the_package_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "segment_anything", None)  # import fails
    with pytest.raises(PredictorUnavailable, match=r"segment-anything package .*pip install 'matseg\[sam\]'"):
        create_predictor("sam", checkpoint=str(tmp_path / "sam_vit_b_01ec64.pth"))
    assert guess_model_type("x/sam_vit_h_4b8939.pth") == "vit_h"
    with pytest.raises(PredictorError, match="cannot tell the SAM model type"):
        create_predictor("sam", checkpoint="weights.pth")


@pytest.fixture
def fake_sam(monkeypatch):
    torch = pytest.importorskip("torch")

    class FakeModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(3))

    class FakeSamPredictor:
        calls: list = []

        def __init__(self, model):
            self.model = model

        def set_image(self, image, image_format="RGB"):
            assert image_format == "RGB" and image.dtype == np.uint8
            self.shape = image.shape[:2]

        def predict(self, point_coords, point_labels, multimask_output, return_logits):
            FakeSamPredictor.calls.append((point_coords.copy(), point_labels.copy(), multimask_output))
            k = 3 if multimask_output else 1
            logits = np.stack([np.full(self.shape, float(i), np.float32) for i in range(k)])
            return logits, np.array([0.1, 0.9, 0.5][:k]), None

    module = types.ModuleType("segment_anything")
    module.sam_model_registry = {"vit_b": lambda checkpoint=None: FakeModel()}
    module.SamPredictor = FakeSamPredictor
    monkeypatch.setitem(sys.modules, "segment_anything", module)
    return torch, FakeModel, FakeSamPredictor


def test_sam_adapter_prompts_and_maps(tmp_path, fake_sam):
    torch, FakeModel, FakeSamPredictor = fake_sam
    checkpoint = tmp_path / "sam_vit_b_test.pth"
    torch.save(FakeModel().state_dict(), checkpoint)
    one = create_predictor("sam", checkpoint=str(checkpoint))
    assert one.point_conditioned and (one.num_positive, one.num_negative) == (1, 0)
    one.set_image(np.zeros((6, 7, 3), np.uint8))
    sim = one.similarity(np.array([[1.0, 2.0]]), np.zeros((0, 2)))
    assert sim.shape == (6, 7) and np.allclose(sim, 1 / (1 + np.exp(-1.0)))  # best-scored of the 3 candidates
    eight = create_predictor("sam", checkpoint=str(checkpoint), points=8)
    assert (eight.num_positive, eight.num_negative) == (4, 4)
    eight.set_image(np.zeros((6, 7, 3), np.uint8))
    eight.similarity(np.ones((4, 2)), np.zeros((4, 2)))
    coords, labels, multimask = FakeSamPredictor.calls[-1]
    assert coords.shape == (8, 2) and labels.tolist() == [1, 1, 1, 1, 0, 0, 0, 0] and not multimask
    assert eight.params() == {"checkpoint": checkpoint.name, "model_type": "vit_b", "points": 8}
    with pytest.raises(PredictorUnavailable, match="checkpoint not found"):
        create_predictor("sam", checkpoint=str(tmp_path / "sam_vit_b_missing.pth"))


def test_sam_checkpoint_with_code_is_refused(tmp_path, fake_sam):
    torch, _, _ = fake_sam
    checkpoint = tmp_path / "sam_vit_b_evil.pth"
    torch.save({"weight": types.SimpleNamespace(a=1)}, checkpoint)  # not tensors: weights_only refuses it
    with pytest.raises(PredictorUnavailable, match="not a vit_b SAM checkpoint"):
        create_predictor("sam", checkpoint=str(checkpoint))
