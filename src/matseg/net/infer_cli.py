"""``matseg predict`` (point -> similarity map) and ``matseg segment`` (full material segmentation)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matseg
from matseg import exit_codes
from matseg.cli_common import UsageError
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
    p.add_argument("images", nargs="+", type=Path, help="image files (EXIF orientation applied)")
    p.add_argument("--weights", type=Path, default=None,
                   help="trained net (.safetensors from `matseg train` or `matseg convert`, or the authors' Defult.torch); default: the model that ships with matseg")  # fmt: skip
    p.add_argument("-o", "--out", type=Path, default=None, help="output folder (default: out/<command>)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    p.add_argument("--max-side", type=int, default=None,
                   help="longer side the net sees; larger images are resized (default: the model's own, 384 px for the shipped one; 1024 for a checkpoint that names none; 700 for the authors' net)")  # fmt: skip
    add_precision_arg(p)
    add_tta_arg(p)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="similarity map of a point (or several) with a trained net",
        description="For each point, the cosine similarity of every pixel's material descriptor to the "
        "point's (mean over a disc of --radius pixels). Writes <image>_p<i>.npy (float32, -1..1, original "
        "size), .png (similarity clipped to 0..1 as 8-bit) and _overlay.png.",
    )  # fmt: skip
    _common(p)
    p.add_argument("--point", dest="points", type=_point, action="append", required=True, metavar="X,Y",
                   help="point in original image pixels (repeatable)")  # fmt: skip
    p.add_argument("--radius", type=float, default=0.0, help="disc radius in pixels around each point")
    p.set_defaults(handler=run_predict)

    s = subparsers.add_parser(
        "segment", help="full material segmentation with a trained net",
        description="Clusters the per-pixel descriptors (spherical k-means; K given with -k or chosen by "
        "silhouette in 2..--max-materials) and writes <image>_labels.png (ids), _colour.png and _overlay.png.",
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


def _for_each_image(args, default_out: str, work) -> int:
    """Load the net, then ``work(path, image, out)`` for every readable image; 1 if any image failed."""
    from matseg.cli_common import prepare_output_dir
    from matseg.io.atomic import write_json_atomic
    from matseg.io.images import ImageReadError, read_image_rgb

    predictor = _load(args)
    out = prepare_output_dir(args.out or Path(default_out))
    # What produced the files: the model (version and sha256, or file and sha256) and the options.
    options = {k: v for k, v in vars(args).items() if k not in ("handler", "images", "weights", "out", "verbose")}
    options.update(predictor.options)  # the effective values (the default max_side depends on the net)
    write_json_atomic(out / "run.json", {"command": default_out.rsplit("/", 1)[-1], "model": predictor.source,
                                         "images": [str(p) for p in args.images], "options": options,
                                         "matseg_version": matseg.__version__})  # fmt: skip
    failures = 0
    for path in args.images:
        try:
            image = read_image_rgb(path)
        except ImageReadError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failures += 1
            continue
        try:
            failures += not work(predictor, path, image, out)
        except ValueError as exc:  # e.g. an image too thin for the net after --max-side
            print(f"error: {path}: {exc}", file=sys.stderr)
            failures += 1
    return exit_codes.FAILED if failures else exit_codes.OK


def run_predict(args: argparse.Namespace) -> int:
    from matseg.net.infer import save_similarity_outputs

    def work(predictor, path, image, out) -> bool:
        h, w = image.shape[:2]
        bad = [p for p in args.points if not (0 <= p[0] < w and 0 <= p[1] < h)]
        if bad:
            print(f"error: {path}: point(s) {bad} outside the image ({w}x{h})", file=sys.stderr)
            return False
        sims = predictor.similarity_maps(image, args.points, args.radius)
        for i, (sim, point) in enumerate(zip(sims, args.points)):
            written = save_similarity_outputs(out, f"{path.stem}_p{i}", image, sim, point)
            print(f"{path}: point {point} -> {written[0]}")
        return True

    return _for_each_image(args, "out/predict", work)


def run_segment(args: argparse.Namespace) -> int:
    import cv2

    from matseg.io.images import write_image
    from matseg.net.infer import colorize_labels

    def work(predictor, path, image, out) -> bool:
        labels = predictor.segment(image, args.materials, args.max_materials, args.seed)
        colour = colorize_labels(labels)
        write_image(out / f"{path.stem}_labels.png", labels.astype("uint8"))
        write_image(out / f"{path.stem}_colour.png", colour)
        write_image(out / f"{path.stem}_overlay.png", cv2.addWeighted(image, 0.5, colour, 0.5, 0))
        print(f"{path}: {int(labels.max()) + 1} materials -> {out / (path.stem + '_colour.png')}")
        return True

    return _for_each_image(args, "out/segment", work)
