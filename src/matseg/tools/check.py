"""``matseg check DIR``: validate a MatSeg dataset folder.

Every finding has a severity. Errors (the data is broken; the sample fails), per sample
(every folder :func:`~matseg.io.dataset.find_samples` finds):

* all files readable, image/masks/ROI of one size;
* masks and ROI stored as 8-bit single-channel images (Pillow mode ``L``);
* a non-empty ROI, every ROI pixel covered by some mask (``sum(masks) > 0``), tolerating up
  to 0.5 % of the ROI uncovered;
* our own format (``meta.json``): ``|sum(masks) - roi| <= ceil(M/2) + 1`` levels at every
  pixel (each of the M + 1 files is rounded independently, so this is the rounding bound),
  and ``meta["masks"]`` lists the mask files present;
* folders holding sample files without the ``Finished.txt`` marker (listed as unfinished).

Warnings (quality notes: listed and counted; failures only with ``--strict``):

* fewer than ``min_visible_materials`` visible materials (fraction > 0.5 on at least
  ``max(16, 0.1 % of ROI)`` pixels); published samples 3 and 4 have one;
* a tiny ROI, covering less than 1 % of the image;
* side files the reader skipped (e.g. a published ``scene_data.pkl`` refused as unsafe).

Exit code 0 when nothing failed, 1 on any error (or, with ``--strict``, any warning),
2 on bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from matseg import exit_codes
from matseg.io.atomic import write_json_atomic
from matseg.io.dataset import (
    DatasetFormatError,
    ROI_NAME,
    RawSample,
    default_min_visible_pixels,
    dominant_pixel_counts,
    SampleRef,
    read_raw_sample,
    sample_from_raw,
    scan_dataset,
)

__all__ = ["SampleCheck", "CheckReport", "check_sample", "check_dataset", "add_parser", "run"]

logger = logging.getLogger(__name__)

#: Largest share of ROI pixels that may have no material (anti-aliasing slack).
MAX_UNCOVERED_FRACTION = 0.005

#: ROI share of the image below which a sample gets a "tiny ROI" warning: it still trains,
#: but contributes few labelled pixels (the smallest published ROI covers 4 %).
MIN_ROI_FRACTION = 0.01


@dataclass
class SampleCheck:
    """Outcome of checking one sample folder.

    ``problems`` are errors (the sample fails); ``warnings`` are quality notes (one visible
    material, a tiny ROI, a published ``scene_data.pkl`` refused as unsafe) that fail the
    sample only under ``strict``.
    """

    name: str
    path: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    source: str | None = None
    size: tuple[int, int] | None = None  # (H, W)
    num_masks: int | None = None
    visible_materials: int | None = None
    dominant_pixels: list[int] | None = None  # per mask, ROI pixels with fraction > 0.5
    min_visible_pixels: int | None = None
    roi_fraction: float | None = None  # ROI pixels / image pixels
    uncovered_fraction: float | None = None  # ROI pixels without material / ROI pixels
    max_sum_deviation: int | None = None  # ours only: max |sum(masks) - roi| in levels

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.problems

    def passes(self, strict: bool = False) -> bool:
        """No errors, and under ``strict`` no warnings either."""
        return self.ok and not (strict and self.warnings)


@dataclass
class CheckReport:
    """All sample checks of one dataset plus the unfinished folders.

    ``strict``: warnings fail their sample (and so the report).
    """

    root: str
    min_visible_materials: int
    samples: list[SampleCheck]
    unfinished: list[str]
    strict: bool = False

    @property
    def passed(self) -> list[SampleCheck]:
        return [s for s in self.samples if s.passes(self.strict)]

    @property
    def failed(self) -> list[SampleCheck]:
        return [s for s in self.samples if not s.passes(self.strict)]

    @property
    def warning_count(self) -> int:
        """Warnings over all samples (one sample may have several)."""
        return sum(len(s.warnings) for s in self.samples)

    @property
    def ok(self) -> bool:
        """True when at least one sample was checked, none failed and none is unfinished."""
        return bool(self.samples) and not self.failed and not self.unfinished

    def to_dict(self) -> dict:
        return {
            "root": self.root,
            "ok": self.ok,
            "strict": self.strict,
            "min_visible_materials": self.min_visible_materials,
            "checked": len(self.samples),
            "passed": len(self.passed),
            "failed": len(self.failed),
            "warnings": self.warning_count,
            "unfinished": self.unfinished,
            "samples": [{**asdict(s), "ok": s.passes(self.strict)} for s in self.samples],
        }

    def summary(self, verbose: bool = False) -> str:
        """Human-readable summary; ``verbose`` adds one line of numbers per sample."""
        strict_note = " (--strict: warnings fail)" if self.strict else ""
        lines = [
            f"{self.root}: checked {len(self.samples)} samples: {len(self.passed)} passed, "
            f"{len(self.failed)} failed, {len(self.unfinished)} unfinished, "
            f"{self.warning_count} warnings{strict_note}"
        ]
        if verbose:
            for s in self.samples:
                lines.append("  " + _sample_line(s, self.strict))
        for s in self.samples:
            if s.problems or s.warnings:
                lines.append(f"{'WARNING' if s.passes(self.strict) else 'FAILED'} {s.name}:")
                lines.extend(f"  - error: {p}" for p in s.problems)
                lines.extend(f"  - warning: {w}" for w in s.warnings)
        for name in self.unfinished:
            lines.append(f"UNFINISHED {name}: sample files but no Finished.txt")
        if not self.samples and not self.unfinished:
            lines.append("no samples found (folders with RGB__RGB.jpg and Finished.txt)")
        if not self.ok:
            lines.append("FAILED")
        else:
            lines.append(f"OK, {self.warning_count} warnings" if self.warning_count else "OK")
        return "\n".join(lines)


def _sample_line(s: SampleCheck, strict: bool = False) -> str:
    status = "FAILED" if not s.passes(strict) else "warning" if s.warnings else "ok"
    if s.num_masks is None:
        return f"{s.name}: {status} (unreadable)"
    parts = [
        f"{s.name}: {status}",
        f"{s.source}",
        f"masks={s.num_masks}",
        f"visible={s.visible_materials}",
        f"roi={s.roi_fraction:.3f}",
        f"uncovered={s.uncovered_fraction:.4f}",
        f"dominant_px={s.dominant_pixels} (min {s.min_visible_pixels})",
    ]
    if s.max_sum_deviation is not None:
        parts.append(f"max|sum-roi|={s.max_sum_deviation}")
    return " ".join(parts)


def _check_modes(raw: RawSample, problems: list[str]) -> None:
    for name, mode in zip(raw.mask_names + [ROI_NAME], raw.mask_modes + [raw.roi_mode]):
        if mode != "L":
            problems.append(f"{name}: expected an 8-bit single-channel image (mode L), got mode {mode}")


def _check_own_format(raw: RawSample, result: SampleCheck, problems: list[str]) -> None:
    listed = raw.meta.get("masks")
    if listed is not None and list(listed) != raw.mask_names:
        problems.append(f"meta.json lists masks {listed} but the folder has {raw.mask_names}")
    full = raw.meta.get("roi_full_value", 255)
    total = raw.masks.sum(axis=0, dtype=np.int32)
    # Scale the ROI to the 0..255 mask scale in case roi_full_value is not 255.
    roi = np.rint(raw.roi_raw.astype(np.float32) * (255.0 / float(full))).astype(np.int32)
    dev = np.abs(total - roi)
    result.max_sum_deviation = int(dev.max())
    tol = math.ceil(raw.masks.shape[0] / 2) + 1
    if result.max_sum_deviation > tol:
        y, x = np.unravel_index(int(np.argmax(dev)), dev.shape)
        problems.append(
            f"sum of masks differs from ObjectMaskOcluded.png by up to {result.max_sum_deviation} levels "
            f"(allowed {tol}; {int((dev > tol).sum())} pixels, e.g. row {y} col {x}: sum {int(total[y, x])} "
            f"vs roi {int(roi[y, x])})"
        )


def check_sample(folder: str | os.PathLike, min_visible_materials: int = 2, name: str | None = None) -> SampleCheck:
    """Check one sample folder (see the module docstring for the rules).

    Args:
        folder: sample folder.
        min_visible_materials: required number of visible materials.
        name: label used in the report (default: the folder name).

    Returns:
        A :class:`SampleCheck`; never raises for a broken sample (errors become problems).
    """
    folder = folder if isinstance(folder, SampleRef) else Path(folder)
    result = SampleCheck(name=name or folder.name, path=str(folder))
    problems, warnings = result.problems, result.warnings
    try:
        raw = read_raw_sample(folder)
        sample = sample_from_raw(raw)
    except DatasetFormatError as exc:
        problems.append(str(exc))
        return result
    except Exception as exc:  # a checker reports, it does not crash on one odd folder
        logger.exception("unexpected error while checking %s", folder)
        problems.append(f"{folder}: unexpected {type(exc).__name__}: {exc}")
        return result

    result.source = raw.source
    warnings.extend(raw.warnings)
    result.size = sample.size
    result.num_masks = sample.num_materials
    _check_modes(raw, problems)

    uncovered = int(sample.meta["roi_pixels_without_material"])
    roi_pixels = int(sample.roi.sum())
    roi_before = roi_pixels + uncovered  # the reader removes uncovered pixels from the ROI
    result.roi_fraction = roi_before / float(sample.roi.size)
    result.uncovered_fraction = uncovered / roi_before if roi_before else 0.0
    if roi_before == 0:
        problems.append("ObjectMaskOcluded.png: empty ROI (no pixel at half the full value or above)")
    else:
        if result.uncovered_fraction > MAX_UNCOVERED_FRACTION:
            problems.append(
                f"{uncovered} ROI pixels ({100 * result.uncovered_fraction:.2f} %) have no material "
                f"(allowed {100 * MAX_UNCOVERED_FRACTION:.1f} %)"
            )
        if result.roi_fraction < MIN_ROI_FRACTION:
            warnings.append(
                f"tiny ROI: {roi_before} pixels, {100 * result.roi_fraction:.2f} % of the image "
                f"(warned below {100 * MIN_ROI_FRACTION:.0f} %)"
            )
    if raw.source == "matseg":
        _check_own_format(raw, result, problems)

    counts = dominant_pixel_counts(sample)
    result.dominant_pixels = [int(c) for c in counts]
    result.min_visible_pixels = default_min_visible_pixels(roi_pixels)
    result.visible_materials = int((counts >= result.min_visible_pixels).sum())
    if result.visible_materials < min_visible_materials:
        detail = ", ".join(f"{n} {c} px" for n, c in zip(sample.mask_names, result.dominant_pixels))
        warnings.append(
            f"{result.visible_materials} visible material(s), expected at least {min_visible_materials} "
            f"(pixels with fraction > 0.5: {detail}; visible from {result.min_visible_pixels} px)"
        )
    return result


def _relative_name(root: Path, folder: Path | SampleRef) -> str:
    if isinstance(folder, SampleRef):
        return folder.relative_name()
    rel = folder.relative_to(root).as_posix()
    return rel if rel != "." else folder.name


def check_dataset(
    root: str | os.PathLike,
    min_visible_materials: int = 2,
    workers: int | None = None,
    nested: bool = True,
    progress: bool | None = None,
    strict: bool = False,
) -> CheckReport:
    """Check every sample under ``root`` and list unfinished folders.

    Args:
        root: dataset folder (or a single sample folder).
        min_visible_materials: required visible materials per sample.
        workers: threads reading samples in parallel (decoding releases the GIL); default
            ``min(4, cpu_count)``.
        nested: also check nested samples (e.g. the published ``1/1``).
        progress: show a tqdm bar; ``None`` = only on a terminal.
        strict: warnings fail their sample (see :class:`CheckReport`).

    Raises:
        FileNotFoundError / NotADirectoryError: ``root`` is missing or not a folder.
    """
    root = Path(root)
    folders, unfinished = scan_dataset(root, nested)
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")

    def one(folder: Path) -> SampleCheck:
        return check_sample(folder, min_visible_materials, name=_relative_name(root, folder))

    bar = dict(total=len(folders), desc="check", unit="sample", disable=None if progress is None else not progress)
    if workers == 1 or len(folders) <= 1:
        results = [one(f) for f in tqdm(folders, **bar)]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(tqdm(pool.map(one, folders), **bar))  # map keeps the natural order
    return CheckReport(
        root=str(root),
        min_visible_materials=min_visible_materials,
        samples=results,
        unfinished=[_relative_name(root, f) for f in unfinished],
        strict=strict,
    )


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``check`` on an argparse subparsers object."""
    parser = subparsers.add_parser(
        "check",
        help="validate a MatSeg dataset folder",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dir", type=Path, help="dataset folder (or one sample folder)")
    parser.add_argument("--min-visible-materials", type=int, default=2, metavar="N",
                        help="visible materials below which a sample gets a warning (default: 2)")
    parser.add_argument("--strict", action="store_true",
                        help="warnings (too few visible materials, tiny ROI, skipped side files) fail too")
    parser.add_argument("--json", type=Path, default=None, metavar="REPORT",
                        help="also write the full report as JSON")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="parallel reader threads (default: min(4, CPUs))")
    parser.add_argument("--no-nested", dest="nested", action="store_false",
                        help="only DIR and its direct sub-folders (like the reference reader)")
    # Not dest="verbose": that is the global `matseg -v` (debug logging), which this would set or reset.
    parser.add_argument("-v", "--verbose", dest="per_sample", action="store_true",
                        help="one line of numbers per sample")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Handler of ``matseg check``: 0 if nothing failed, 1 on any error (with ``--strict`` also
    any warning), 2 on bad arguments."""
    try:
        report = check_dataset(
            args.dir,
            min_visible_materials=args.min_visible_materials,
            workers=args.workers,
            nested=getattr(args, "nested", True),
            strict=getattr(args, "strict", False),
        )
    except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
        print(f"matseg check: {exc}")
        return exit_codes.USAGE
    print(report.summary(verbose=getattr(args, "per_sample", False)))
    if args.json is not None:
        write_json_atomic(args.json, report.to_dict())
        print(f"report written to {args.json}")
    return exit_codes.OK if report.ok else exit_codes.FAILED
