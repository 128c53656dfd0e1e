import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch extra not installed (pip install 'matseg[torch]')")
pytest.importorskip("safetensors")

from PIL import Image  # noqa: E402

from matseg.cli import main  # noqa: E402
from matseg.net.checkpoint import save_weights  # noqa: E402
from matseg.net.infer import DescriptorMap, Predictor, cluster_descriptors, spherical_kmeans  # noqa: E402
from matseg.net.model import DescriptorNet  # noqa: E402

def test_similarity_map_in_original_coordinates(weights):
    import skimage.data

    image = skimage.data.coffee()  # 400 x 600
    predictor = Predictor(weights, device="cpu", max_side=256)
    sims = predictor.similarity_maps(image, [(100, 50), (500, 300)], radius=6)
    assert sims.shape == (2, 400, 600) and sims.dtype == np.float32
    assert sims.min() >= -1.0001 and sims.max() <= 1.0001
    # A point is most similar to itself (up to interpolation).
    assert sims[0, 50, 100] > np.percentile(sims[0], 90)


def test_point_outside_image_is_an_error():
    dmap = DescriptorMap(torch.nn.functional.normalize(torch.rand(4, 10, 10), dim=0), (40, 40))
    with pytest.raises(ValueError, match="outside the image"):
        dmap.point_descriptor(45, 3)


def test_disc_descriptor_is_normalised_mean():
    d = torch.zeros(2, 4, 4)
    d[0, :, :2] = 1  # left half points along x
    d[1, :, 2:] = 1  # right half along y
    dmap = DescriptorMap(d, (4, 4))
    v = dmap.point_descriptor(1.5, 1.5, radius=10)  # the whole image
    assert torch.allclose(v, torch.tensor([1.0, 1.0]) / 2**0.5, atol=1e-6)
    assert torch.allclose(dmap.point_descriptor(0, 0), torch.tensor([1.0, 0.0]))


def test_clustering_recovers_known_directions():
    rng = np.random.default_rng(0)
    dirs = np.eye(3)
    labels = rng.integers(0, 3, 3000)
    vecs = dirs[labels] + rng.normal(0, 0.1, (3000, 3))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    centers = cluster_descriptors(vecs, None, max_k=6)
    assert len(centers) == 3  # silhouette picks the true count
    _, found = spherical_kmeans(vecs, 3, np.random.default_rng(1))
    # Same partition up to renaming.
    pairs = {(a, b) for a, b in zip(labels, found)}
    assert len(pairs) == 3


def test_predict_and_segment_cli_on_a_real_photo(weights, tmp_path, natural_images):
    photo = sorted(natural_images.glob("*.jpg"))[0]
    w, h = Image.open(photo).size
    out = tmp_path / "pred"
    assert main(["predict", str(photo), "--weights", str(weights), "--point", "10,20", "--point", f"{w - 5},{h - 5}",
                 "--radius", "8", "-o", str(out), "--max-side", "256", "--device", "cpu"]) == 0  # fmt: skip
    sim = np.load(out / f"{photo.stem}_p1.npy")
    assert sim.shape == (h, w)
    assert (out / f"{photo.stem}_p0_overlay.png").exists()
    seg = tmp_path / "seg"
    assert main(["segment", str(photo), "--weights", str(weights), "-k", "3", "-o", str(seg), "--max-side", "256"]) == 0
    labels = np.asarray(Image.open(seg / f"{photo.stem}_labels.png"))
    assert labels.shape == (h, w) and set(np.unique(labels)) <= {0, 1, 2}


def test_cli_errors_are_clear(tmp_path, capsys, weights):
    assert main(["predict", "x.jpg", "--weights", str(tmp_path / "none.safetensors"), "--point", "1,1"]) == 2
    assert "weights file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    assert main(["segment", str(bad), "--weights", str(weights), "-o", str(tmp_path / "o")]) == 1
    assert "bad.jpg" in capsys.readouterr().err


def _shipped(folder, weights, name="tiny-1"):
    """A models folder (MATSEG_MODELS_DIR) whose default model is a copy of ``weights``."""
    import json
    import shutil

    from matseg.models import sha256_file

    folder.mkdir()
    path = shutil.copyfile(weights, folder / f"{name}.safetensors")
    entry = {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size, "encoder": "efficientnet_lite0"}
    (folder / "models.json").write_text(json.dumps({"default": name, "models": {name: entry}}))
    return path


