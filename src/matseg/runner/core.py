"""Contracts shared by every backend: work items, results, the job protocol, and ``execute_item``.

Every backend (inline, process pool, Ray) runs an item through :func:`execute_item` inside a
:class:`WorkerState`, so timing, error capture, retries and warning collection are identical
whichever backend is used.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pickle
import time
import traceback
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .environment import environment_problem

logger = logging.getLogger(__name__)

_SEED_MASK = (1 << 63) - 1
_MAX_REASON_CHARS = 500

# Native thread pools read these once, when their library loads; one thread per worker process
# keeps N workers from oversubscribing N cores.
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def derive_seed(master_seed: int, index: int) -> int:
    """Per-item seed derived from the run's master seed.

    ``np.random.SeedSequence([master_seed, index]).generate_state(2, np.uint32)`` gives two
    32-bit words ``(w0, w1)``; the seed is ``((w0 << 32) | w1) & (2**63 - 1)``. The result is a
    Python ``int`` in ``[0, 2**63)``, identical on every machine and independent of which worker
    runs the item. Both arguments must be non-negative.
    """
    import numpy as np  # lazy: worker processes set thread env vars before numpy loads

    if master_seed < 0 or index < 0:
        raise ValueError(f"master_seed and index must be >= 0, got {master_seed}, {index}")
    w0, w1 = np.random.SeedSequence([master_seed, index]).generate_state(2, np.uint32)
    return ((int(w0) << 32) | int(w1)) & _SEED_MASK


@dataclass(frozen=True)
class WorkItem:
    """One unit of work: ``name`` is its output name (e.g. ``"000123"``), ``seed`` its private RNG seed."""

    index: int
    name: str
    seed: int


@dataclass
class ItemResult:
    """Outcome of one item. ``reason`` is a single line, set only when ``status != "done"``.

    ``"aborted"``: the item met a failure of the environment (disk full, output folder read-only
    or gone; see :mod:`matseg.runner.environment`); it is not the item's fault and stops the job.
    """

    name: str
    status: str  # "done" | "failed" | "aborted"
    seconds: float
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)


class ItemError(Exception):
    """Expected per-item problem (bad input, generation gave up): reported by message, without traceback."""


@runtime_checkable
class Job(Protocol):
    """What the runner needs from a batch stage. Must be picklable: it is sent to every worker.

    - ``items()``: every item of the batch (the runner skips those already done).
    - ``is_done(item)``: called in the driver before dispatch; True -> counted as skipped.
    - ``setup()``: called once per worker process before its first item (load caches, models).
    - ``run(item)``: does the work and writes its outputs atomically itself. May return an info
      dict; a ``"warnings"`` entry (list of str) is moved to :attr:`ItemResult.warnings`.
      Must derive all randomness from ``item.seed`` so outputs do not depend on the worker count.
    - ``out_dir`` (optional attribute): the output folder. Permission errors under it, and its
      disappearance, abort the job as failures of the environment instead of failing items.
    """

    name: str

    def items(self) -> list[WorkItem]: ...

    def is_done(self, item: WorkItem) -> bool: ...

    def setup(self) -> None: ...

    def run(self, item: WorkItem) -> dict | None: ...


@dataclass
class RunnerOptions:
    """How :func:`~matseg.runner.run_job` executes a job.

    ``workers``: None or 0 = one per available core; 1 = run in this process (no pool); with Ray,
    None = one actor per CPU of the cluster. ``ray_address`` implies ``ray``. ``max_items_per_worker``
    recycles a worker process after that many items (for leaky hosts such as Blender).
    ``retries`` re-runs a failed or crashed item that many times before reporting it failed.
    """

    workers: int | None = None
    ray: bool = False
    ray_address: str | None = None
    max_items_per_worker: int | None = None
    retries: int = 0
    progress: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.max_items_per_worker is not None and self.max_items_per_worker < 1:
            raise ValueError(f"max_items_per_worker must be >= 1, got {self.max_items_per_worker}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")

    @property
    def use_ray(self) -> bool:
        return self.ray or self.ray_address is not None


def describe_exception(exc: BaseException) -> str:
    """One-line failure reason.

    :class:`ItemError` -> its message. Anything else -> ``"TypeName: message (at file.py:12 in fn)"``,
    naming the innermost traceback frame so an unexpected bug can be located from the summary.
    """
    message = " ".join(str(exc).split())
    if isinstance(exc, ItemError):
        reason = message or type(exc).__name__
    else:
        reason = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
        frames = traceback.extract_tb(exc.__traceback__)
        if frames:
            last = frames[-1]
            reason += f" (at {os.path.basename(last.filename)}:{last.lineno} in {last.name})"
    if len(reason) > _MAX_REASON_CHARS:
        reason = reason[: _MAX_REASON_CHARS - 3] + "..."
    return reason


def _split_info(returned: object) -> tuple[dict, list[str]]:
    """Normalise ``Job.run``'s return value into ``(info, warnings)``."""
    if returned is None:
        return {}, []
    if not isinstance(returned, dict):
        raise TypeError(f"Job.run must return a dict or None, got {type(returned).__name__}")
    info = dict(returned)
    warnings = info.pop("warnings", None) or []
    if isinstance(warnings, str):  # a lone string is one warning, not a list of characters
        warnings = [warnings]
    return info, [str(w) for w in warnings]


