"""``matseg eval``: the MatSeg benchmark (triplet metric) and mask datasets (IoU at the optimal threshold)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from matseg import exit_codes
from matseg.cli_common import (
    UsageError,
    add_config_args,
    add_runner_args,
    close_run,
    open_run,
    print_config_requested,
    resolve_config,
    runner_options,
)

BENCH_DESCRIPTION = """\
Evaluate a predictor on the MatSeg point-annotated benchmark (paper §4.1): for every anchor
point and every two other points, does the predictor rank them like the ground truth (same
material > partially similar > unrelated)? Reports triplet accuracy and top-1 per point and per
material for all triplets, soft (partial-similarity) triplets and hard (relations ignored), in the
paper's pooled form and the reference evaluator's per-pair form.
ROOT holds images/ and data/<stem>/data.json|data.pkl [+ group_relations.txt].
Output (-o): results.json, results.csv, images/<name>.json per image, panels/<name>.png
(similarity maps for the first --panel-images images), config.yaml, predictor.json, summary.json.
A rerun into the same folder skips images already evaluated; it is refused when the predictor's
parameters differ (e.g. another model's sha256 behind the same arguments)."""

MASKS_DESCRIPTION = """\
Evaluate a predictor on a dataset of ground-truth segments (paper §4.2): for each segment,
--num-points random points inside it, a similarity map per point, the threshold that maximises
IoU with the segment, mean IoU. ROOT layouts: images/ + labels/ (integer label maps),
MatSeg samples (RGB__RGB.jpg + mask*.png + Finished.txt, e.g. `matseg synth2d` output), or
folders holding one image and mask*.png files (docs/formats.md).
Output (-o): results.json, results.csv, images/<name>.json, panels/<name>.png, config.yaml, predictor.json,
summary.json. Reruns resume like matseg-bench's."""

# keys that may change between runs into one output folder without invalidating finished images
RUN_ONLY_KEYS = ("panel_images",)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", type=Path, metavar="ROOT", help="dataset folder")
    p.add_argument("--predictor", help="predictor name (see `matseg eval predictors`)")
    p.add_argument(
        "--predictor-arg", dest="predictor_args", action="append", default=[], metavar="KEY=VALUE",
        help="predictor option, e.g. --predictor-arg blur=19 (repeatable; value parsed as YAML)",
    )  # fmt: skip
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import a Python module that registers extra predictors (repeatable)")  # fmt: skip
    p.add_argument("-o", "--out", type=Path, help="output folder (default: out/eval/<ROOT name>/<predictor>)")
    p.add_argument("--max-size", type=int, help="longer image side after resizing, 0 = full size (default 700)")
    p.add_argument("--seed", type=int, help="master seed (default 0)")
    p.add_argument("--panel-images", type=int, help="how many images get a PNG panel (default 4)")
    p.add_argument("--force-config", action="store_true", help="allow a config that differs from the one saved in --out")
    add_config_args(p)
    add_runner_args(p)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("eval", help="evaluate predictors: MatSeg benchmark, mask datasets",
                              description="Evaluate material-similarity predictors (paper §4).")  # fmt: skip
    sub = p.add_subparsers(title="evaluations", metavar="EVAL")
    bench = sub.add_parser("matseg-bench", help="triplet metric on the MatSeg benchmark", description=BENCH_DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    _add_common(bench)
    bench.set_defaults(handler=run_benchmark)
    masks = sub.add_parser("masks", help="IoU at the optimal threshold on a mask dataset", description=MASKS_DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    _add_common(masks)
    masks.add_argument("--num-points", type=int, help="random points per segment (default 20)")
    masks.add_argument("--background-label", help="label-map value that is no segment but scored as negative, or 'none' (default 0)")
    masks.add_argument("--ignore-label", help="label-map value whose pixels are not scored, e.g. 255, or 'none' (default none)")
    masks.add_argument("--min-segment-pixels", type=int, help="skip smaller segments (default 64)")
    masks.set_defaults(handler=run_masks)
    listing = sub.add_parser("predictors", help="list the predictors and their options")
    listing.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                         help="import a module that registers extra predictors first")  # fmt: skip
    listing.set_defaults(handler=run_list)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])
    return p