def test_weights_default_to_the_shipped_model(weights, tmp_path, monkeypatch, capsys):
    import json

    from matseg.models import ENV_DIR, sha256_file

    path = _shipped(tmp_path / "models", weights)
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "models"))
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    assert Predictor(device="cpu").source == {"model": "tiny-1", "sha256": sha256_file(path)}
    default = Predictor(device="cpu", max_side=64).describe(image).descriptors
    assert torch.equal(default, Predictor(weights, device="cpu", max_side=64).describe(image).descriptors)
    photo = tmp_path / "photo.png"
    Image.fromarray(image).save(photo)
    assert main(["segment", str(photo), "-k", "2", "-o", str(tmp_path / "seg"), "--device", "cpu", "--max-side", "64"]) == 0
    run = json.loads((tmp_path / "seg" / "run.json").read_text())
    assert run["model"] == {"model": "tiny-1", "sha256": sha256_file(path)} and run["options"]["materials"] == 2
    assert "model: tiny-1" in capsys.readouterr().err
    # With --weights the file and its sha256 are recorded instead.
    assert main(["predict", str(photo), "--weights", str(weights), "--point", "5,5", "-o", str(tmp_path / "p"), "--device", "cpu"]) == 0
    run = json.loads((tmp_path / "p" / "run.json").read_text())
    assert run["model"] == {"weights": str(weights.resolve()), "sha256": sha256_file(weights)}


def test_missing_or_damaged_shipped_model_is_a_usage_error(weights, tmp_path, monkeypatch, capsys):
    from matseg.models import ENV_DIR

    path = _shipped(tmp_path / "models", weights)
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "models"))
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(photo)
    args = ["predict", str(photo), "--point", "1,1", "-o", str(tmp_path / "o"), "--device", "cpu"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "tiny-1.safetensors: sha256" in err and "Traceback" not in err
    path.unlink()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "tiny-1.safetensors" in err and "missing" in err and "--weights" in err
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "empty"))  # no registry: nothing ships
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no default model" in err and "--weights" in err
    assert not (tmp_path / "o").exists()  # refused before any output


