"""Tests for matseg.runner: seeds, backends agree byte for byte, failures/crashes stay per item."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from matseg.io.atomic import atomic_folder
from matseg.runner import (
    ItemError,
    ItemResult,
    RunnerOptions,
    RunSummary,
    WorkItem,
    derive_seed,
    execute_item,
    run_job,
)


class ValueJob:
    """Writes ``<out>/<name>/value.txt`` from ``default_rng(item.seed)``; misbehaves on demand.

    ``behaviour`` maps item index -> "item_error" | "zero" | "flaky" | "crash" | "interrupt" | "warn".
    """

    name = "value"

    def __init__(self, out: Path, n: int = 8, master_seed: int = 7, behaviour: dict[int, str] | None = None):
        self.out = Path(out)
        self.n = n
        self.master_seed = master_seed
        self.behaviour = behaviour or {}
        self.driver_pid = os.getpid()
        self.setup_pid: int | None = None

    def items(self) -> list[WorkItem]:
        return [WorkItem(i, f"{i:06d}", derive_seed(self.master_seed, i)) for i in range(self.n)]

    def is_done(self, item: WorkItem) -> bool:
        return (self.out / item.name / "done").exists()

    def setup(self) -> None:
        self.setup_pid = os.getpid()

    def run(self, item: WorkItem) -> dict:
        assert self.setup_pid == os.getpid(), "setup() must run in the worker before run()"
        kind = self.behaviour.get(item.index)
        if kind == "item_error":
            raise ItemError(f"unreadable input for {item.name}")
        if kind == "zero":
            return {"x": 1 / 0}
        if kind == "flaky":
            marker = self.out / f".flaky-{item.name}"
            if not marker.exists():
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
                raise RuntimeError("transient failure")
        if kind == "interrupt":
            raise KeyboardInterrupt
        if kind == "crash":
            if os.getpid() == self.driver_pid:  # never kill the test process itself
                raise RuntimeError("crash requested in the driver process")
            os._exit(1)
        value = np.random.default_rng(item.seed).random()
        with atomic_folder(self.out / item.name) as tmp:
            (tmp / "value.txt").write_text(f"{value!r}\n")
            (tmp / "pid.txt").write_text(f"{os.getpid()}\n")
            (tmp / "done").touch()
        info: dict = {"pid": os.getpid()}
        if kind == "warn":
            info["warnings"] = ["input foo.png unreadable, used fallback", "input foo.png unreadable, used fallback"]
        return info


class DiesOnLoadJob(ValueJob):
    """Kills any worker process that loads it: a systematic start-up failure, not an item's fault."""

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if os.getpid() != self.driver_pid:
            os._exit(3)


def outputs(out: Path) -> dict[str, bytes]:
    # Hidden folders are temporaries of items whose process was killed mid-write (atomic_folder).
    return {p.parent.name: p.read_bytes() for p in sorted(out.glob("[!.]*/value.txt"))}


def opts(**kw) -> RunnerOptions:
    return RunnerOptions(progress=False, **kw)


# --------------------------------------------------------------------------- seeds


def test_derive_seed_deterministic_distinct_and_matches_formula():
    seeds = [derive_seed(1234, i) for i in range(10_000)]
    assert len(set(seeds)) == 10_000
    assert all(isinstance(s, int) and 0 <= s < 2**63 for s in seeds)
    assert seeds[:50] == [derive_seed(1234, i) for i in range(50)]
    assert derive_seed(1234, 5) != derive_seed(1235, 5)
    w = np.random.SeedSequence([1234, 5]).generate_state(2, np.uint32)
    assert derive_seed(1234, 5) == ((int(w[0]) << 32) | int(w[1])) & (2**63 - 1)
    with pytest.raises(ValueError):
        derive_seed(-1, 0)


# --------------------------------------------------------------------------- execute_item


def test_execute_item_reasons_and_warnings(tmp_path):
    job = ValueJob(tmp_path, behaviour={1: "item_error", 2: "zero", 3: "warn"})
    job.setup()
    items = job.items()
    ok, bad, bug, warned = (execute_item(job, items[i]) for i in range(4))
    assert isinstance(ok, ItemResult) and ok.status == "done" and ok.info == {"pid": os.getpid()}
    assert bad.status == "failed" and bad.reason == "unreadable input for 000001"
    assert bug.status == "failed" and bug.reason.startswith("ZeroDivisionError: division by zero (at test_runner.py:")
    assert "\n" not in bug.reason
    assert warned.warnings == ["input foo.png unreadable, used fallback"] * 2 and "warnings" not in warned.info


# --------------------------------------------------------------------------- local backends


def test_inline_and_pool_identical_and_rerun_skips(tmp_path):
    inline = run_job(ValueJob(tmp_path / "a"), opts(workers=1))
    pooled = run_job(ValueJob(tmp_path / "b"), opts(workers=2))
    assert (inline.backend, inline.workers) == ("inline", 1)
    assert (pooled.backend, pooled.workers) == ("processes", 2)
    for s in (inline, pooled):
        assert (s.total, s.done, s.skipped, s.failed, s.exit_code) == (8, 8, 0, [], 0)
        assert len(s.item_seconds) == 8
    a, b = outputs(tmp_path / "a"), outputs(tmp_path / "b")
    assert len(a) == 8 and a == b
    assert len(set(a.values())) == 8  # each item drew from its own seed

    again = run_job(ValueJob(tmp_path / "b"), opts(workers=2))
    assert (again.total, again.done, again.skipped, again.failed) == (8, 0, 8, [])
    assert outputs(tmp_path / "b") == b


