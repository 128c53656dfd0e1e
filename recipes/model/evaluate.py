#!/usr/bin/env python3
"""Evaluate trained nets and the baselines side by side (the figures of docs/model-card.md).

Runs ``matseg eval`` for every predictor on every dataset given, in one go and with the same
settings, then prints Markdown tables and writes ``OUT/summary.json``:

* point benchmarks (``--bench NAME=DIR``, MatSeg benchmark layout: the real-photo dev set of
  ``recipes/devset``, ``../shared/data/benchmark_sample``): triplet accuracy all / hard / soft,
  per point and per material, plus per-image scores with their spread;
* mask datasets (``--masks NAME=DIR``, e.g. held-out ``synth2d`` / ``synth3d`` scenes): mean IoU
  at the optimal threshold over segments and over images.

Usage::

    python recipes/model/evaluate.py -o out/model-eval \\
        --bench dev=out/devset --bench sample=../shared/data/benchmark_sample \\
        --masks synth2d=out/heldout2d --masks synth3d=out/heldout3d \\
        --net model=out/runs/default/last.safetensors --net shipped=default \\
        --baselines colour,texture,effnet

``--net LABEL=FILE`` evaluates a net (``FILE`` = a .safetensors checkpoint, or ``default`` for
the model that ships with matseg). Each evaluation lands in ``OUT/<dataset>/<label>/``; a rerun
skips the images already finished there (``matseg eval`` resumes), so adding one net to an
existing comparison costs only that net. Exit status: 0, or 1 when an evaluation failed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

MODES = ("all", "hard", "soft")


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for v in values:
        name, sep, target = v.partition("=")
        if not sep or not name or not target:
            raise SystemExit(f"error: {what} must be NAME=VALUE, got {v!r}")
        out[name] = target
    return out


def _matseg() -> list[str]:
    exe = shutil.which("matseg", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "matseg"]


#: Predictors that take the test-time augmentation of ``matseg predict --tta``.
TTA_CAPABLE = ("effnet",)


def predictor_args(spec: str) -> list[str]:
    """``matseg eval`` options of a predictor spec: a baseline name or ``net:FILE``, either
    followed by ``+tta`` for the test-time augmentation of ``matseg predict --tta``."""
    spec, tta = spec.removesuffix("+tta"), spec.endswith("+tta")
    if spec.startswith("net:"):
        weights = spec[4:]
        args = ["--predictor", "matseg"]
        if weights != "default":
            args += ["--predictor-arg", f"weights={Path(weights).resolve()}"]
        return [*args, "--predictor-arg", "tta=true"] if tta else args
    args = ["--predictor", spec]
    if tta:  # the same views as the nets' preset
        from matseg.net.infer import TTA_PRESET

        for key, value in TTA_PRESET.items():
            args += ["--predictor-arg", f"{key}={json.dumps(value)}"]  # tuples become YAML lists
    return args


def run_eval(task: str, root: str, spec: str, out: Path, workers: int) -> dict | None:
    cmd = [*_matseg(), "eval", task, root, *predictor_args(spec), "-o", str(out), "--no-progress", "-w", str(workers)]
    print("+", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL)
    results = out / "results.json"
    if done.returncode not in (0, 1) or not results.exists():
        print(f"error: {' '.join(cmd)} exited {done.returncode}", file=sys.stderr)
        return None
    return json.loads(results.read_text())


def bench_rows(results: dict) -> dict:
    """Aggregate triplet figures (paper variant) and per-image 'all' triplet accuracy per material."""
    agg = results["aggregate"]
    row = {mode: {k: agg[mode]["paper"].get(k) for k in ("triplet_point", "triplet_material", "images")} for mode in MODES}
    per_image = {}
    for image in results["images"]:
        paper = image.get("results", {}).get("all", {}).get("paper", {})
        if "triplet_material" in paper:
            per_image[image["name"]] = paper["triplet_material"]
    row["per_image"] = per_image
    return row


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--bench", action="append", default=[], metavar="NAME=DIR", help="MatSeg point benchmark")
    ap.add_argument("--masks", action="append", default=[], metavar="NAME=DIR", help="dataset of segments (IoU protocol)")
    ap.add_argument("--net", action="append", default=[], metavar="LABEL=FILE", help="trained net (.safetensors or 'default')")
    ap.add_argument("--baselines", default="colour,texture,effnet", help="comma-separated baseline predictors ('' for none)")
    ap.add_argument("--tta", action="store_true",
                    help="also evaluate every net and the effnet baseline with test-time augmentation (rows LABEL+tta)")  # fmt: skip
    ap.add_argument("-w", "--workers", type=int, default=1)
    args = ap.parse_args()
    benches, masks, nets = _pairs(args.bench, "--bench"), _pairs(args.masks, "--masks"), _pairs(args.net, "--net")
    predictors = {b: b for b in args.baselines.split(",") if b} | {label: f"net:{f}" for label, f in nets.items()}
    if args.tta:
        predictors |= {f"{label}+tta": f"{spec}+tta" for label, spec in predictors.items() if spec.startswith("net:") or spec in TTA_CAPABLE}
    if not predictors or not (benches or masks):
        ap.error("give at least one --bench/--masks dataset and one predictor")
    for name, root in {**benches, **masks}.items():
        if not Path(root).is_dir():
            ap.error(f"{name}: {root} is not a folder")

    def mask_rows(res: dict) -> dict:
        return {k: res["aggregate"][k] for k in ("miou_segments", "miou_images", "segments", "images")}

    summary, failed = {"bench": {}, "masks": {}}, 0
    for kind, task, datasets, rows_of in (("bench", "matseg-bench", benches, bench_rows), ("masks", "masks", masks, mask_rows)):
        for name, root in datasets.items():
            for label, spec in predictors.items():
                res = run_eval(task, root, spec, args.out / name / label, args.workers)
                if res is None:
                    failed += 1
                    continue
                summary[kind].setdefault(name, {})[label] = rows_of(res)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))

    for name, rows in summary["bench"].items():
        print(f"\n### {name}: triplet accuracy (paper variant), per point / per material\n")
        print("| predictor | all | hard | soft | per-image mean ± sd (min-max), all, per material |")
        print("|---|---|---|---|---|")
        for label, row in rows.items():
            cells = [f"{_fmt(row[m]['triplet_point'])} / {_fmt(row[m]['triplet_material'])}" for m in MODES]
            scores = list(row["per_image"].values())
            spread = (f"{statistics.mean(scores):.3f} ± {statistics.pstdev(scores):.3f} ({min(scores):.3f}-{max(scores):.3f})"
                      if scores else "-")  # fmt: skip
            print(f"| {label} | {' | '.join(cells)} | {spread} |")
        labels = list(rows)
        names = sorted({n for row in rows.values() for n in row["per_image"]})
        if len(names) > 1:
            print(f"\nper image ({name}, all, per material):\n")
            print("| image | " + " | ".join(labels) + " |")
            print("|---|" + "---|" * len(labels))
            for n in names:
                print(f"| {n} | " + " | ".join(_fmt(rows[lab]["per_image"].get(n)) for lab in labels) + " |")
    for name, rows in summary["masks"].items():
        print(f"\n### {name}: mean IoU at the optimal threshold (over segments / over images)\n")
        print("| predictor | mIoU segments | mIoU images |")
        print("|---|---|---|")
        for label, row in rows.items():
            print(f"| {label} | {row['miou_segments']:.4f} | {row['miou_images']:.4f} |")
    print(f"\nsummary: {args.out / 'summary.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
