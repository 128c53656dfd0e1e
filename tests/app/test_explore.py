from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from matseg.app.explore import ImageStore, quantize_map, segment_legend
from matseg.io.images import ImageReadError

torch = pytest.importorskip("torch")


def _dmap(descriptors: np.ndarray, image_size):
    from matseg.net.infer import DescriptorMap

    return DescriptorMap(torch.tensor(descriptors, dtype=torch.float32), image_size)


def test_query_map_hand_computed():
    from matseg.app.explore import query_map

    # 4 x 4 grid, D = 2: left half e0, right half e1; the image is 8 x 8 (descriptors at 1/2).
    desc = np.zeros((2, 4, 4), np.float32)
    desc[0, :, :2] = 1
    desc[1, :, 2:] = 1
    dmap = _dmap(desc, (8, 8))
    left = query_map(dmap, [[1, 3]])
    assert np.allclose(left[:, :2], 1) and np.allclose(left[:, 2:], 0)
    # Two positives, one per half: the query is (e0 + e1)/sqrt(2), cos = 0.7071 everywhere.
    both = query_map(dmap, [[1, 3], [6, 3]])
    assert np.allclose(both, np.sqrt(0.5), atol=1e-6)
    # A negative on the right: s = 0.7071, n = 1 there -> 2s - n = 0.4142; left unchanged.
    pushed = query_map(dmap, [[1, 3], [6, 3]], negatives=[[6, 5]])
    assert np.allclose(pushed[:, :2], np.sqrt(0.5), atol=1e-6)
    assert np.allclose(pushed[:, 2:], 2 * np.sqrt(0.5) - 1, atol=1e-6)


def test_query_map_rejects_bad_points():
    from matseg.app.explore import query_map

    dmap = _dmap(np.ones((2, 4, 4), np.float32) / np.sqrt(2), (8, 8))
    with pytest.raises(ValueError, match="at least one positive"):
        query_map(dmap, [])
    with pytest.raises(ValueError, match=r"outside the image of 8x8"):
        query_map(dmap, [[8, 0]])
    with pytest.raises(ValueError, match=r"a point is \[x, y\]"):
        query_map(dmap, [[1, 2, 3]])


def test_quantize_map_round_trip():
    values = np.array([[-1.0, 0.0], [0.5, 1.0]], np.float32)
    q = np.frombuffer(quantize_map(values), np.uint8)
    assert q.tolist() == [0, 128, 191, 255]
    assert np.abs(q / 127.5 - 1 - values.ravel()).max() <= 0.5 / 127.5 + 1e-6


def test_segment_legend_fractions():
    labels = np.array([[0, 0, 1, 2]])
    palette = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], np.uint8)
    legend = segment_legend(labels, palette)
    assert [entry["fraction"] for entry in legend] == [0.5, 0.25, 0.25]
    assert legend[2]["colour"] == [7, 8, 9]


def _jpeg_with_orientation(w: int, h: int, orientation: int) -> bytes:
    image = Image.fromarray(np.zeros((h, w, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif)
    return buf.getvalue()


def test_store_applies_exif_and_refuses_large_and_corrupt():
    store = ImageStore(lambda image: None, max_pixels=10_000)
    item = store.add_bytes(_jpeg_with_orientation(40, 20, 6), "rotated.jpg")  # 6: rotate 90 degrees
    assert item.size == (40, 20)
    assert store.add_bytes(_jpeg_with_orientation(40, 20, 6), "again.jpg") is item  # same bytes, same entry
    with pytest.raises(ImageReadError, match=r"big\.jpg: 200x100 pixels .* above the limit"):
        store.add_bytes(_jpeg_with_orientation(200, 100, 1), "big.jpg")
    with pytest.raises(ImageReadError, match=r"broken\.png: not a readable image"):
        store.add_bytes(b"\x89PNG\r\n\x1a\nnot really", "broken.png")


def test_store_evicts_least_recently_used_within_budget():
    calls = []

    def describe(image):
        calls.append(image.shape)
        return _dmap(np.ones((4, 8, 8), np.float32) / 2, image.shape[:2])

    one = 32 * 32 * 3
    store = ImageStore(describe, max_bytes=2 * one + 100)
    a = store.add_array(np.zeros((32, 32, 3), np.uint8), "a")
    b = store.add_array(np.ones((32, 32, 3), np.uint8), "b")
    store.get(a.id)  # a is now the most recent
    c = store.add_array(np.full((32, 32, 3), 2, np.uint8), "c")
    assert store.get(a.id) is a and store.get(c.id) is c
    with pytest.raises(KeyError):
        store.get(b.id)
    assert store.nbytes <= store.max_bytes
    store.descriptors(c.id)
    store.descriptors(c.id)
    assert calls == [(32, 32, 3)]  # computed once per image
