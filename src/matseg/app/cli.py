"""``matseg app``: the local web app (explore photos, browse datasets and results, annotate)."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from matseg.cli_common import UsageError
from matseg.net.infer_cli import add_precision_arg, add_tta_arg

APP_HINT = "matseg app needs Flask and PyTorch: pip install 'matseg[app,torch]'"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "app", help="local web app: click a photo to see its materials; browse datasets and results; annotate",
        description="Starts a web server on your machine and prints its URL. Explore (the default page): open or "
        "drop a photo, click a point to see where else its material is; shift-click adds points of the same "
        "material, alt-click adds negative points; segment the whole photo; download maps, masks and points. "
        "Datasets (--data): MatSeg-format datasets, PBR folders and texture folders. Results (--results): "
        "`matseg eval` output folders. Annotate (--bench): point annotations in the MatSeg benchmark layout "
        "(images/ + data/<name>/data.json + group_relations.txt). Only files under these folders are served.",
    )  # fmt: skip
    p.add_argument("--weights", type=Path, default=None, help="trained net (.safetensors, or the authors' Defult.torch); default: the shipped model")
    p.add_argument("--data", type=Path, action="append", default=[], metavar="DIR",
                   help="dataset, PBR or texture folder to browse (repeatable)")  # fmt: skip
    p.add_argument("--results", type=Path, action="append", default=[], metavar="DIR",
                   help="`matseg eval` output folder, or a folder of them (repeatable)")  # fmt: skip
    p.add_argument("--bench", type=Path, action="append", default=[], metavar="DIR",
                   help="benchmark folder to annotate: images/ (the photos) and data/ (created if missing) (repeatable)")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    p.add_argument("--max-side", type=int, default=None, help="longer side the net sees (default: the model's own, 384 px for the shipped one; 1024 for a checkpoint that names none; 700 for the authors' net)")
    add_precision_arg(p)
    add_tta_arg(p)
    p.add_argument("--max-upload-mb", type=float, default=50.0, help="largest accepted upload (default 50 MB)")
    p.add_argument("--max-megapixels", type=float, default=100.0, help="largest accepted image (default 100 Mpx)")
    p.add_argument("--cache-mb", type=float, default=1024.0, help="memory for images and descriptors (default 1024 MB)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        from werkzeug.serving import make_server

        from matseg.app.server import LOCAL_HOSTS, AppConfig, create_app
    except ImportError:
        raise UsageError(APP_HINT) from None
    if args.weights is not None and not args.weights.is_file():
        raise UsageError(f"{args.weights}: weights file not found")
    for flag, folders in (("--data", args.data), ("--results", args.results), ("--bench", args.bench)):
        for folder in folders:
            if not folder.is_dir():
                raise UsageError(f"{flag} {folder}: not a folder")
    for flag in ("max_upload_mb", "max_megapixels", "cache_mb"):
        if getattr(args, flag) <= 0:
            raise UsageError(f"--{flag.replace('_', '-')} must be > 0")
    local = args.host in LOCAL_HOSTS
    if not local:
        print(f"warning: serving on {args.host}: anyone who can reach this machine can use the app and read the "
              "folders given on the command line", file=sys.stderr)  # fmt: skip
    config = AppConfig(weights=args.weights, data=args.data, results=args.results, bench=args.bench,
                       device=args.device, max_side=args.max_side, precision=args.precision, tta=args.tta, max_upload_mb=args.max_upload_mb,
                       max_megapixels=args.max_megapixels, cache_mb=args.cache_mb,
                       allowed_hosts=LOCAL_HOSTS if local else ("*",))  # fmt: skip
    app = create_app(config)
    if not args.verbose:  # werkzeug logs every request at INFO; keep the terminal for the URL and errors
        import logging

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    try:
        server = make_server(args.host, args.port, app, threaded=True)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); try --port 0") from None
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    url = f"http://{'[' + host + ']' if ':' in host else host}:{server.server_port}/"
    print(f"matseg app: {url}  (Ctrl+C to stop)", flush=True)
    if args.open:
        import webbrowser

        threading.Timer(0.5, webbrowser.open, [url]).start()
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
