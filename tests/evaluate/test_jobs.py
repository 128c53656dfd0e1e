import numpy as np
import pytest

from matseg.evaluate.benchmark import load_benchmark_image, scan_benchmark
from matseg.evaluate.iou import load_mask_image, scan_mask_dataset
from matseg.evaluate.jobs import benchmark_point_similarity, evaluate_benchmark_image, evaluate_mask_image
from matseg.evaluate.predictors import PointPredictor, create_predictor, register_predictor


@register_predictor("test_colour_oracle")
class ColourOracle(PointPredictor):
    """Point-conditioned test model: similarity = minus the colour distance to the first positive point."""

    def __init__(self, points: int = 1):
        self.num_points = points
        self.calls = []

    def set_image(self, image):
        self.image = image.astype(np.float32)

    def similarity(self, positive, negative):
        self.calls.append((positive.copy(), negative.copy()))
        x, y = np.rint(positive[0]).astype(int)
        return -np.abs(self.image - self.image[y, x]).sum(axis=2)


def _two_colour_benchmark(tmp_path, bench):
    bench.write(tmp_path, "img", bench.image(), bench.points())
    (entry,) = scan_benchmark(tmp_path)
    return load_benchmark_image(entry)


def test_point_conditioned_prompts_half_positive_half_negative(tmp_path, bench):
    image = _two_colour_benchmark(tmp_path, bench)
    oracle = create_predictor("test_colour_oracle", points=4)
    pred, exclude, maps, prompts = benchmark_point_similarity(oracle, image, np.random.default_rng(0), [0, 3])
    assert len(oracle.calls) == image.num_points  # one query per anchor
    for a in range(image.num_points):
        # one extra positive (same material) and two negatives (other material) leave the anchor's triplets
        assert exclude[a].sum() == 3 and not exclude[a, a]
        excluded = np.flatnonzero(exclude[a])
        assert (image.labels[excluded] == image.labels[a]).sum() == 1
    pos, neg = prompts[3]
    assert pos[0] == 3 and (image.labels[pos] == image.labels[3]).all() and (image.labels[neg] != image.labels[3]).all()
    assert set(maps) == {0, 3} and maps[0].shape == image.image.shape[:2]
    record, _ = evaluate_benchmark_image(oracle, image, seed=0)
    assert record["results"]["all"]["paper"]["triplet_point"] == 1.0


def test_benchmark_record_is_deterministic(tmp_path, bench):
    image = _two_colour_benchmark(tmp_path, bench)
    a, _ = evaluate_benchmark_image(create_predictor("random"), image, seed=3)
    b, _ = evaluate_benchmark_image(create_predictor("random"), image, seed=3)
    a.pop("timing"), b.pop("timing")
    assert a == b
    colour, _ = evaluate_benchmark_image(create_predictor("colour"), image, seed=3)
    assert colour["results"]["all"]["paper"]["triplet_point"] == 1.0
    assert colour["points_per_material"] == [3, 4]


def _colour_label_dataset(tmp_path, bench):
    from PIL import Image

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    Image.fromarray(bench.image(60, 80, split=30)).save(tmp_path / "images" / "a.png")
    labels = np.ones((60, 80), np.uint8)
    labels[:, 30:] = 2
    Image.fromarray(labels).save(tmp_path / "labels" / "a.png")
    (entry,) = scan_mask_dataset(tmp_path)
    return load_mask_image(entry)


@pytest.mark.parametrize("name, kwargs", [("colour", {"blur": 0}), ("test_colour_oracle", {"points": 2})])
def test_mask_iou_on_a_two_colour_image(tmp_path, bench, name, kwargs):
    image = _colour_label_dataset(tmp_path, bench)
    record, rows = evaluate_mask_image(create_predictor(name, **kwargs), image, num_points=5, seed=1, want_maps=True)
    assert [s["name"] for s in record["segments"]] == ["1", "2"]
    assert all(len(s["ious"]) == 5 for s in record["segments"])
    assert record["mean_iou"] == pytest.approx(1.0)  # colour separates the two segments exactly
    assert len(rows) == 2 and rows[0]["sim"].shape == (60, 80)
    for s, seg in zip(record["segments"], image.segments):
        xs, ys = np.array(s["points"]).T
        assert seg[ys, xs].all()


def _binary_label_dataset(tmp_path, labels):
    from PIL import Image

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 256, labels.shape + (3,), dtype=np.uint8)).save(tmp_path / "images" / "a.png")
    Image.fromarray(labels).save(tmp_path / "labels" / "a.png")
    (entry,) = scan_mask_dataset(tmp_path)
    return load_mask_image(entry, max_size=None)


def test_random_predictor_scores_well_below_one_on_background_plus_one_class(tmp_path):
    labels = np.zeros((48, 64), np.uint8)
    labels[10:30, 10:40] = 1
    image = _binary_label_dataset(tmp_path, labels)
    record, _ = evaluate_mask_image(create_predictor("random"), image, num_points=5, seed=0)
    assert [s["name"] for s in record["segments"]] == ["1"]
    # a random map's best threshold keeps roughly everything: IoU near the segment's share of the image
    assert record["mean_iou"] < 0.5
    assert "warnings" not in record


def test_point_prompts_draw_negatives_from_the_background(tmp_path):
    labels = np.zeros((48, 64), np.uint8)
    labels[10:30, 10:40] = 1
    image = _binary_label_dataset(tmp_path, labels)
    oracle = create_predictor("test_colour_oracle", points=4)
    evaluate_mask_image(oracle, image, num_points=3, seed=0)
    assert len(oracle.calls) == 3
    for positive, negative in oracle.calls:
        assert len(positive) == 2 and len(negative) == 2
        xs, ys = negative.astype(int).T
        assert (labels[ys, xs] == 0).all()  # the only real negatives here are background pixels


def test_segment_without_negatives_is_warned_about(tmp_path):
    image = _binary_label_dataset(tmp_path, np.ones((16, 16), np.uint8))
    record, _ = evaluate_mask_image(create_predictor("random"), image, num_points=2, seed=0)
    assert record["mean_iou"] == 1.0
    assert any("no negatives" in w for w in record["warnings"])
