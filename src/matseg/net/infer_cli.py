"""``matseg predict`` (point -> similarity map) and ``matseg segment`` (full material segmentation)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matseg
from matseg.cli_common import UsageError, add_runner_args
from matseg.net import PRECISIONS

TORCH_HINT = "this command needs PyTorch: pip install 'matseg[torch]'"


def _point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a point is X,Y in pixels (e.g. 120,340), got {text!r}") from None
    return x, y


def add_precision_arg(p: argparse.ArgumentParser) -> None:
    """``--precision`` of every command that runs a net for inference."""
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32 (default); bf16/fp16 autocast; auto: bf16 where the CPU has native bf16 or on CUDA")  # fmt: skip


def add_tta_arg(p: argparse.ArgumentParser) -> None:
    """``--tta`` of every command that runs a net for inference."""
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: the net also sees the image at 0.75 and 0.5 of --max-side and mirrored, "
                   "descriptors averaged (more accurate on the dev set, about 6x slower; docs/model-card.md)")  # fmt: skip


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGES",
                   help="photo files and/or folders (searched recursively; EXIF orientation applied); outputs of a photo "
                   "in a sub-folder go to the same sub-folder of --out")  # fmt: skip
    p.add_argument("--weights", type=Path, default=None,
                   help="trained net (.safetensors from `matseg train` or `matseg convert`, or the authors' Defult.torch); default: the model that ships with matseg")  # fmt: skip
    p.add_argument("-o", "--out", type=Path, default=None, help="output folder (default: out/<command>)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    p.add_argument("--max-side", type=int, default=None,
                   help="longer side the net sees; larger images are resized (default: the model's own, 384 px for the shipped one; 1024 for a checkpoint that names none; 700 for the authors' net)")  # fmt: skip
    add_precision_arg(p)
    add_tta_arg(p)
    add_runner_args(p, default_workers=1, ray=False)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="similarity map of a point (or several) with a trained net",
        description="For each point, the cosine similarity of every pixel's material descriptor to the "
        "point's (mean over a disc of --radius pixels). Writes <image>_p<i>.npy (float32, -1..1, original "
        "size), .png (similarity clipped to 0..1 as 8-bit) and _overlay.png, plus run.json (model, options) and "
        "summary.json. A rerun with the same model and options skips the photos already done.",
    )  # fmt: skip
    _common(p)
    p.add_argument("--point", dest="points", type=_point, action="append", required=True, metavar="X,Y",
                   help="point in original image pixels (repeatable)")  # fmt: skip
    p.add_argument("--radius", type=float, default=0.0, help="disc radius in pixels around each point")
    p.set_defaults(handler=run_predict)

    s = subparsers.add_parser(
        "segment", help="full material segmentation with a trained net",
        description="Clusters the per-pixel descriptors (spherical k-means; K given with -k or chosen by "
        "silhouette in 2..--max-materials) and writes <image>_labels.png (ids), _colour.png and _overlay.png, plus "
        "run.json (model, options) and summary.json. A rerun with the same model and options skips the photos already done.",
    )  # fmt: skip
    _common(s)
    s.add_argument("-k", "--materials", type=int, default=None, help="number of materials (default: automatic)")
    s.add_argument("--max-materials", type=int, default=8, help="upper bound for the automatic choice")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(handler=run_segment)


def _load(args):
    try:
        from matseg.models import ModelNotAvailable
        from matseg.net.checkpoint import CheckpointError
        from matseg.net.infer import Predictor, tta_options
    except ImportError:
        raise UsageError(TORCH_HINT) from None
    try:
        predictor = Predictor(args.weights, device=args.device, max_side=args.max_side, precision=args.precision,
                              **tta_options(args.tta))  # fmt: skip
    except (CheckpointError, ModelNotAvailable, ValueError) as exc:
        raise UsageError(str(exc)) from None
    what = predictor.source.get("model") or predictor.source.get("weights")
    print(f"model: {what} (sha256 {predictor.source['sha256'][:12]}...)", file=sys.stderr)
    return predictor


def _read_previous_run(path: Path) -> dict | None:
    """The ``run.json`` an earlier run left in the output folder, or None (absent or unreadable)."""
    from matseg.io.atomic import load_json

    try:
        previous = load_json(path, ValueError, "run.json")
    except ValueError:
        return None
    return previous if isinstance(previous, dict) else None


def _run(args, job_class, **job_args) -> int:
    """Load the net, then run ``job_class`` over the photos and folders of the command line."""
    from matseg.cli_common import close_run, prepare_output_dir, runner_options
    from matseg.io.atomic import write_json_atomic
    from matseg.io.inputs import find_inputs
    from matseg.net.infer_job import PredictorSpec

    predictor = _load(args)
    out_arg = args.out or Path("out") / job_class.name
    try:
        inputs = find_inputs(args.images, exclude=out_arg)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    out = prepare_output_dir(out_arg)
    # What produced the files: the model (version and sha256, or file and sha256) and the options.
    options = {k: v for k, v in vars(args).items() if k not in ("handler", "images", "weights", "out", "verbose", "workers", "no_progress")}
    options.update(predictor.options)  # the effective values (the default max_side depends on the net)
    run = {"command": job_class.name, "model": predictor.source, "images": [str(p) for p in args.images], "options": options,
           "matseg_version": matseg.__version__}  # fmt: skip
    previous = _read_previous_run(out / "run.json")
    # A rerun with the same model and options skips the photos whose files are all there;
    # other settings recompute (and overwrite) every photo.
    resume = previous is not None and all(previous.get(k) == _json_ready(run[k]) for k in ("command", "model", "options"))
    write_json_atomic(out / "run.json", run)
    spec = PredictorSpec(str(args.weights) if args.weights else None, args.device, args.max_side, args.precision, args.tta)
    job = job_class(spec, out, inputs, resume=resume, predictor=predictor, **job_args)
    print(f"{job_class.name}: {len(inputs)} photo{'s' if len(inputs) != 1 else ''} -> {out}", file=sys.stderr)
    from matseg.runner import run_job

    summary = run_job(job, runner_options(args, job_class.name))
    return close_run(out, summary, {"model": predictor.source})


def _json_ready(value):
    """``value`` as ``write_json_atomic`` stores it (tuples become lists), for comparing with a saved run."""
    import json

    from matseg.io.atomic import json_bytes

    return json.loads(json_bytes(value))


def run_predict(args: argparse.Namespace) -> int:
    from matseg.net.infer_job import PredictJob

    return _run(args, PredictJob, points=args.points, radius=args.radius)


def run_segment(args: argparse.Namespace) -> int:
    from matseg.net.infer_job import SegmentJob

    return _run(args, SegmentJob, materials=args.materials, max_materials=args.max_materials, seed=args.seed)
