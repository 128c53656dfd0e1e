"""Batch runner shared by every batch stage: one job, many items, inline / process pool / Ray.

A stage implements the :class:`Job` protocol (``items``, ``is_done``, ``setup``, ``run``) and calls
:func:`run_job`; the runner skips finished items, runs the rest in parallel, isolates failures and
worker crashes per item, stops the job at a failure of the environment (disk full, output folder
read-only or gone: :class:`EnvironmentFailure`), shows progress and returns a :class:`RunSummary`.
"""

from .core import ItemError, ItemResult, Job, RunnerOptions, WorkItem, derive_seed, execute_item
from .driver import run_job
from .environment import EnvironmentFailure, environment_problem
from .summary import RunSummary

__all__ = [
    "EnvironmentFailure",
    "ItemError",
    "ItemResult",
    "Job",
    "RunSummary",
    "RunnerOptions",
    "WorkItem",
    "derive_seed",
    "environment_problem",
    "execute_item",
    "run_job",
]
