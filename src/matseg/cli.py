"""The ``matseg`` command: one subcommand per stage (``matseg <stage> --help``)."""

from __future__ import annotations

import argparse
import logging
import sys

import matseg
from matseg import exit_codes
from matseg.cli_common import UsageError

# Modules in data-flow order; each has add_parser(subparsers).
SUBCOMMANDS = (
    "matseg.extract.textures_cli",
    "matseg.materials.cli",
    "matseg.synth2d.cli",
    "matseg.synth3d.cli",
    "matseg.net.train_cli",
    "matseg.net.infer_cli",
    "matseg.net.convert_cli",
    "matseg.evaluate.cli",
    "matseg.app.cli",
    "matseg.tools.check",
    "matseg.tools.show",
    "matseg.tools.shards_cmd",
    "matseg.tools.config_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="matseg",
        description="Zero-shot material-state segmentation: MatSeg data engine, descriptor net and benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"matseg {matseg.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(title="stages", metavar="STAGE", dest="stage")
    for module in SUBCOMMANDS:
        importlib.import_module(module).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; the exit codes are those of :mod:`matseg.exit_codes`."""
    from matseg.net.memory import prefer_huge_pages

    prefer_huge_pages()  # before the process's first tensor, when PyTorch reads it (matseg.net.memory)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not hasattr(args, "handler"):
        parser.print_help()
        return exit_codes.USAGE
    try:
        return int(args.handler(args) or exit_codes.OK)
    except UsageError as exc:
        print(f"matseg {args.stage}: error: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return exit_codes.INTERRUPTED
    except Exception as exc:
        # A full disk or a lost output folder, met by a batch job or any other command's writes.
        from matseg.cli_common import environment_failure, report_environment_failure

        failure = environment_failure(exc, getattr(args, "out", None))
        if failure is None:
            raise
        return report_environment_failure(args.stage, failure)


if __name__ == "__main__":
    sys.exit(main())
