"""Pieces every batch subcommand shares: config flags, runner flags, output-folder checks."""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

from matseg import exit_codes
from matseg.config import ConfigError, diff_keys, dump_yaml, load_config, to_dict


class UsageError(Exception):
    """A problem with the command line, the configuration or an input; printed without traceback,
    exit :data:`~matseg.exit_codes.USAGE`."""


def add_config_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration")
    group.add_argument("--config", metavar="FILE.yaml", help="YAML file with parameters (see `matseg config STAGE`)")
    group.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one parameter, e.g. --set scene.p_hard=0.3 (repeatable; applied after --config)",
    )  # fmt: skip
    group.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def add_runner_args(parser: argparse.ArgumentParser, default_workers: int | None = None, ray: bool = True) -> None:
    """``-w``, ``--no-progress`` and (with ``ray``) ``--ray``/``--ray-address`` of a batch stage.

    ``default_workers`` None means one worker process per core; 1 runs the items in this process.
    """
    group = parser.add_argument_group("execution")
    default = "all cores" if default_workers is None else str(default_workers)
    if default_workers == 1:
        default += ": this process, all its threads; N > 1: N processes of one thread each"
    group.add_argument("-w", "--workers", type=int, default=default_workers, help=f"worker processes (default: {default})")
    if ray:
        group.add_argument("--ray", action="store_true", help="run on Ray (starts a local instance unless --ray-address)")
        group.add_argument("--ray-address", metavar="ADDR", help="connect to a running Ray cluster (e.g. auto or ray://host:10001)")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")


def runner_options(args: argparse.Namespace, description: str, **extra):
    from matseg.runner import RunnerOptions

    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    return RunnerOptions(
        workers=args.workers,
        ray=bool(getattr(args, "ray", False) or getattr(args, "ray_address", None)),
        ray_address=getattr(args, "ray_address", None),
        progress=not args.no_progress,
        description=description,
        **extra,
    )


def resolve_config(cls, args: argparse.Namespace, flag_overrides: list[str]):
    """Defaults < --config file < explicit flags (-n, --seed, ...) < --set overrides."""
    try:
        return load_config(cls, args.config, [*flag_overrides, *args.overrides])
    except ConfigError as exc:
        raise UsageError(f"invalid configuration: {exc}") from None


def absolute_path(path: str | Path) -> str:
    """Input paths are stored absolute, so config.yaml and meta.json do not depend on the
    working directory a job was started from."""
    return str(Path(path).expanduser().resolve())


def prepare_output_dir(out: Path) -> Path:
    """Create ``out`` if needed and prove it is writable (fail now, not after an hour of work).

    A folder the user cannot write to is a usage error (choose another); a full disk or quota is
    a failure of the environment (free space, then run the same command).
    """
    from matseg.runner.environment import NO_SPACE, EnvironmentFailure, environment_problem

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise EnvironmentFailure(environment_problem(exc, out)) from None
        raise UsageError(f"{out}: output folder is not writable ({exc.strerror or exc})") from None
    return out


def check_saved_config(out: Path, cfg, run_only_keys: tuple[str, ...], force: bool = False) -> None:
    """Refuse to mix samples of different configurations in one folder (resume needs the same config)."""
    import yaml

    saved_path = out / "config.yaml"
    if not saved_path.exists() or force:
        return
    try:
        saved = yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"{saved_path}: cannot read the saved config ({exc})") from None
    changed = [k for k in diff_keys(saved, to_dict(cfg)) if k not in run_only_keys]
    if changed:
        raise UsageError(
            f"{out} holds samples made with a different configuration (differs in: {', '.join(changed)}); "
            "use another output folder, or --force-config to mix them anyway"
        )


def save_config(out: Path, cfg) -> Path:
    from matseg.io.atomic import write_text_atomic

    path = out / "config.yaml"
    write_text_atomic(path, dump_yaml(cfg))
    return path


def print_config_requested(args: argparse.Namespace, cfg) -> bool:
    """Handle ``--print-config``: print the resolved config and say so (the caller returns 0)."""
    if not getattr(args, "print_config", False):
        return False
    print(dump_yaml(cfg), end="")
    return True


