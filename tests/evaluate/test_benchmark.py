import os
import pickle
import shlex

import cv2
import numpy as np
import pytest

from matseg.evaluate.benchmark import (
    BenchmarkFormatError,
    load_benchmark_image,
    resize_to_max_side,
    scan_benchmark,
)


class Evil:
    """Unpickling it with the plain pickle module would run ``touch <marker>``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def _load_one(root, **kwargs):
    (entry,) = scan_benchmark(root)
    return load_benchmark_image(entry, **kwargs)


@pytest.mark.parametrize("fmt", ["json", "pkl", "both"])
def test_round_trip_json_pickle_both(tmp_path, bench, fmt):
    data = bench.points()
    bench.write(tmp_path, "img", bench.image(), data, fmt=fmt)
    if fmt == "both":  # the JSON must win: make the pickle say something else
        other = {"9": {"pt_im": [[1, 1, 1]]}}
        (tmp_path / "data" / "img" / "data.pkl").write_bytes(pickle.dumps(other))
    image = _load_one(tmp_path, max_size=None)
    assert image.materials == ["1", "2"]
    assert image.sources["annotation"].endswith("data.pkl" if fmt == "pkl" else "data.json")
    expected = np.array(data["1"]["pt_im"] + data["2"]["pt_im"], dtype=float)
    assert np.array_equal(image.points, expected)
    assert image.labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert image.image.shape == (120, 160, 3) and not image.has_relations
    assert np.array_equal(image.point_similarity, (image.labels[:, None] == image.labels[None]).astype(float))


def test_malicious_pickle_is_refused_and_never_run(tmp_path, bench):
    marker = tmp_path / "pwned"
    bench.write(tmp_path, "img", bench.image(), {"1": Evil(marker)}, fmt="pkl")
    with pytest.raises(BenchmarkFormatError) as info:
        _load_one(tmp_path)
    assert "data.pkl" in str(info.value) and "refused" in str(info.value)
    assert not marker.exists()


def test_relations_file_gives_partial_similarity(tmp_path, bench):
    data = bench.points()
    data["3"] = {"pt_im": [[80, 60, 4]]}
    bench.write(tmp_path, "img", bench.image(), data, relations="\n [ 1 , 3 ]\n(2,3)\n\n")
    image = _load_one(tmp_path)
    assert image.has_relations and image.sources["relations"].endswith("group_relations.txt")
    assert image.material_similarity.tolist() == [[1.0, 0.0, 0.6], [0.0, 1.0, 0.3], [0.6, 0.3, 1.0]]


@pytest.mark.parametrize(
    "data, relations, message",
    [
        ("{not json", None, "data.json: not valid JSON"),
        ({"1": {"pt_im": [[10, 10, 3]], "pt_img": []}}, None, "unknown field(s) pt_img"),
        ({"1": {"pt_pg": [[1, 1, 1]]}}, None, "missing 'pt_im'"),
        ({"1": {"pt_im": [[10, 10]]}}, None, "expected [x, y, r]"),
        ({"1": {"pt_im": [[10, 10, 0]]}}, None, "radius must be > 0"),
        ({"1": {"pt_im": [[10, 500, 3]]}}, None, "outside the upright image of 160x120"),
        ([1, 2], None, "expected a non-empty mapping"),
        ({"1": {"pt_im": [[10, 10, 3]]}, "2": {"pt_im": [[90, 10, 3]]}}, "[1,7]", "group_relations.txt:1: material key(s) '7'"),
    ],
)
def test_bad_files_raise_errors_naming_the_file(tmp_path, bench, data, relations, message):
    bench.write(tmp_path, "img", bench.image(), data, relations=relations)
    with pytest.raises(BenchmarkFormatError) as info:
        _load_one(tmp_path)
    assert message in str(info.value)
    assert str(tmp_path / "data" / "img") in str(info.value)


def test_missing_image_or_annotation_and_every_image_listed(tmp_path, bench):
    bench.write(tmp_path, "a2", bench.image(), bench.points())
    bench.write(tmp_path, "a10", bench.image(), bench.points())
    bench.write(tmp_path, "a1", None, bench.points())  # annotation without image
    bench.write(tmp_path, "b", bench.image(), bench.points())
    for name in ("data.json",):
        (tmp_path / "data" / "b" / name).unlink()  # image without annotation
    entries = scan_benchmark(tmp_path)
    assert [e.name for e in entries] == ["a1", "a2", "a10", "b"]  # natural order, nothing skipped
    with pytest.raises(BenchmarkFormatError, match=r"no image a1\.\*"):
        load_benchmark_image(entries[0])
    with pytest.raises(BenchmarkFormatError, match="neither data.json nor data.pkl"):
        load_benchmark_image(entries[3])
    assert load_benchmark_image(entries[2]).num_points == 7
    with pytest.raises(BenchmarkFormatError, match="folder not found"):
        scan_benchmark(tmp_path / "nope")


def test_resize_scales_points_and_radii(tmp_path, bench):
    bench.write(tmp_path, "img", bench.image(240, 320), {"1": {"pt_im": [[0, 0, 8], [319, 239, 8]]}, "2": {"pt_im": [[160, 120, 20]]}})
    image = _load_one(tmp_path, max_size=160)
    assert image.image.shape == (120, 160, 3) and image.scale == (0.5, 0.5)
    # pixel centres: x' = (x + 0.5) * s - 0.5
    assert image.points.tolist() == [[-0.25, -0.25, 4.0], [159.25, 119.25, 4.0], [79.75, 59.75, 10.0]]
    small, scale = resize_to_max_side(np.arange(12).reshape(3, 4), 2, nearest=True)
    assert small.tolist() == [[1, 3], [9, 11]] and scale == (0.5, 2 / 3)  # nearest pixel centre


def test_exif_rotation_applied_points_in_upright_frame(tmp_path, bench):
    upright = bench.image(160, 120, split=60)  # 120 wide, 160 tall
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # what the camera stores for orientation 6
    data = {"1": {"pt_im": [[20, 150, 5]]}, "2": {"pt_im": [[100, 150, 5]]}}  # y = 150 exists only upright
    bench.write(tmp_path, "cam", stored, data, exif_orientation=6)
    image = _load_one(tmp_path, max_size=None)
    assert image.original_size == (160, 120)
    assert image.image[150, 20, 0] > 150 and image.image[150, 100, 2] > 150  # red left, blue right


def test_points_in_the_stored_frame_get_an_exif_hint(tmp_path, bench):
    bench.write(tmp_path, "cam", bench.image(120, 160), {"1": {"pt_im": [[150, 10, 4]]}}, exif_orientation=6)
    with pytest.raises(BenchmarkFormatError, match="EXIF orientation"):
        _load_one(tmp_path)


def test_shared_sample_exif_and_points_on_their_materials(benchmark_sample):
    (entry,) = scan_benchmark(benchmark_sample)
    image = load_benchmark_image(entry)
    assert image.original_size == (4000, 3000)  # stored 4000x3000 (WxH) with orientation 6
    assert image.image.shape == (700, 525, 3)
    assert image.materials == ["1", "2"] and image.num_points == 37
    assert np.bincount(image.labels).tolist() == [15, 22]
    x, y, r = image.points.T
    assert (x - r > -1).all() and (x + r < 525).all() and (y - r > -1).all() and (y + r < 700).all()
    # material 1 is the yellow candy, material 2 the red: compare Lab b* (yellow) and a* (red) in the discs
    lab = cv2.cvtColor(image.image, cv2.COLOR_RGB2LAB).astype(float)
    means = np.array([lab[int(round(py)), int(round(px))] for px, py in zip(x, y)])
    b1, b2 = means[image.labels == 0, 2].mean(), means[image.labels == 1, 2].mean()
    a1, a2 = means[image.labels == 0, 1].mean(), means[image.labels == 1, 1].mean()
    assert b1 > b2 + 15 and a2 > a1 + 15