def test_help_says_weights_default_to_the_shipped_model(capsys):
    for command in ("predict", "segment"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "default: the model that ships with matseg" in " ".join(capsys.readouterr().out.split())


def test_point_descriptor_equals_full_grid_disc_mean():
    """The disc is evaluated on its bounding box only; the result equals the whole-grid definition."""
    import torch.nn.functional as F

    from matseg.net.infer import DescriptorMap

    d = F.normalize(torch.randn(16, 37, 53, generator=torch.Generator().manual_seed(0)), dim=0)
    dmap = DescriptorMap(d, (148, 212))
    sy, sx = dmap.scale
    yy, xx = torch.meshgrid(torch.arange(37), torch.arange(53), indexing="ij")
    rng = np.random.default_rng(0)
    for _ in range(200):
        x, y, radius = rng.uniform(0, 212), rng.uniform(0, 148), float(rng.choice([0, 0.3, 1, 3, 10, 40, 300]))
        cy, cx = (y + 0.5) * sy - 0.5, (x + 0.5) * sx - 0.5
        r = max(radius * min(sy, sx), 0.5)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        if not disc.any():
            disc[min(36, round(cy)), min(52, round(cx))] = True
        expected = F.normalize(d[:, disc].mean(1), dim=0)
        assert torch.allclose(dmap.point_descriptor(x, y, radius), expected, atol=1e-6)


# ----------------------------------------------------------------------------- test-time augmentation


def test_view_sides_cap_and_deduplicate():
    from matseg.net.infer import view_sides

    assert view_sides((400, 600), 1024, (384, 256)) == [600, 384, 256]  # never enlarged
    assert view_sides((300, 200), 1024, (384, 256)) == [300, 256]  # 384 > 300: the same view as 300
    assert view_sides((1000, 2000), 700, ()) == [700]
    assert view_sides((400, 600), 256, (384, 256)) == [256]  # nor above max_side
    # Scales are fractions of the first view's side (capped by the image), at least 32 px.
    assert view_sides((400, 600), 384, (), (0.75, 0.5)) == [384, 288, 192]
    assert view_sides((300, 200), 1024, (), (0.75, 0.5)) == [300, 225, 150]
    assert view_sides((100, 40), 1024, (256,), (0.75, 0.5, 0.1)) == [100, 75, 50, 32]


def test_max_side_comes_from_the_weights_unless_given(tmp_path, small_net_config):
    torch.manual_seed(0)
    net = DescriptorNet(small_net_config)
    named = save_weights(tmp_path / "named.safetensors", net, extra={"step": 1, "input_side": 96})
    plain = save_weights(tmp_path / "plain.safetensors", net, extra={"step": 1})
    assert Predictor(named, device="cpu").max_side == 96
    assert Predictor(named, device="cpu", max_side=64).max_side == 64  # the caller wins
    assert Predictor(plain, device="cpu").max_side == 1024  # DEFAULT_MAX_SIDE
    image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    # The file's side is the side the net sees: the same descriptors as asking for it.
    d = Predictor(named, device="cpu").describe(image).descriptors
    assert d.shape[-2:] == (72 // 4, 96 // 4)
    assert torch.equal(d, Predictor(plain, device="cpu", max_side=96).describe(image).descriptors)


def test_describe_views_hand_computed():
    from matseg.net.infer import describe_views

    image = np.zeros((8, 16, 3), np.uint8)
    calls = []

    def ramp(img, side):
        """One map: the column index of the image it got, on a grid of side // 4 columns."""
        calls.append((img[0, 0, 0], side))
        cols = torch.arange(side // 4, dtype=torch.float32)
        return [cols.expand(2, -1)[None].repeat(1, 1, 1)]

    image[:, 0] = 7  # marks the unmirrored image
    (single,) = describe_views(ramp, image, [16])
    assert torch.equal(single, torch.arange(4.0).expand(1, 2, 4))  # one view: untouched
    calls.clear()
    (mirrored,) = describe_views(ramp, image, [16], flip=True)
    # The mirrored view got the mirror image (column 0 is not 7) and its map was mirrored back:
    # mean of [0, 1, 2, 3] and [3, 2, 1, 0] is 1.5 everywhere.
    assert [c[0] for c in calls] == [7, 0] and torch.allclose(mirrored, torch.full((1, 2, 4), 1.5))
    (scaled,) = describe_views(ramp, image, [16, 8])
    # The 8 px view (2 columns: 0, 1) is resized bilinearly to the 4 columns of the first view.
    half = torch.nn.functional.interpolate(torch.tensor([[[[0.0, 1.0]]]]), size=(1, 4), mode="bilinear", align_corners=False)[0, 0, 0]
    assert torch.allclose(scaled[0, 0], (torch.arange(4.0) + half) / 2)
    with pytest.raises(ValueError, match="at least one side"):
        describe_views(ramp, image, [])


def test_predictor_tta_is_unit_and_mirror_consistent(weights):
    import skimage.data

    from matseg.net.infer import TTA_PRESET

    image = skimage.data.coffee()[:, :512]  # 400 x 512
    plain = Predictor(weights, device="cpu", max_side=512)
    tta = Predictor(weights, device="cpu", max_side=512, **TTA_PRESET)
    assert tta.options == {"max_side": 512, "extra_sides": [], "extra_scales": [0.75, 0.5], "flip": True, "precision": "fp32"}
    a, b = plain.describe(image).descriptors, tta.describe(image).descriptors
    assert a.shape == b.shape and torch.allclose(b.norm(dim=0), torch.ones(()), atol=1e-5)
    assert not torch.allclose(a, b, atol=1e-3)
    # Mirror-only TTA is symmetric: the mirrored image gives the mirrored descriptors.
    flip = Predictor(weights, device="cpu", max_side=512, flip=True)
    d, d_mirror = flip.describe(image).descriptors, flip.describe(np.ascontiguousarray(image[:, ::-1])).descriptors
    assert torch.allclose(d, d_mirror.flip(-1), atol=1e-5)
    with pytest.raises(ValueError, match="extra_sides must be >= 32, got 16"):
        Predictor(weights, device="cpu", extra_sides=(16,))
    with pytest.raises(ValueError, match=r"extra_scales must lie in \(0, 1\], got \[1.5\]"):
        Predictor(weights, device="cpu", extra_scales=(1.5,))


def test_predict_cli_tta_records_its_views(weights, tmp_path, capsys):
    import json

    import skimage.data

    photo = tmp_path / "coffee.png"
    Image.fromarray(skimage.data.coffee()).save(photo)
    args = ["predict", str(photo), "--point", "100,50", "--weights", str(weights), "--device", "cpu", "--max-side", "512"]
    assert main([*args, "-o", str(tmp_path / "plain")]) == 0
    assert main([*args, "--tta", "-o", str(tmp_path / "tta")]) == 0
    run = json.loads((tmp_path / "tta" / "run.json").read_text())
    assert run["options"]["tta"] is True and run["options"]["extra_scales"] == [0.75, 0.5] and run["options"]["flip"] is True
    plain, tta = np.load(tmp_path / "plain" / "coffee_p0.npy"), np.load(tmp_path / "tta" / "coffee_p0.npy")
    assert plain.shape == tta.shape == (400, 600) and not np.array_equal(plain, tta)
