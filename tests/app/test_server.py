"""The HTTP API of ``matseg app`` through Flask's test client, with the shipped model."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flask")
pytest.importorskip("torch")

from matseg.app.server import AppConfig, create_app  # noqa: E402
from matseg.io.images import encode_image  # noqa: E402
from tests.app.conftest import two_texture_photo  # noqa: E402
from tests.conftest import HEIC_PHOTO, needs_heif_plugin, shared_dir  # noqa: E402


@pytest.fixture(scope="module")
def photo_png() -> bytes:
    return encode_image(two_texture_photo(), ".png")


@pytest.fixture
def client(tmp_path: Path, bench_copy: Path, eval_folder: Path):
    data = tmp_path / "data"
    data.mkdir()
    os.symlink(shared_dir("matseg_train_sample") / "0", data / "0")  # a folder link pointing out: refused too
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", data / "leak.txt")  # a link pointing out: refused
    app = create_app(AppConfig(data=[shared_dir("matseg_train_sample"), data], results=[eval_folder], bench=[bench_copy]))
    return app.test_client()


def _map(response) -> np.ndarray:
    j = response.get_json()
    return np.frombuffer(base64.b64decode(j["data"]), np.uint8).reshape(j["height"], j["width"]) / 127.5 - 1


def test_click_map_follows_the_clicked_material(client, photo_png: bytes):
    r = client.post("/api/images", data={"file": (io.BytesIO(photo_png), "two.png")})
    assert r.status_code == 200, r.get_json()
    image = r.get_json()
    assert (image["width"], image["height"]) == (512, 256)
    left = _map(client.post(f"/api/images/{image['id']}/map", json={"positives": [[128, 128]], "radius": 5}))
    right = _map(client.post(f"/api/images/{image['id']}/map", json={"positives": [[384, 128]], "radius": 5}))
    half = left.shape[1] // 2
    assert left[:, :half].mean() > left[:, half:].mean() + 0.2
    assert right[:, half:].mean() > right[:, :half].mean() + 0.2
    # A negative point on the other material lowers the map there and nowhere it was already higher.
    pushed = _map(client.post(f"/api/images/{image['id']}/map", json={"positives": [[128, 128]], "negatives": [[384, 128]],
                                                                     "radius": 5}))
    assert np.all(pushed <= left + 1 / 127.5) and pushed[:, half:].mean() < left[:, half:].mean()


def test_downloads_are_full_resolution(client, photo_png: bytes):
    image = client.post("/api/images", data={"file": (io.BytesIO(photo_png), "two.png")}).get_json()
    base = f"/api/images/{image['id']}/download"
    r = client.get(f"{base}/map.npy?pos=128,128&radius=5")
    assert r.status_code == 200 and "two_map.npy" in r.headers["Content-Disposition"]
    values = np.load(io.BytesIO(r.data))
    assert values.shape == (256, 512) and values.dtype == np.float32 and -1 <= values.min() <= values.max() <= 1
    import cv2

    mask = cv2.imdecode(np.frombuffer(client.get(f"{base}/mask.png?pos=128,128&radius=5&threshold=0.8").data, np.uint8), 0)
    assert mask.shape == (256, 512) and set(np.unique(mask)) <= {0, 255}
    assert np.array_equal(mask == 255, values >= 0.8)
    seg = cv2.imdecode(np.frombuffer(client.get(f"{base}/segmentation.png?k=2").data, np.uint8), 1)
    assert seg.shape == (256, 512, 3) and len(np.unique(seg.reshape(-1, 3), axis=0)) == 2
    r = client.post(f"/api/images/{image['id']}/segment", json={"k": 2})
    assert sum(entry["fraction"] for entry in r.get_json()["legend"]) == pytest.approx(1.0)
    assert client.get(f"{base}/map.png").status_code == 400  # no point: a message, not a crash


def test_bad_uploads_get_messages(tmp_path: Path, photo_png: bytes):
    client = create_app(AppConfig(max_upload_mb=0.01)).test_client()
    r = client.post("/api/images", data={"file": (io.BytesIO(photo_png), "two.png")})
    assert r.status_code == 413 and "limit of 0.01 MB" in r.get_json()["error"]
    r = client.post("/api/images", data={"file": (io.BytesIO(b"GIF89a broken"), "broken.gif")})
    assert r.status_code == 400 and r.get_json()["error"].startswith("broken.gif: not a readable image")
    r = create_app(AppConfig(max_megapixels=0.1)).test_client().post(
        "/api/images", data={"file": (io.BytesIO(photo_png), "two.png")})  # fmt: skip
    assert r.status_code == 400 and "above the limit of 0.1 Mpx" in r.get_json()["error"]
    r = client.post("/api/images/0123456789abcdef/map", json={"positives": [[1, 1]]})
    assert r.status_code == 404 and "open it again" in r.get_json()["error"]


def test_a_phone_photo_uploads_and_displays_upright():
    """A HEIC upload (tests/io/data, EXIF orientation 6) is decoded upright and displayed as JPEG."""
    needs_heif_plugin()
    import cv2

    client = create_app(AppConfig()).test_client()
    r = client.post("/api/images", data={"file": (io.BytesIO(HEIC_PHOTO.read_bytes()), "IMG_0001.HEIC")})
    assert r.status_code == 200, r.get_json()
    image = r.get_json()
    assert (image["width"], image["height"]) == (32, 48) and image["name"] == "IMG_0001.HEIC"
    shown = cv2.imdecode(np.frombuffer(client.get(f"/api/images/{image['id']}/display.jpg").data, np.uint8), cv2.IMREAD_COLOR)
    assert shown.shape == (48, 32, 3)
    assert shown[4:12, 8:24, 2].mean() > 150 and shown[36:44, 8:24, 0].mean() > 150  # red band on top, blue at the bottom (BGR)


@pytest.mark.parametrize(
    "url",
    [
        "/files/data1/../secret.txt",
        "/files/data1/%2e%2e/secret.txt",
        "/files/data1/leak.txt",
        "/api/data/data0/sample?item=../../benchmark_sample",
        "/api/data/data0/thumb?item=/etc/passwd",
        "/files/results0/../../secret.txt",
    ],
)
def test_traversal_refused(client, url: str):
    r = client.get(url)
    assert r.status_code in (403, 404)
    assert b"secret" not in r.data.replace(b"secret.txt", b"")


def test_served_roots_only(client):
    assert client.get("/files/data0/0/mask001.png").status_code == 200
    assert client.get("/files/data1/0/mask001.png").status_code == 403  # through a link that points out
    assert client.get("/api/data/results0").status_code == 404  # a results root is not a data root
    assert client.get("/api/bench/bench7").status_code == 404
    assert client.get("/api/info", headers={"Host": "attacker.example:8765"}).status_code == 403


def test_browse_results_annotate_endpoints(client):
    r = client.get("/api/data/data0?per_page=2&page=1").get_json()
    assert r["kind"] == "dataset" and r["items"] == ["1/1", "2"]
    assert client.get("/api/data/data0/sample?item=1/1").get_json()["check"]["ok"] is True
    runs = client.get("/api/results/results0").get_json()["runs"]
    assert [run["name"] for run in runs] == ["colour"]
    assert client.get(f"/files/results0/{runs[0]['panels'][0]}").status_code == 200
    stem = "20230913_185027"
    doc = client.get(f"/api/bench/bench0/annotation/{stem}").get_json()
    r = client.put(f"/api/bench/bench0/annotation/{stem}", json={"groups": doc["groups"], "relations": [{"kind": "(", "keys": ["1", "2"]}]})
    assert r.get_json() == {"points": 37, "groups": 2, "files": ["data.json", "group_relations.txt"]}
    r = client.put(f"/api/bench/bench0/annotation/{stem}", json={"groups": {"1": [[1e6, 0, 5]]}, "relations": []})
    assert r.status_code == 400 and "outside the upright image" in r.get_json()["error"]


def test_tta_option_reaches_the_model():
    from matseg.app.server import _Model
    from matseg.net.infer import TTA_PRESET

    plain, tta = _Model(AppConfig(device="cpu")).predictor, _Model(AppConfig(device="cpu", tta=True)).predictor
    assert plain.extra_sides == plain.extra_scales == () and plain.flip is False
    assert tta.extra_scales == TTA_PRESET["extra_scales"] and tta.flip is TTA_PRESET["flip"]
