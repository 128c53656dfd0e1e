"""A failure of the environment (disk full, output folder read-only or gone) stops the whole job at
once, keeps the finished items and lets a rerun resume; an unreadable input stays the item's failure."""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from matseg import exit_codes
from matseg.io.atomic import atomic_folder
from matseg.runner import (
    EnvironmentFailure,
    ItemError,
    RunnerOptions,
    WorkItem,
    derive_seed,
    environment_problem,
    run_job,
)


class DiskJob:
    """Writes ``<root>/out/<name>/value.txt``; once ``k`` items are finished on disk, ``problem``
    makes every further write fail the way the environment would:

    "enospc" (disk full: a write without a file name), "eacces" (permission denied under the
    output folder), "chmod" (makes the output folder really read-only, then writes), "delete"
    (deletes the output folder, then writes, which creates it anew). "input" makes items ``bad``
    fail with EACCES on an input file instead. Each attempt leaves a mark in ``<root>/attempts``.
    """

    name = "disk"

    def __init__(self, root: Path, n: int = 40, k: int = 5, problem: str | None = None,
                 bad: tuple[int, ...] = (), sleepy: tuple[int, ...] = ()):  # fmt: skip
        self.root = Path(root)
        self.out_dir = self.root / "out"
        self.out_dir.mkdir(parents=True, exist_ok=True)  # as the CLI's open_run does; watched from the start
        self.n, self.k, self.problem, self.bad, self.sleepy = n, k, problem, bad, sleepy

    def items(self) -> list[WorkItem]:
        return [WorkItem(i, f"{i:06d}", derive_seed(3, i)) for i in range(self.n)]

    def is_done(self, item: WorkItem) -> bool:
        return (self.out_dir / item.name / "done").exists()

    def setup(self) -> None:
        pass

    def run(self, item: WorkItem) -> None:
        attempts = self.root / "attempts"
        attempts.mkdir(exist_ok=True)
        (attempts / item.name).touch()
        if item.index in self.sleepy:
            time.sleep(90)
        if item.index in self.bad:
            raise PermissionError(errno.EACCES, "Permission denied", str(self.root / "inputs" / f"{item.name}.png"))
        hit = self.problem is not None and len(finished(self.out_dir)) >= self.k
        if hit and self.problem == "delete" and not (self.root / "deleted").exists():
            (self.root / "deleted").touch()
            os.rename(self.out_dir, self.root / "trash")  # at once, even while another worker writes there
            shutil.rmtree(self.root / "trash", ignore_errors=True)
        if hit and self.problem == "chmod":
            self.out_dir.chmod(0o555)
        with atomic_folder(self.out_dir / item.name) as tmp:
            (tmp / "value.txt").write_text(f"{np.random.default_rng(item.seed).random()!r}\n")
            if hit and self.problem == "enospc":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            if hit and self.problem == "eacces":
                raise PermissionError(errno.EACCES, "Permission denied", str(tmp / "value.txt"))
            (tmp / "done").touch()


def finished(out: Path) -> dict[str, str]:
    return {p.parent.name: (p.parent / "value.txt").read_text() for p in sorted(Path(out).glob("[!.]*/done"))}


def attempted(root: Path) -> set[str]:
    return {p.name for p in (root / "attempts").iterdir()}


def opts(**kw) -> RunnerOptions:
    return RunnerOptions(progress=False, **kw)


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict[str, str]:
    """The outputs of an undisturbed run, to compare resumed runs with."""
    root = tmp_path_factory.mktemp("clean")
    run_job(DiskJob(root), opts(workers=1))
    return finished(root / "out")


def _abort(job: DiskJob, workers: int) -> EnvironmentFailure:
    with pytest.raises(EnvironmentFailure) as info:
        run_job(job, opts(workers=workers))
    return info.value


def _resume_completes(root: Path, clean: dict[str, str], kept: int) -> None:
    again = run_job(DiskJob(root), opts(workers=2))
    assert (again.skipped, again.done, again.failed, again.exit_code) == (kept, 40 - kept, [], exit_codes.OK)
    assert finished(root / "out") == clean


# --------------------------------------------------------------------------- classification


def test_environment_problem_tells_the_environment_from_a_bad_input(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    full = OSError(errno.ENOSPC, "No space left on device")
    assert environment_problem(full, out) == f"{out}: no space left on device (ENOSPC)"
    assert "disk quota exceeded (EDQUOT)" in environment_problem(OSError(errno.EDQUOT, "x", "/scratch/f"))
    assert environment_problem(OSError(errno.EROFS, "x", "/scratch/f")) == "/scratch/f: read-only file system (EROFS)"

    denied_out = PermissionError(errno.EACCES, "Permission denied", str(out / "000001" / "a.png"))
    expected = f"{out / '000001' / 'a.png'}: permission denied (EACCES) in the output folder"
    assert environment_problem(denied_out, out) == expected
    denied_in = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "inputs" / "a.png"))
    assert environment_problem(denied_in, out) is None  # an unreadable input is the item's fault
    assert environment_problem(denied_out, None) is None  # no output folder known: cannot tell
    assert environment_problem(ValueError("bad value"), out) is None

    missing = FileNotFoundError(errno.ENOENT, "No such file", str(out / "x.json"))
    assert environment_problem(missing, out) is None  # the folder is there: a missing file is a bug
    out.rmdir()
    assert "output folder disappeared" in environment_problem(missing, out)

    # Wrapped by the item's own handling, even with `from None`.
    try:
        try:
            raise full
        except OSError:
            raise ItemError("could not save the scene") from None
    except ItemError as wrapped:
        assert "(ENOSPC)" in environment_problem(wrapped, out)