def _import_modules(modules: list[str]) -> None:
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise UsageError(f"--import {module}: cannot import it ({type(exc).__name__}: {exc})") from None


def _predictor_arg(text: str) -> tuple[list[str], object]:
    import yaml

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"--predictor-arg {text!r} must look like key=value (e.g. blur=19)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise UsageError(f"--predictor-arg {text!r}: cannot parse the value ({exc})") from None
    return ["predictor", "args", key], value


def _slug(value: object) -> str:
    text = Path(value).stem if isinstance(value, str) and ("/" in value or "\\" in value or "." in value) else str(value)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def default_out_dir(root: Path, predictor: str, predictor_args: dict) -> Path:
    suffix = "".join(f"-{k}_{_slug(v)}" for k, v in sorted(predictor_args.items()))
    return Path("out") / "eval" / (root.resolve().name or "dataset") / f"{predictor}{suffix}"


def _resolve(cls, args: argparse.Namespace, extra: list) -> object:
    flags: list = [(["root"], str(args.root.expanduser().resolve()))]
    if args.predictor is not None:
        flags.append((["predictor", "name"], args.predictor))
    flags += [_predictor_arg(text) for text in args.predictor_args]
    for name in ("max_size", "seed", "panel_images"):
        if getattr(args, name) is not None:
            flags.append(([name], getattr(args, name)))
    return resolve_config(cls, args, flags + extra)


def _create_predictor(cfg):
    from matseg.evaluate.predictors import PredictorError, PredictorUnavailable, available_predictors, create_predictor

    if not cfg.predictor.name:
        raise UsageError(f"choose a predictor with --predictor NAME (available: {', '.join(available_predictors())})")
    try:
        return create_predictor(cfg.predictor.name, **cfg.predictor.args)
    except (PredictorError, PredictorUnavailable) as exc:
        raise UsageError(str(exc)) from None


def check_saved_predictor(out: Path, params: dict, force: bool = False) -> None:
    """Refuse to resume results that another model made, then record this predictor's parameters.

    The saved config holds the predictor's *arguments*; the same arguments can mean other weights
    (the shipped default model after an upgrade, a checkpoint retrained at the same path), whose
    sha256 only the predictor's *parameters* show. Only keys known to both are compared, so a
    folder written by an older matseg, whose parameters lacked a newer option, still resumes.
    ``predictor.json`` is written before any image, so an interrupted run is checked too.
    """
    import json

    from matseg.io.atomic import write_json_atomic

    current = json.loads(json.dumps(params))  # tuples -> lists, as saved
    saved = None
    for name, read in (("predictor.json", lambda d: d.get("params")), ("results.json", lambda d: d.get("predictor", {}).get("params"))):
        try:
            saved = read(json.loads((out / name).read_text()))
            break
        except FileNotFoundError:
            continue
        except (OSError, ValueError, AttributeError) as exc:
            raise UsageError(f"{out / name}: unreadable ({exc}); choose another --out") from None
    if isinstance(saved, dict) and not force:
        differ = {k: (saved[k], current[k]) for k in saved.keys() & current.keys() if saved[k] != current[k]}
        if differ:
            shown = "; ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in sorted(differ.items()))
            raise UsageError(f"{out} holds results of another predictor setup ({shown}): choose another --out "
                             "(or --force-config to mix them)")  # fmt: skip
    write_json_atomic(out / "predictor.json", {"params": current})


