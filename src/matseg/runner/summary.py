"""Run summary (counts, failures, warnings, throughput) and the driver-side collector that builds it."""

from __future__ import annotations

import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

from tqdm import tqdm

from matseg import exit_codes

from .core import ItemResult
from .environment import EnvironmentFailure, OutputFolderWatch

MAX_LISTED = 20


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _capped(lines: list[str], limit: int = MAX_LISTED) -> list[str]:
    if len(lines) <= limit:
        return lines
    return lines[:limit] + [f"... and {len(lines) - limit} more"]


@dataclass
class RunSummary:
    """Outcome of :func:`~matseg.runner.run_job`.

    ``total`` counts every item of the job; ``skipped`` those already finished before the run
    (``is_done``); ``failed`` lists ``(name, reason)`` in item order; ``warnings`` maps a warning
    text to the number of items that reported it; ``item_seconds`` holds the wall time of each
    item done in this run. ``done + skipped + len(failed) == total`` unless ``interrupted`` or
    ``aborted`` (the reason a failure of the environment stopped the job).
    """

    job: str
    total: int
    done: int
    skipped: int
    failed: list[tuple[str, str]]
    warnings: dict[str, int]
    elapsed_s: float
    workers: int
    backend: str  # "inline" | "processes" | "ray"
    item_seconds: list[float] = field(default_factory=list)
    interrupted: bool = False
    aborted: str = ""

    @property
    def items_per_s(self) -> float:
        """Items done per second of wall time (0 when nothing was done)."""
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def median_item_s(self) -> float:
        return statistics.median(self.item_seconds) if self.item_seconds else 0.0

    @property
    def exit_code(self) -> int:
        """0 if every item finished, 3 if the job was aborted, else 1 (failures or an interrupted run)."""
        if self.aborted:
            return exit_codes.ENVIRONMENT
        return exit_codes.FAILED if self.failed or self.interrupted else exit_codes.OK

    def to_dict(self) -> dict:
        """JSON-ready dict: all fields plus ``items_per_s``, ``median_item_s`` and ``exit_code``."""
        d = asdict(self)
        d["failed"] = [{"name": n, "reason": r} for n, r in self.failed]
        d["items_per_s"] = self.items_per_s
        d["median_item_s"] = self.median_item_s
        d["exit_code"] = self.exit_code
        return d

    def format(self) -> str:
        """Human-readable table; failure and warning listings are capped at ``MAX_LISTED`` lines."""
        unit = "worker" if self.workers == 1 else "workers"
        head = f"job {self.job!r}: {self.total} items, {self.backend} backend, {self.workers} {unit}"
        if self.interrupted:
            head += " -- INTERRUPTED, partial results"
        elif self.aborted:
            head += " -- ABORTED (environment failure), partial results"
        lines = [head]
        rate = f"{self.items_per_s:.3g} items/s, median {self.median_item_s:.3g} s/item" if self.done else ""
        lines.append(f"  done     {self.done:>7}   {rate}".rstrip())
        lines.append(f"  skipped  {self.skipped:>7}" + ("   (already finished)" if self.skipped else ""))
        lines.append(f"  failed   {len(self.failed):>7}")
        width = max((len(n) for n, _ in self.failed[:MAX_LISTED]), default=0)
        lines += [f"    {line}" for line in _capped([f"{n:<{width}}  {r}" for n, r in self.failed])]
        if self.warnings:
            lines.append(f"  warnings {len(self.warnings):>7}   (distinct; count = items reporting it)")
            ranked = sorted(self.warnings.items(), key=lambda kv: (-kv[1], kv[0]))
            lines += [f"    {line}" for line in _capped([f"{c:>6}x  {w}" for w, c in ranked])]
        lines.append(f"  elapsed  {_duration(self.elapsed_s):>7}")
        return "\n".join(lines)


class ResultCollector:
    """Driver-side sink for :class:`ItemResult` s: counts them, drives the progress bar, builds the summary."""

    def __init__(
        self,
        job_name: str,
        total: int,
        skipped: int,
        to_run: list[str],
        backend: str,
        workers: int,
        progress: bool = True,
        description: str = "",
        out_dir=None,
    ):
        self.job_name = job_name
        self.total = total
        self.skipped = skipped
        self.backend = backend
        self.workers = workers  # a backend may refine it (Ray: cluster CPUs)
        self._order = {name: i for i, name in enumerate(to_run)}
        self._done_seconds: list[float] = []
        self._failed: list[tuple[int, str, str]] = []
        self._warnings: Counter[str] = Counter()
        self._aborted = ""
        self._watch = OutputFolderWatch(out_dir)
        self._start = time.perf_counter()
        self._bar = tqdm(
            total=len(to_run),
            unit="item",
            desc=description or job_name,
            disable=not progress,
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def add(self, result: ItemResult) -> None:
        if result.status == "aborted":
            # Not the item's failure: it stays unfinished, and a rerun runs it.
            self._aborted = self._aborted or result.reason
            return
        # One count per item and warning text, however often the item repeated it.
        self._warnings.update(set(result.warnings))
        if result.status == "done":
            self._done_seconds.append(result.seconds)
        else:
            self._failed.append((self._order.get(result.name, len(self._order)), result.name, result.reason))
            self._bar.set_postfix(failed=len(self._failed), refresh=False)
        self._bar.update(1)

    def raise_if_aborted(self) -> None:
        """Raise :class:`EnvironmentFailure` if an item reported one or the output folder is gone.

        Backends call this after each batch of results, so they stop scheduling and drop their
        workers at the first sign.
        """
        problem = self._aborted or self._watch.problem()
        if problem:
            self._aborted = problem
            raise EnvironmentFailure(problem)

    def summary(self, interrupted: bool = False) -> RunSummary:
        """Close the progress bar and freeze the counts so far into a :class:`RunSummary`."""
        self._bar.close()
        self._watch.close()
        return RunSummary(
            job=self.job_name,
            total=self.total,
            done=len(self._done_seconds),
            skipped=self.skipped,
            failed=[(name, reason) for _, name, reason in sorted(self._failed)],
            warnings=dict(self._warnings),
            elapsed_s=time.perf_counter() - self._start,
            workers=self.workers,
            backend=self.backend,
            item_seconds=list(self._done_seconds),
            interrupted=interrupted,
            aborted=self._aborted,
        )
