"""Local backends: inline (this process) and a spawn-based process pool that survives worker deaths."""

from __future__ import annotations

import logging
import multiprocessing
import pickle
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from .core import CrashLedger, ItemResult, Job, RunnerOptions, WorkerState, WorkItem, describe_exception, worker_died_result
from .summary import ResultCollector

logger = logging.getLogger(__name__)

# The job of this worker process, installed by the pool initializer.
_STATE: WorkerState | None = None


def _init_process(job_blob: bytes, started) -> None:
    global _STATE
    _STATE = WorkerState.for_worker_process(job_blob)
    with started.get_lock():
        started.value += 1


def _run_in_process(item: WorkItem, retries: int) -> ItemResult:
    assert _STATE is not None, "pool initializer did not run"
    return _STATE.run(item, retries)


def pickle_job(job: Job, dumps=pickle.dumps) -> bytes:
    """Serialise the job once in the driver, failing early with a clear message if it cannot be sent."""
    try:
        return dumps(job)
    except Exception as exc:
        raise TypeError(f"job {getattr(job, 'name', job)!r} must be picklable to run in worker processes: {exc}") from exc


def run_inline(job: Job, items: list[WorkItem], options: RunnerOptions, collector: ResultCollector) -> None:
    """Run every item in this process, in order (``workers=1``; easiest to debug)."""
    state = WorkerState(job)
    for item in items:
        collector.add(state.run(item, options.retries))
        collector.raise_if_aborted()


def run_process_pool(job: Job, items: list[WorkItem], options: RunnerOptions, collector: ResultCollector) -> None:
    """Run items on ``collector.workers`` spawned processes, at most one item in flight per process.

    Keeping exactly one item per process in flight means that when a process dies (OOM kill,
    segfault, ``os._exit``) the culprit is among the in-flight items. The broken pool is replaced;
    if several items were in flight they are re-run one at a time so only the culprit is reported
    failed (crashes count against ``options.retries`` like exceptions do).
    """
    blob = pickle_job(job)
    workers = collector.workers
    queue = deque(items)
    suspects: deque[WorkItem] = deque()  # run alone, so that a crash identifies its item
    ledger = CrashLedger(options.retries)
    inflight: dict[Future, WorkItem] = {}
    pool: ProcessPoolExecutor | None = None

    def submit(item: WorkItem) -> None:
        inflight[pool.submit(_run_in_process, item, options.retries)] = item

    try:
        while queue or suspects or inflight:
            if pool is None:
                # spawn: portable (macOS) and safe with threaded libraries such as OpenCV.
                ctx = multiprocessing.get_context("spawn")
                started = ctx.Value("i", 0)  # workers of this pool that finished setup
                pool = ProcessPoolExecutor(
                    max_workers=workers,
                    mp_context=ctx,
                    initializer=_init_process,
                    initargs=(blob, started),
                    max_tasks_per_child=options.max_items_per_worker,
                )
            if suspects:
                if not inflight:
                    submit(suspects.popleft())
            else:
                while queue and len(inflight) < workers:
                    submit(queue.popleft())

            finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
            crashed = _collect(finished, inflight, collector)
            if not crashed:
                continue
            # The pool is broken: every other in-flight future resolves promptly, with its result
            # if it finished before the crash, else with BrokenProcessPool.
            crashed += _collect(set(inflight), inflight, collector)
            pool.shutdown(wait=True)
            pool = None
            if started.value == 0:
                # No process got through start-up, so no item is to blame and every item would
                # fail the same way: stop instead of reporting the whole batch as crashed.
                raise RuntimeError(
                    "worker processes died during start-up, before running any item (see their stderr; "
                    "a script that runs a process pool needs an `if __name__ == '__main__':` guard)"
                )
            if len(crashed) == 1:
                item = crashed[0]
                if ledger.should_retry(item):
                    logger.warning("worker process died running item %s; retrying it", item.name)
                    suspects.appendleft(item)
                else:
                    collector.add(worker_died_result(item, "process pool", ledger.crashes(item)))
            else:
                logger.warning(
                    "a worker process died with %d items in flight; re-running them one at a time", len(crashed)
                )
                suspects.extend(sorted(crashed, key=lambda it: it.index))
    except BaseException:
        # An abort, KeyboardInterrupt or a driver-side error: drop queued work and stop the items
        # that are running.
        if pool is not None:
            _terminate(pool)
            pool = None
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True)


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Shut ``pool`` down without waiting: cancel queued items, kill the running ones.

    Killing mid-item is safe because items write atomically: a killed item leaves only a
    temporary, which the next run removes, and is run again then. Waiting could take as long as
    the slowest item (a render), and on an abort every one of them would fail anyway.
    """
    processes = list((getattr(pool, "_processes", None) or {}).values())  # shutdown() drops this mapping
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=10)


def _collect(finished: set[Future], inflight: dict[Future, WorkItem], collector: ResultCollector) -> list[WorkItem]:
    """Wait for ``finished``, hand their results to the collector; return the items whose worker died.

    Raises :class:`~matseg.runner.environment.EnvironmentFailure` once every finished result is
    counted, if one of them (or a check of the output folder) says the job must stop.
    """
    wait(finished)
    crashed = []
    for fut in finished:
        item = inflight.pop(fut)
        try:
            collector.add(fut.result())
        except BrokenProcessPool:
            crashed.append(item)
        except Exception as exc:  # e.g. the result could not be pickled back
            collector.add(ItemResult(item.name, "failed", 0.0, reason=f"result not received: {describe_exception(exc)}"))
    collector.raise_if_aborted()
    return crashed