@pytest.mark.parametrize("workers", [1, 2])
def test_failures_are_per_item(tmp_path, workers):
    s = run_job(ValueJob(tmp_path, behaviour={3: "item_error", 5: "zero"}), opts(workers=workers))
    assert (s.done, s.skipped, s.exit_code) == (6, 0, 1)
    reasons = dict(s.failed)
    assert list(reasons) == ["000003", "000005"]
    assert reasons["000003"] == "unreadable input for 000003"
    assert reasons["000005"].startswith("ZeroDivisionError: division by zero (at test_runner.py:")
    assert set(outputs(tmp_path)) == {f"{i:06d}" for i in (0, 1, 2, 4, 6, 7)}
    text = s.format()
    assert "000005" in text and "ZeroDivisionError" in text
    assert s.to_dict()["failed"][0] == {"name": "000003", "reason": "unreadable input for 000003"}


def test_retry_recovers_flaky_item(tmp_path):
    flaky = {2: "flaky"}
    failed = run_job(ValueJob(tmp_path / "a", n=4, behaviour=flaky), opts(workers=1))
    assert [n for n, _ in failed.failed] == ["000002"]
    assert failed.failed[0][1].startswith("RuntimeError: transient failure")

    retried = run_job(ValueJob(tmp_path / "b", n=4, behaviour=flaky), opts(workers=1, retries=1))
    assert (retried.done, retried.failed, retried.exit_code) == (4, [], 0)
    assert (tmp_path / "b" / ".flaky-000002").exists()  # it did fail once


def test_worker_crash_fails_only_that_item(tmp_path):
    s = run_job(ValueJob(tmp_path, n=6, behaviour={2: "crash"}), opts(workers=2))
    assert (s.done, s.skipped) == (5, 0)
    assert [n for n, _ in s.failed] == ["000002"]
    assert "worker process died" in s.failed[0][1]
    assert set(outputs(tmp_path)) == {f"{i:06d}" for i in (0, 1, 3, 4, 5)}


def test_worker_startup_failure_stops_the_run(tmp_path):
    with pytest.raises(RuntimeError, match="start-up"):
        run_job(DiesOnLoadJob(tmp_path, n=4), opts(workers=2))
    assert outputs(tmp_path) == {}


def test_warnings_are_counted_per_item(tmp_path):
    s = run_job(ValueJob(tmp_path, n=5, behaviour={1: "warn", 4: "warn"}), opts(workers=1))
    assert s.warnings == {"input foo.png unreadable, used fallback": 2}
    assert "2x  input foo.png unreadable" in s.format()


def test_workers_recycled_after_max_items(tmp_path):
    s = run_job(ValueJob(tmp_path, n=6), opts(workers=2, max_items_per_worker=2))
    assert (s.done, s.failed) == (6, [])
    pids = {(tmp_path / f"{i:06d}" / "pid.txt").read_text() for i in range(6)}
    assert len(pids) >= 3


@pytest.mark.parametrize("workers", [1, 2])
def test_interrupt_prints_partial_summary_and_reraises(tmp_path, capsys, workers):
    with pytest.raises(KeyboardInterrupt):
        run_job(ValueJob(tmp_path, n=40, behaviour={2: "interrupt"}), opts(workers=workers))
    err = capsys.readouterr().err
    assert "INTERRUPTED" in err and "job 'value': 40 items" in err
    assert len(outputs(tmp_path)) < 40  # pending items were not run


def test_summary_format_caps_long_listings():
    failed = [(f"{i:06d}", "ItemError") for i in range(30)]
    s = RunSummary("j", 40, 10, 0, failed, {}, 2.0, 2, "processes", [0.5] * 10)
    text = s.format()
    assert "000019" in text and "000020" not in text and "... and 10 more" in text
    assert s.items_per_s == pytest.approx(5.0) and s.exit_code == 1


# --------------------------------------------------------------------------- Ray


@pytest.mark.ray
def test_ray_matches_inline(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason="ray not installed (pip install 'matseg[ray]')")
    assert not ray.is_initialized()
    # Ray >= 2.5x turns on token auth for new local clusters (and writes ~/.ray/auth_token);
    # a throwaway test cluster opts out explicitly. Never attach to an outside cluster.
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # Ray workers import the job class by module name; make this test module importable there.
    here = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))

    behaviour = {1: "crash", 4: "item_error"}
    inline = run_job(ValueJob(tmp_path / "a", n=7, behaviour=behaviour), opts(workers=1))
    try:
        s = run_job(ValueJob(tmp_path / "b", n=7, behaviour=behaviour), opts(ray=True, workers=2, max_items_per_worker=2))
    finally:
        if ray.is_initialized():  # the runner should have shut down the instance it started
            ray.shutdown()
            pytest.fail("run_job left Ray running")
    assert (s.backend, s.workers, s.total, s.done, s.skipped) == ("ray", 2, 7, 5, 0)
    assert [n for n, _ in s.failed] == [n for n, _ in inline.failed] == ["000001", "000004"]
    assert "worker process died" in s.failed[0][1]  # the actor died; the run went on
    assert s.failed[1] == inline.failed[1] == ("000004", "unreadable input for 000004")
    assert outputs(tmp_path / "a") == outputs(tmp_path / "b")
    assert len(outputs(tmp_path / "b")) == 5
    pids = {p.read_text() for p in (tmp_path / "b").glob("*/pid.txt")}
    assert len(pids) >= 3  # actors were replaced after 2 items each