# --------------------------------------------------------------------------- backends


@pytest.mark.parametrize("workers", [1, 2])
def test_full_disk_aborts_at_once_keeps_finished_and_resumes(tmp_path, clean, capsys, workers):
    failure = _abort(DiskJob(tmp_path, problem="enospc"), workers)
    kept = finished(tmp_path / "out")
    assert 5 <= len(kept) <= 5 + workers - 1
    assert {n: clean[n] for n in kept} == kept  # finished items intact
    # Scheduling stopped at the first failure: at most one more item per worker was started.
    assert len(attempted(tmp_path)) <= len(kept) + workers
    assert str(failure) == f"{tmp_path / 'out'}: no space left on device (ENOSPC)"
    s = failure.summary
    assert (s.exit_code, s.aborted, s.failed) == (exit_codes.ENVIRONMENT, str(failure), [])
    assert failure.out_dir == tmp_path / "out"
    assert s.done <= len(kept) and s.to_dict()["exit_code"] == 3
    err = capsys.readouterr().err
    assert "ABORTED" in err and "job 'disk': 40 items" in err
    _resume_completes(tmp_path, clean, len(kept))


@pytest.mark.parametrize("workers", [1, 2])
def test_permission_denied_on_output_aborts_but_unreadable_input_fails_the_item(tmp_path, clean, workers):
    failure = _abort(DiskJob(tmp_path, problem="eacces", bad=(1, 3)), workers)
    assert "permission denied (EACCES) in the output folder" in str(failure)
    assert str(tmp_path / "out") in str(failure)
    assert [name for name, _ in failure.summary.failed] == ["000001", "000003"]
    assert "inputs" in failure.summary.failed[0][1]
    assert len(attempted(tmp_path)) < 40
    _resume_completes(tmp_path, clean, len(finished(tmp_path / "out")))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders (test_abort.py covers this as root)")
@pytest.mark.parametrize("workers", [1, 2])
def test_output_folder_made_read_only_aborts(tmp_path, clean, workers):
    try:
        failure = _abort(DiskJob(tmp_path, problem="chmod"), workers)
    finally:
        (tmp_path / "out").chmod(0o755)
    assert "permission denied (EACCES) in the output folder" in str(failure)
    assert len(attempted(tmp_path)) < 40
    _resume_completes(tmp_path, clean, len(finished(tmp_path / "out")))


@pytest.mark.parametrize("workers", [1, 2])
def test_output_folder_deleted_mid_run_aborts(tmp_path, clean, workers):
    failure = _abort(DiskJob(tmp_path, problem="delete"), workers)
    out = tmp_path / "out"
    assert str(failure).startswith(f"{out}: the output folder ")
    assert "a new folder took its place" in str(failure) or "disappeared" in str(failure)
    assert len(attempted(tmp_path)) <= 5 + 3 * workers
    _resume_completes(tmp_path, clean, len(finished(out)))


def test_abort_kills_running_items_instead_of_waiting(tmp_path):
    start = time.perf_counter()
    _abort(DiskJob(tmp_path, n=6, k=0, problem="enospc", sleepy=(0,)), 2)
    assert time.perf_counter() - start < 45  # item 0 sleeps 90 s
    assert finished(tmp_path / "out") == {}


def test_setup_meeting_a_full_disk_aborts(tmp_path):
    class FullSetup(DiskJob):
        def setup(self) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.root / "cache.bin"))

    failure = _abort(FullSetup(tmp_path), 1)
    assert str(failure) == f"worker setup failed: {tmp_path / 'cache.bin'}: no space left on device (ENOSPC)"
    assert failure.summary.failed == []


@pytest.mark.ray
def test_ray_aborts_on_full_disk(tmp_path, clean, monkeypatch):
    ray = pytest.importorskip("ray", reason="ray not installed (pip install 'matseg[ray]')")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # see test_runner.test_ray_matches_inline
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    here = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))
    with pytest.raises(EnvironmentFailure, match=r"no space left on device \(ENOSPC\)") as info:
        run_job(DiskJob(tmp_path, problem="enospc"), opts(ray=True, workers=2))
    assert not ray.is_initialized()
    assert info.value.summary.backend == "ray" and info.value.summary.exit_code == exit_codes.ENVIRONMENT
    kept = finished(tmp_path / "out")
    assert 5 <= len(kept) <= 6 and len(attempted(tmp_path)) <= len(kept) + 2
    _resume_completes(tmp_path, clean, len(kept))
