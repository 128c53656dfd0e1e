"""``run_job``: skip finished items, pick a backend, collect results into a :class:`RunSummary`."""

from __future__ import annotations

import logging
import os
import sys

from .core import Job, RunnerOptions, WorkItem
from .environment import EnvironmentFailure
from .summary import ResultCollector, RunSummary

logger = logging.getLogger(__name__)


def available_cpus() -> int:
    """CPUs this process may use (respects affinity masks on Python >= 3.13)."""
    count = getattr(os, "process_cpu_count", os.cpu_count)()
    return max(1, count or 1)


def _pending_items(job: Job) -> tuple[list[WorkItem], list[WorkItem]]:
    """Return ``(all items, items still to run)``, both in index order."""
    items = sorted(job.items(), key=lambda it: it.index)
    names = [it.name for it in items]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})[:5]
        raise ValueError(f"job {job.name!r} has duplicate item names (outputs would collide): {dupes}")
    return items, [it for it in items if not job.is_done(it)]


def run_job(job: Job, options: RunnerOptions | None = None) -> RunSummary:
    """Run every unfinished item of ``job`` and return the summary.

    Items whose ``is_done`` is True are counted as skipped and never dispatched; the rest are
    dispatched in index order to the inline (``workers=1`` without ``max_items_per_worker``),
    process-pool or Ray backend. A failing
    item never stops the batch. On KeyboardInterrupt the pending work is cancelled, the partial
    summary is printed to stderr and the interrupt is re-raised.

    A failure of the environment (disk full, output folder ``job.out_dir`` read-only, forbidden
    or gone; see :mod:`matseg.runner.environment`) does stop it: running items are killed, the
    partial summary is printed to stderr and :class:`EnvironmentFailure` is raised with
    ``summary`` and ``out_dir`` set. Finished items stay; a rerun skips them.
    """
    options = options or RunnerOptions()
    items, todo = _pending_items(job)

    if options.use_ray:
        from .ray_backend import run_ray as backend_fn

        backend, workers = "ray", options.workers or 0  # Ray backend resolves 0 to the cluster's CPUs
    else:
        from .local import run_inline, run_process_pool

        workers = min(options.workers or available_cpus(), max(1, len(todo)))
        # A recycling limit needs a worker process to recycle, even with one worker.
        inline = workers == 1 and options.max_items_per_worker is None
        backend, backend_fn = ("inline", run_inline) if inline else ("processes", run_process_pool)

    collector = ResultCollector(
        job_name=job.name,
        total=len(items),
        skipped=len(items) - len(todo),
        to_run=[it.name for it in todo],
        backend=backend,
        workers=workers,
        progress=options.progress,
        description=options.description,
        out_dir=getattr(job, "out_dir", None),
    )
    logger.info("job %r: %d items, %d to run, backend %s", job.name, len(items), len(todo), backend)
    try:
        if todo:
            backend_fn(job, todo, options, collector)
    except KeyboardInterrupt:
        print(collector.summary(interrupted=True).format(), file=sys.stderr)
        raise
    except EnvironmentFailure as exc:
        exc.summary = collector.summary()
        exc.out_dir = getattr(job, "out_dir", None)
        print(exc.summary.format(), file=sys.stderr)
        raise
    except BaseException:
        collector.summary()  # closes the progress bar
        raise
    return collector.summary()
