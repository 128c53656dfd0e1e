"""The app's HTTP layer: Flask routes over :mod:`explore`, :mod:`browse`, :mod:`results`, :mod:`annotate`.

Every error becomes a JSON ``{"error": message}`` with a 4xx/5xx status that the page shows;
no stack trace reaches the browser. Files are served only from the folders given on the
command line, through :func:`matseg.app.roots.resolve_inside`. Requests whose ``Host`` is not
the address the server was started on are refused (DNS-rebinding protection for a server on
127.0.0.1).
"""

from __future__ import annotations

import base64
import logging
import mimetypes
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from flask import Flask, Response, abort, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from matseg.app import annotate, browse, results
from matseg.app.explore import ImageStore, npy_bytes, query_map, quantize_map, segment_legend, upsample
from matseg.app.roots import OutsideRoot, ServedRoot, make_roots, resolve_inside
from matseg.io.images import ImageReadError, encode_image, to_uint8

logger = logging.getLogger(__name__)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass
class AppConfig:
    """What ``matseg app`` was started with (see ``matseg app --help``)."""

    weights: Path | None = None
    data: list[Path] = field(default_factory=list)
    results: list[Path] = field(default_factory=list)
    bench: list[Path] = field(default_factory=list)
    device: str = "auto"
    max_side: int | None = None
    precision: str = "fp32"
    tta: bool = False
    max_upload_mb: float = 50.0
    max_megapixels: float = 100.0
    cache_mb: float = 1024.0
    allowed_hosts: tuple[str, ...] = LOCAL_HOSTS


class _Model:
    """The descriptor net, loaded on first use (the pages that do not need it start at once)."""

    def __init__(self, config: AppConfig):
        self.config = config
        self._predictor = None

    @property
    def predictor(self):
        if self._predictor is None:
            from matseg.net.infer import Predictor, tta_options

            cfg = self.config
            self._predictor = Predictor(cfg.weights, device=cfg.device, max_side=cfg.max_side, precision=cfg.precision,
                                        **tta_options(cfg.tta))  # fmt: skip
        return self._predictor

    def describe(self, image):
        return self.predictor.describe(image)


def _error(status: int, message: str):
    response = jsonify({"error": message})
    response.status_code = status
    return response


def _image_response(data: bytes, ext: str, download: str | None = None) -> Response:
    mime = {".jpg": "image/jpeg", ".png": "image/png", ".npy": "application/octet-stream",
            ".json": "application/json"}[ext]  # fmt: skip
    response = Response(data, mimetype=mime)
    response.headers["Cache-Control"] = "no-store"
    if download:
        response.headers["Content-Disposition"] = f'attachment; filename="{download}"'
    return response