def open_run(out: Path, cfg, run_only_keys: tuple[str, ...] = (), force: bool = False) -> Path:
    """Everything a batch stage does to its output folder before running: create and probe it,
    refuse a different saved config, save this one, remove temporaries left by a crash."""
    from matseg.io.atomic import remove_stale_temporaries

    out = prepare_output_dir(out)
    check_saved_config(out, cfg, run_only_keys, force)
    save_config(out, cfg)
    remove_stale_temporaries(out)
    return out


def _save_summary(out: Path, report: dict) -> str | None:
    """Write ``out/summary.json``; if the environment prevents it, return why instead of raising."""
    from matseg.io.atomic import write_json_atomic
    from matseg.runner.environment import environment_problem

    try:
        write_json_atomic(out / "summary.json", report)
    except OSError as exc:
        problem = environment_problem(exc, out)
        if problem is None:
            raise
        return problem
    return None


def close_run(out: Path, summary, extra: dict | None = None, bad_inputs: dict[str, str] | None = None) -> int:
    """Print the summary and the skipped inputs, write ``summary.json`` (the runner's summary +
    ``extra`` + ``bad_inputs``); return the exit code.

    If ``summary.json`` cannot be written (the disk filled up at the end), the summary has been
    printed all the same and :class:`~matseg.runner.EnvironmentFailure` is raised.
    """
    from matseg.runner.environment import EnvironmentFailure

    report = {**summary.to_dict(), **(extra or {})}
    if bad_inputs is not None:
        report["bad_inputs"] = bad_inputs
    print(summary.format(), file=sys.stderr)
    if bad_inputs:
        print(f"unreadable inputs skipped: {len(bad_inputs)}", file=sys.stderr)
        for path, reason in sorted(bad_inputs.items()):
            print(f"  {path}: {reason}", file=sys.stderr)
    problem = _save_summary(out, report)
    if problem:
        raise EnvironmentFailure(f"cannot write {out / 'summary.json'}: {problem}")
    return summary.exit_code


def environment_failure(exc: BaseException, out: Path | None = None):
    """``exc`` as an :class:`~matseg.runner.EnvironmentFailure` if it is one (or an ``OSError``
    that is one, judged against the output folder ``out``), else None."""
    from matseg.runner.environment import EnvironmentFailure, environment_problem

    if isinstance(exc, EnvironmentFailure):
        return exc
    problem = environment_problem(exc, out) if isinstance(exc, OSError) else None
    return EnvironmentFailure(problem) if problem else None


def report_environment_failure(stage: str, failure) -> int:
    """Print the one message of an aborted command (the path and the problem; for a batch job how
    to resume), write the aborted job's ``summary.json`` if the folder still takes it, and return
    :data:`~matseg.exit_codes.ENVIRONMENT`."""
    print(f"matseg {stage}: error: {failure}", file=sys.stderr)
    summary, out = failure.summary, failure.out_dir
    if summary is not None:
        # Never recreate a vanished output folder just to hold the summary.
        saved = out is not None and Path(out).is_dir() and _save_summary(Path(out), summary.to_dict()) is None
        print(
            f"matseg {stage}: job aborted{'' if saved else ' (summary.json not written)'}; fix the problem, then "
            "rerun the same command: it skips the items already finished and runs the rest", file=sys.stderr,
        )  # fmt: skip
    return exit_codes.ENVIRONMENT


def add_shard_arg(parser: argparse.ArgumentParser) -> None:
    """``--shard-size K`` of the scene generators (config ``output.shard_size``)."""
    parser.add_argument("--shard-size", type=int, metavar="K",
                        help="write tar shards of K scenes plus index.json instead of one folder per scene "
                        "(config: output.shard_size; 0 = folders)")  # fmt: skip


def shard_flag(args: argparse.Namespace) -> list:
    """The config override of ``--shard-size`` (for :func:`resolve_config`), if given."""
    return [(["output", "shard_size"], args.shard_size)] if args.shard_size is not None else []
