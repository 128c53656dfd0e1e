import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch extra not installed (pip install 'matseg[torch]')")
pytest.importorskip("safetensors")

from PIL import Image  # noqa: E402

from matseg.cli import main  # noqa: E402
from matseg.net.checkpoint import save_weights  # noqa: E402
from matseg.net.infer import DescriptorMap, Predictor, cluster_descriptors, spherical_kmeans  # noqa: E402
from matseg.net.model import DescriptorNet, ModelConfig  # noqa: E402

SMALL = ModelConfig(pretrained=False, descriptor_dim=16, decoder_channels=[32, 16, 16], psp_channels=8)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    return save_weights(tmp_path_factory.mktemp("w") / "net.safetensors", DescriptorNet(SMALL))


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