def _points(value, what: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{what} must be a list of [x, y] points")
    return value


def _points_query(text: str | None) -> list[list[float]]:
    """``"x,y;x,y"`` (download links) -> ``[[x, y], ...]``."""
    if not text:
        return []
    try:
        return [[float(v) for v in part.split(",")] for part in text.split(";") if part]
    except ValueError:
        raise ValueError(f"points must be x,y;x,y..., got {text!r}") from None


def create_app(config: AppConfig) -> Flask:
    """The Flask application of ``matseg app`` (tests drive it with ``app.test_client()``)."""
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = int(config.max_upload_mb * 1024 * 1024)
    model = _Model(config)
    store = ImageStore(model.describe, int(config.cache_mb * 1024 * 1024), int(config.max_megapixels * 1e6))
    roots: dict[str, ServedRoot] = {
        r.id: r
        for r in [*make_roots("data", config.data), *make_roots("results", config.results), *make_roots("bench", config.bench)]
    }
    kinds: dict[str, str] = {}
    items: dict[str, list[str]] = {}
    app.extensions["matseg"] = {"store": store, "model": model, "roots": roots}

    def root_of(root_id: str, kind: str) -> ServedRoot:
        root = roots.get(root_id)
        if root is None or root.kind != kind:
            abort(404, description=f"no {kind} folder {root_id!r} (the app serves only the folders it was started with)")
        return root

    def data_kind(root: ServedRoot) -> str:
        if root.id not in kinds:
            kinds[root.id] = browse.folder_kind(root.path)
        return kinds[root.id]

    # ------------------------------------------------------------------ errors and guards

    @app.before_request
    def _check_host():
        host = _hostname(request.host or "")
        if "*" not in config.allowed_hosts and host not in config.allowed_hosts:
            return _error(403, f"host {request.host!r} not allowed (start matseg app with --host to serve other names)")

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(_exc):
        return _error(413, f"upload larger than the limit of {config.max_upload_mb:g} MB (matseg app --max-upload-mb)")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        return _error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(OutsideRoot)
    def _outside(exc):
        return _error(403, str(exc))

    @app.errorhandler(FileNotFoundError)
    def _missing(exc):
        return _error(404, str(exc))

    @app.errorhandler(ValueError)  # ImageReadError, format errors, bad parameters
    def _bad(exc):
        return _error(400, str(exc))

    @app.errorhandler(Exception)
    def _unexpected(exc):
        logger.exception("request failed")
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")

    @app.after_request
    def _headers(response: Response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    # ------------------------------------------------------------------ the page

    static = resources.files("matseg.app") / "static"

    @app.get("/")
    def index():
        return Response((static / "index.html").read_bytes(), mimetype="text/html")

    @app.get("/static/<name>")
    def static_file(name: str):
        files = {p.name: p for p in static.iterdir() if p.is_file()}
        if name not in files:
            abort(404, description=f"no static file {name!r}")
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return Response(files[name].read_bytes(), mimetype=mime)

    @app.get("/api/info")
    def info():
        from matseg import __version__

        weights = str(config.weights) if config.weights else None
        model_name = None
        if weights is None:
            try:
                from matseg.models import model_info

                model_name = model_info()["name"]
            except Exception as exc:  # shown in the page; the other tabs still work
                model_name = f"unavailable ({exc})"
        return jsonify({
            "version": __version__,
            "model": model_name or Path(weights).name,
            "weights": weights,
            "limits": {"upload_mb": config.max_upload_mb, "megapixels": config.max_megapixels},
            "examples": [name for name, _ in _examples()],
            "data": [{"id": r.id, "label": r.label, "path": str(r.path)} for r in roots.values() if r.kind == "data"],
            "results": [{"id": r.id, "label": r.label, "path": str(r.path)} for r in roots.values() if r.kind == "results"],
            "bench": [{"id": r.id, "label": r.label, "path": str(r.path)} for r in roots.values() if r.kind == "bench"],
        })  # fmt: skip

    # ------------------------------------------------------------------ explore

    def _image_json(item) -> dict:
        h, w = item.size
        return {"id": item.id, "name": item.name, "width": w, "height": h}

    @app.post("/api/images")
    def upload():
        file = request.files.get("file")
        if file is None:
            raise ValueError("no file in the upload (form field 'file')")
        return jsonify(_image_json(store.add_bytes(file.read(), file.filename or "upload")))

    @app.post("/api/examples/<int:index>")
    def example(index: int):
        examples = _examples()
        if not 0 <= index < len(examples):
            abort(404, description=f"no example {index} (there are {len(examples)})")
        name, loader = examples[index]
        return jsonify(_image_json(store.add_array(loader(), name)))

    def _loaded(image_id: str):
        try:
            return store.get(image_id)
        except KeyError:
            abort(404, description="image not loaded (the server restarted or dropped it from its cache): open it again")

    @app.get("/api/images/<image_id>/display.jpg")
    def display(image_id: str):
        return _image_response(_loaded(image_id).display_jpeg(), ".jpg")

    @app.post("/api/images/<image_id>/describe")
    def describe(image_id: str):
        _loaded(image_id)
        t0 = time.perf_counter()
        dmap = store.descriptors(image_id)
        return jsonify({"grid": list(dmap.descriptors.shape[-2:]), "seconds": time.perf_counter() - t0})

    @app.post("/api/images/<image_id>/map")
    def similarity(image_id: str):
        t0 = time.perf_counter()
        _loaded(image_id)
        body = request.get_json(silent=True) or {}
        dmap = store.descriptors(image_id)
        values = query_map(dmap, _points(body.get("positives"), "positives"), _points(body.get("negatives"), "negatives"),
                           float(body.get("radius") or 0.0))  # fmt: skip
        h, w = values.shape
        return jsonify({"width": w, "height": h, "data": base64.b64encode(quantize_map(values)).decode("ascii"),
                        "seconds": time.perf_counter() - t0})  # fmt: skip

    @app.post("/api/images/<image_id>/segment")
    def segment(image_id: str):
        from matseg.tools.show import PALETTE

        t0 = time.perf_counter()
        _loaded(image_id)
        body = request.get_json(silent=True) or {}
        labels = _segment_labels(store.descriptors(image_id), body.get("k"), body.get("max_k", 8))
        h, w = labels.shape
        return jsonify({"width": w, "height": h, "data": base64.b64encode(labels.astype("uint8").tobytes()).decode("ascii"),
                        "legend": segment_legend(labels, PALETTE), "seconds": time.perf_counter() - t0})  # fmt: skip

    @app.get("/api/images/<image_id>/download/<kind>")
    def download(image_id: str, kind: str):
        import numpy as np

        item = _loaded(image_id)
        stem = Path(item.name).stem or "image"
        dmap = store.descriptors(image_id)
        args = request.args
        if kind == "segmentation.png":
            from matseg.net.infer import colorize_labels

            scores = dmap.material_scores(_optional_int(args.get("k")), 8, 0)
            labels = upsample(scores, item.size).argmax(0)
            return _image_response(encode_image(colorize_labels(labels), ".png"), ".png", f"{stem}_segmentation.png")
        values = upsample(query_map(dmap, _points_query(args.get("pos")), _points_query(args.get("neg")),
                                    float(args.get("radius") or 0.0)), item.size)  # fmt: skip
        if kind == "map.npy":
            return _image_response(npy_bytes(values.astype(np.float32)), ".npy", f"{stem}_map.npy")
        if kind == "map.png":
            return _image_response(encode_image(to_uint8(np.clip(values, 0, 1)), ".png"), ".png", f"{stem}_map.png")
        if kind == "mask.png":
            threshold = float(args.get("threshold", 0.5))
            mask = (values >= threshold).astype(np.uint8) * 255
            return _image_response(encode_image(mask, ".png"), ".png", f"{stem}_mask.png")
        abort(404, description=f"unknown download {kind!r}: map.png, map.npy, mask.png or segmentation.png")

    # ------------------------------------------------------------------ browse

    @app.get("/api/data/<root_id>")
    def data_items(root_id: str):
        root = root_of(root_id, "data")
        kind = data_kind(root)
        if root_id not in items or request.args.get("rescan"):
            items[root_id] = browse.list_items(root.path, kind)
        page, per_page = _page_args()
        names = items[root_id]
        return jsonify({"id": root_id, "label": root.label, "path": str(root.path), "kind": kind, "total": len(names),
                        "page": page, "per_page": per_page,
                        "items": names[page * per_page : (page + 1) * per_page]})  # fmt: skip

    @app.get("/api/data/<root_id>/thumb")
    def data_thumb(root_id: str):
        root = root_of(root_id, "data")
        try:
            side = min(2048, max(32, int(request.args.get("side", browse.THUMB_SIDE))))
        except ValueError:
            raise ValueError("side must be a whole number of pixels") from None
        return _image_response(browse.thumbnail(root.path, data_kind(root), request.args.get("item", ""), side), ".jpg")

    @app.get("/api/data/<root_id>/sample")
    def data_sample(root_id: str):
        root = root_of(root_id, "data")
        if data_kind(root) != "dataset":
            abort(404, description=f"{root.path} is a {data_kind(root)} folder, not a dataset")
        return jsonify(browse.sample_details(root.path, request.args.get("item", "")))

    @app.get("/api/data/<root_id>/layer/<layer>")
    def data_layer(root_id: str, layer: str):
        root = root_of(root_id, "data")
        kind = data_kind(root)
        item = request.args.get("item", "")
        if kind == "pbr" and layer == "card":
            return _image_response(browse.pbr_card(root.path, item), ".png")
        data = browse.sample_layer(root.path, item, layer)
        return _image_response(data, ".jpg" if layer == "image" else ".png")

    # ------------------------------------------------------------------ results

    @app.get("/api/results/<root_id>")
    def results_list(root_id: str):
        root = root_of(root_id, "results")
        folders = results.find_eval_folders(root.path)
        return jsonify({"id": root_id, "label": root.label,
                        "runs": [results.summary(f, root.path) for f in folders]})  # fmt: skip

    # ------------------------------------------------------------------ annotate

    @app.get("/api/bench/<root_id>")
    def bench_list(root_id: str):
        root = root_of(root_id, "bench")
        return jsonify({"id": root_id, "label": root.label, "images": annotate.list_benchmark(root.path)})

    @app.get("/api/bench/<root_id>/annotation/<stem>")
    def bench_load(root_id: str, stem: str):
        return jsonify(annotate.load_annotation(root_of(root_id, "bench").path, stem))

    @app.put("/api/bench/<root_id>/annotation/<stem>")
    def bench_save(root_id: str, stem: str):
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object with 'groups' and 'relations'")
        saved = annotate.save_annotation(root_of(root_id, "bench").path, stem, body.get("groups"), body.get("relations") or [])
        return jsonify(saved)

    @app.get("/api/bench/<root_id>/display/<stem>")
    def bench_display(root_id: str, stem: str):
        root = root_of(root_id, "bench")
        entry = annotate.load_annotation(root.path, stem)
        item = store.add_bytes(resolve_inside(root.path, f"images/{entry['image']}").read_bytes(), entry["image"])
        return _image_response(item.display_jpeg(), ".jpg")

    # ------------------------------------------------------------------ raw files (panels)

    @app.get("/files/<root_id>/<path:relative>")
    def raw_file(root_id: str, relative: str):
        root = roots.get(root_id)
        if root is None:
            abort(404, description=f"no served folder {root_id!r}")
        path = resolve_inside(root.path, relative)
        if not path.is_file():
            abort(404, description=f"{relative}: not a file")
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return Response(path.read_bytes(), mimetype=mime)

    return app


def _hostname(host: str) -> str:
    """``"127.0.0.1:8765"`` -> ``"127.0.0.1"``, ``"[::1]:8765"`` -> ``"[::1]"``."""
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0]


def _optional_int(value) -> int | None:
    if value in (None, "", "auto"):
        return None
    try:
        k = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"k must be a whole number or 'auto', got {value!r}") from None
    if not 1 <= k <= 20:
        raise ValueError(f"k must be between 1 and 20, got {k}")
    return k


def _segment_labels(dmap, k, max_k):
    max_k = _optional_int(max_k) or 8
    return dmap.material_scores(_optional_int(k), max_k, 0).argmax(0)


def _page_args() -> tuple[int, int]:
    try:
        page = max(0, int(request.args.get("page", 0)))
        per_page = min(200, max(1, int(request.args.get("per_page", 48))))
    except ValueError:
        raise ValueError("page and per_page must be whole numbers") from None
    return page, per_page


def _examples() -> list[tuple[str, object]]:
    """The built-in example photos (scikit-image's, as ``matseg``'s other default inputs)."""
    from matseg.io.sources import default_photos

    source = default_photos()
    return [(entry.path.name, (lambda i=i: source.get(i))) for i, entry in enumerate(source.entries)]