def _run(args: argparse.Namespace, cfg, job_cls, entries) -> int:
    from matseg.evaluate.jobs import collect_results, results_document
    from matseg.evaluate.report import benchmark_csv, format_benchmark_table, format_mask_table, mask_csv
    from matseg.io.atomic import write_json_atomic, write_text_atomic
    from matseg.runner import run_job

    predictor = _create_predictor(cfg)
    out = args.out or default_out_dir(Path(cfg.root), cfg.predictor.name, cfg.predictor.args)
    out = open_run(out, cfg, RUN_ONLY_KEYS, args.force_config)
    check_saved_predictor(out, predictor.params(), args.force_config)
    job = job_cls(cfg, out, entries, tuple(args.imports))
    job.predictor = predictor  # used as is by an inline run; worker processes build their own
    if args.workers is None:
        args.workers = 1  # one predictor (maybe a large model) per process: more only when asked
    print(f"{job.name}: {len(entries)} images of {cfg.root} with predictor {predictor.name} -> {out}", file=sys.stderr)
    exit_code = close_run(out, run_job(job, runner_options(args, job.name)))
    records, aggregate = collect_results(job)
    write_json_atomic(out / "results.json", results_document(job, records, aggregate, predictor.params()))
    label = f"{predictor.name} {predictor.params()}" if predictor.params() else predictor.name
    if job.kind == "matseg-bench":
        write_text_atomic(out / "results.csv", benchmark_csv(records, aggregate))
        table = format_benchmark_table(aggregate, f"MatSeg benchmark, predictor {label}: {len(records)} images")
    else:
        write_text_atomic(out / "results.csv", mask_csv(records, aggregate))
        table = format_mask_table(aggregate, f"{Path(cfg.root).name}, predictor {label}: {len(records)} images")
    print(table)
    print(f"results: {out / 'results.json'}, {out / 'results.csv'}; panels: {out / 'panels'}", file=sys.stderr)
    return exit_code


def _evaluate(args: argparse.Namespace, config_cls, extra: list, scan, scan_error, job_cls) -> int:
    """Shared flow: imports, config, --print-config, scan the dataset, run the job."""
    from matseg.evaluate.predictors import PredictorError, canonical_predictor_args, canonical_predictor_name

    _import_modules(args.imports)
    cfg = _resolve(config_cls, args, extra)
    if cfg.predictor.name:
        # The registered spellings (color -> colour, center -> centre): an alias shares the
        # output folder and saved config of the registered name.
        cfg.predictor.name = canonical_predictor_name(cfg.predictor.name)
        try:
            cfg.predictor.args = canonical_predictor_args(cfg.predictor.name, cfg.predictor.args)
        except PredictorError as exc:
            raise UsageError(str(exc)) from None
    if print_config_requested(args, cfg):
        return exit_codes.OK
    try:
        entries = scan(cfg.root)
    except scan_error as exc:
        raise UsageError(str(exc)) from None
    return _run(args, cfg, job_cls, entries)


def run_benchmark(args: argparse.Namespace) -> int:
    from matseg.evaluate.benchmark import BenchmarkFormatError, scan_benchmark
    from matseg.evaluate.jobs import BenchmarkEvalConfig, BenchmarkJob

    return _evaluate(args, BenchmarkEvalConfig, [], scan_benchmark, BenchmarkFormatError, BenchmarkJob)


def run_masks(args: argparse.Namespace) -> int:
    from matseg.evaluate.iou import MaskDatasetError, scan_mask_dataset
    from matseg.evaluate.jobs import MaskEvalConfig, MaskJob

    extra: list = []
    if args.num_points is not None:
        extra.append((["num_points"], args.num_points))
    if args.min_segment_pixels is not None:
        extra.append((["min_segment_pixels"], args.min_segment_pixels))
    for key in ("background_label", "ignore_label"):
        value = getattr(args, key)
        if value is None:
            continue
        text = value.strip().lower()
        if text in ("none", "null", ""):
            extra.append(([key], None))
        elif re.fullmatch(r"-?\d+", text):
            extra.append(([key], int(text)))
        else:
            raise UsageError(f"--{key.replace('_', '-')} must be an integer or 'none', got {value!r}")
    return _evaluate(args, MaskEvalConfig, extra, scan_mask_dataset, MaskDatasetError, MaskJob)


def run_list(args: argparse.Namespace) -> int:
    import inspect

    from matseg.evaluate.predictors import describe_predictors, predictor_aliases, predictor_parameters

    _import_modules(args.imports)
    for name, text in describe_predictors().items():
        params = predictor_parameters(name)
        options = ", ".join(f"{k} (required)" if v is inspect.Parameter.empty else f"{k}={v!r}" for k, v in params.items())
        aliases = "".join(f" (alias: {a})" for a in predictor_aliases(name))
        print(f"{name:10s} {text}{aliases}\n{'':10s} options: {options or 'none'}")
    return exit_codes.OK
