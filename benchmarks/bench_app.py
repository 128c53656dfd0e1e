"""Click latency of ``matseg app`` over real HTTP (issue 12: well under 100 ms on 2 cores, 1-Mpx photo).

Starts the app in a thread on a free port, uploads a 1-Mpx photo (a photo of ../shared/data or
scikit-image's astronaut, resized to about 1155x866), times the one-off descriptor computation,
then the requests a click makes: a new point, a shift-click (5 points of the same material),
an alt-click (3 positives + 2 negatives), all over HTTP with JSON decoding as the page does, and
--segments automatic segmentations of the cached descriptors.
Usage: python benchmarks/bench_app.py [--clicks 60] [--segments 5] [--threads N] [--photo FILE]
"""

from __future__ import annotations

import argparse
import base64
import json
import platform
import statistics
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import torch

from matseg.app.server import AppConfig, create_app
from matseg.io.images import encode_image, read_image_rgb


def _photo(path: str | None) -> tuple[np.ndarray, str]:
    if path:
        image, name = read_image_rgb(path), Path(path).name
    else:
        shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "natural_images"
        files = sorted(shared.glob("*.jpg")) if shared.is_dir() else []
        if files:
            image, name = read_image_rgb(files[0]), files[0].name
        else:
            import skimage.data

            image, name = skimage.data.astronaut(), "astronaut.png"
    h, w = image.shape[:2]
    s = (1_000_000 / (h * w)) ** 0.5  # about one megapixel, aspect kept
    image = cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    return image, name


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clicks", type=int, default=60)
    ap.add_argument("--segments", type=int, default=5, help="automatic segmentations to time")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--photo", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, create_app(AppConfig(device="cpu")), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    image, name = _photo(args.photo)
    h, w = image.shape[:2]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}; photo {name} at {w}x{h} "
          f"({w * h / 1e6:.2f} Mpx)")  # fmt: skip
    boundary = "matsegbench"
    payload = encode_image(image, ".png")
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + payload + f"\r\n--{boundary}--\r\n".encode()  # fmt: skip
    t0 = time.perf_counter()
    request = urllib.request.Request(f"{base}/api/images", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request) as response:
        image_id = json.loads(response.read())["id"]
    upload = time.perf_counter() - t0
    t0 = time.perf_counter()
    grid = _post(f"{base}/api/images/{image_id}/describe", {})["grid"]
    describe = time.perf_counter() - t0
    print(f"upload + decode {upload * 1000:.0f} ms; descriptors once per image {describe * 1000:.0f} ms (grid {grid[1]}x{grid[0]})")
    rng = np.random.default_rng(0)

    def points(n: int) -> list[list[float]]:
        return [[float(rng.uniform(0, w)), float(rng.uniform(0, h))] for _ in range(n)]

    kinds = {"new point": (1, 0), "shift-click, 5 points": (5, 0), "alt-click, 3 + 2 negatives": (3, 2)}
    for kind, (n_pos, n_neg) in kinds.items():
        times, server_times = [], []
        for _ in range(args.clicks):
            t0 = time.perf_counter()
            r = _post(f"{base}/api/images/{image_id}/map", {"positives": points(n_pos), "negatives": points(n_neg), "radius": 5})
            np.frombuffer(base64.b64decode(r["data"]), np.uint8)
            times.append(time.perf_counter() - t0)
            server_times.append(r["seconds"])
        times.sort()
        print(f"click ({kind}): median {statistics.median(times) * 1000:.1f} ms, p95 {times[int(0.95 * len(times))] * 1000:.1f} ms, "
              f"max {times[-1] * 1000:.1f} ms over {args.clicks} requests (in the server: median "
              f"{statistics.median(server_times) * 1000:.1f} ms)")  # fmt: skip
    segment_times = []
    for _ in range(args.segments):
        t0 = time.perf_counter()
        legend = _post(f"{base}/api/images/{image_id}/segment", {"k": None})["legend"]
        segment_times.append(time.perf_counter() - t0)
    print(f"segment (automatic K = {len(legend)}): median {statistics.median(segment_times) * 1000:.0f} ms over {args.segments} "
          f"requests ({' '.join(f'{t * 1000:.0f}' for t in segment_times)} ms)")  # fmt: skip
    server.shutdown()


if __name__ == "__main__":
    main()
