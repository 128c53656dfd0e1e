"""``matseg textures``: texture commands (``extract``: uniform-texture regions of photos)."""

from __future__ import annotations

import argparse
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

EXTRACT_DESCRIPTION = """\
Find regions of uniform texture in photos (paper §3.2.1, appendix I) and save them as texture
images. Each photo is cut into square cells (40 px for small photos, 75 px for large ones); a
square of cells is uniform when every pair of its cells has similar distributions of colour and
gradient (Jensen-Shannon distance <= 0.5 on each of 13 channels). Squares of at least 6x6 / 7x7
cells are saved, largest first, without near-duplicates; too smooth or saturated crops are
moved to a .rejected/ sub-folder.
Output: OUT/<photo>/<stem>_<k>_Score_<dddd>_TileSize<T>_Texture.jpg (crop at source
resolution) + .json (source, box, cells, score, parameters), meta.json, Finished.txt; plus
OUT/config.yaml and OUT/summary.json. A rerun skips finished photos. OUT can be given to
`matseg synth2d --textures OUT`."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "textures", help="extract uniform textures from photos (`matseg textures extract --help`)",
        description="Texture commands. `matseg textures extract IMAGES -o OUT` finds uniform-texture regions.",
    )  # fmt: skip
    verbs = p.add_subparsers(title="commands", metavar="COMMAND")
    e = verbs.add_parser(
        "extract", help="find uniform-texture regions in photos and save them",
        description=EXTRACT_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    e.add_argument("images", nargs="+", type=Path, metavar="IMAGES", help="photo files and/or folders (searched recursively)")
    e.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    e.add_argument("--tile-size", type=int, help="cell side in px (config: tile_size; default 0 = 40 for small, 75 for large photos)")
    e.add_argument("--min-cells", type=int, help="minimum region side in cells (config: min_cells; default 0 = 6 small / 7 large)")
    e.add_argument("--max-overlap", type=float, help="near-duplicate threshold (config: max_overlap, default 0.25)")
    e.add_argument("--force-config", action="store_true", help="allow a config that differs from the one saved in --out")
    add_config_args(e)
    add_runner_args(e)
    e.set_defaults(handler=run)

    def usage(_args: argparse.Namespace) -> int:
        p.print_help(sys.stderr)
        return exit_codes.USAGE

    p.set_defaults(handler=usage)
    return p


def run(args: argparse.Namespace) -> int:
    from matseg.extract.textures_job import TextureJob, TextureJobConfig, read_meta
    from matseg.io.atomic import remove_stale_temporaries
    from matseg.io.inputs import find_inputs
    from matseg.runner import run_job

    flags = []
    for flag, key in (("tile_size", "tile_size"), ("min_cells", "min_cells"), ("max_overlap", "max_overlap")):
        if getattr(args, flag) is not None:
            flags.append(([key], getattr(args, flag)))
    cfg = resolve_config(TextureJobConfig, args, flags)
    if print_config_requested(args, cfg):
        return 0

    try:
        inputs = find_inputs(args.images, exclude=args.out)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    out = open_run(args.out, cfg, (), args.force_config)
    for parent in sorted({(out / inp.name).parent for inp in inputs} - {out}):
        remove_stale_temporaries(parent)  # photos in sub-folders have their own parents

    print(f"textures extract: {len(inputs)} photos -> {out}", file=sys.stderr)
    summary = run_job(TextureJob(cfg, out, inputs), runner_options(args, "textures"))
    report = {}
    failed = {name for name, _ in summary.failed}
    images, too_small = {}, []
    for inp in inputs:
        meta = read_meta(out / inp.name) if inp.name not in failed else None
        if meta is None:
            continue
        images[inp.name] = {"source": meta["source"], "textures": len(meta["textures"]), "rejected": len(meta["rejected"])}
        if meta["too_small"]:
            images[inp.name]["too_small"] = meta["too_small"]
            too_small.append(inp.name)
    report["textures"] = sum(v["textures"] for v in images.values())
    report["rejected"] = sum(v["rejected"] for v in images.values())
    report["too_small"] = too_small
    report["images"] = images
    exit_code = close_run(out, summary, report)
    print(
        f"textures: {report['textures']} kept, {report['rejected']} set aside in .rejected/ "
        f"(too smooth or saturated), from {len(images)} photos", file=sys.stderr,
    )  # fmt: skip
    if too_small:
        print(f"photos too small for a texture: {len(too_small)}", file=sys.stderr)
        for name in too_small[:20]:
            print(f"  {name}: {images[name]['too_small']}", file=sys.stderr)
    return exit_code