def execute_item(job: Job, item: WorkItem, retries: int = 0) -> ItemResult:
    """Run ``job.run(item)`` up to ``1 + retries`` times; never raises an ``Exception``.

    ``seconds`` covers all attempts. Unexpected exceptions are logged with their traceback in the
    process that ran the item; :class:`ItemError` is reported by its message only. A failure of
    the environment is reported at once as ``"aborted"`` (a retry would meet the same full disk).
    """
    attempts = 1 + max(0, retries)
    start = time.perf_counter()
    for attempt in range(1, attempts + 1):
        try:
            info, warnings = _split_info(job.run(item))
        except Exception as exc:
            problem = environment_problem(exc, getattr(job, "out_dir", None))
            if problem:
                logger.debug("item %s aborted: %s", item.name, problem, exc_info=exc)
                return ItemResult(item.name, "aborted", time.perf_counter() - start, reason=problem)
            reason = describe_exception(exc)
            if attempt < attempts:
                logger.info("item %s failed (%s); retry %d/%d", item.name, reason, attempt, retries)
                continue
            if not isinstance(exc, ItemError):
                logger.warning("item %s failed", item.name, exc_info=exc)
            if attempts > 1:
                reason += f" [after {attempts} attempts]"
            return ItemResult(item.name, "failed", time.perf_counter() - start, reason=reason)
        return ItemResult(item.name, "done", time.perf_counter() - start, warnings=warnings, info=info)
    raise AssertionError("unreachable")


def limit_native_threads() -> None:
    """Default the native thread-pool sizes of this process to 1 (explicit user settings win)."""
    for var in THREAD_ENV_VARS:
        os.environ.setdefault(var, "1")


def _limit_opencv_threads() -> None:
    # OpenCV's own pool ignores OMP_NUM_THREADS; only touch it if the package exists.
    if importlib.util.find_spec("cv2") is None:
        return
    import cv2

    cv2.setNumThreads(1)


class WorkerState:
    """What one worker (the driver itself, a pool process or a Ray actor) holds between items.

    ``job.setup()`` runs once, here. If it fails (or, in a worker process, the job cannot be
    unpickled) the worker stays alive and reports every item it is given as failed with that
    reason, instead of dying and taking in-flight items with it.
    """

    def __init__(self, job: Job | None, setup_error: str = ""):
        self.job = job
        self.setup_error = setup_error
        self.setup_status = "failed"  # "aborted" if setup met a failure of the environment
        if job is not None and not setup_error:
            try:
                job.setup()
            except Exception as exc:
                problem = environment_problem(exc, getattr(job, "out_dir", None))
                self.setup_status = "aborted" if problem else "failed"
                self.setup_error = problem or describe_exception(exc)
                logger.error("setup of job %r failed", getattr(job, "name", "?"), exc_info=exc)

    @classmethod
    def for_worker_process(cls, job_blob: bytes) -> "WorkerState":
        """Build the state in a fresh worker process from the pickled job.

        Thread limits are applied before unpickling, i.e. before the job's module imports
        numpy/OpenCV and their thread pools are sized.
        """
        limit_native_threads()
        try:
            job = pickle.loads(job_blob)
            _limit_opencv_threads()
        except Exception as exc:
            logger.error("could not load the job in worker process %d", os.getpid(), exc_info=exc)
            return cls(None, setup_error=describe_exception(exc))
        return cls(job)

    def run(self, item: WorkItem, retries: int) -> ItemResult:
        if self.setup_error or self.job is None:
            return ItemResult(item.name, self.setup_status, 0.0, reason=f"worker setup failed: {self.setup_error}")
        return execute_item(self.job, item, retries)


def worker_died_result(item: WorkItem, detail: str, attempts: int = 1) -> ItemResult:
    """Result for an item whose worker vanished while running it (OOM kill, segfault, ``os._exit``)."""
    reason = f"worker process died while running this item (out of memory, crash or exit; {detail})"
    if attempts > 1:
        reason += f" [after {attempts} attempts]"
    return ItemResult(item.name, "failed", 0.0, reason=reason)


class CrashLedger:
    """Counts worker deaths per item so that a crash is retried like an exception (``retries`` times)."""

    def __init__(self, retries: int):
        self.retries = max(0, retries)
        self._crashes: dict[str, int] = {}

    def should_retry(self, item: WorkItem) -> bool:
        """Record one crash of ``item``; True if it may run again."""
        self._crashes[item.name] = self.crashes(item) + 1
        return self._crashes[item.name] <= self.retries

    def crashes(self, item: WorkItem) -> int:
        return self._crashes.get(item.name, 0)
