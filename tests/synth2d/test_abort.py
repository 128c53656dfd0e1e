"""`matseg synth2d` on a full disk or a lost output folder: one message, exit 3, finished scenes kept,
and a rerun after the fix completes the dataset (skipping what was finished)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from matseg import exit_codes
from matseg.cli import main
from matseg.io.dataset import find_samples, read_sample

SMALL = ["--set", "scene.size_min=96", "--set", "scene.size_max=160"]


def _run(out: Path, n: int = 10, *extra: str) -> int:
    return main(["synth2d", "--no-progress", "-n", str(n), "-o", str(out), "-w", "1", *SMALL, *extra])


def _patch_write_sample(monkeypatch, before_write) -> list[Path]:
    """Call ``before_write(call_number, folder)`` before each scene is written; return the calls."""
    import matseg.synth2d.job as job_module

    real, calls = job_module.write_folder, []

    def write_folder(folder, *args, **kwargs):
        calls.append(folder)
        before_write(len(calls), Path(folder))
        return real(folder, *args, **kwargs)

    monkeypatch.setattr(job_module, "write_folder", write_folder)
    return calls


def _assert_resumes(out: Path, kept: int, output_digest, tmp_path: Path, n: int = 10) -> None:
    assert _run(out, n) == exit_codes.OK
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["skipped"], summary["done"], summary["exit_code"]) == (kept, n - kept, 0)
    assert _run(tmp_path / "clean", n) == exit_codes.OK
    assert output_digest(out) == output_digest(tmp_path / "clean")


def test_full_disk_aborts_with_one_message_and_resumes(tmp_path, monkeypatch, capsys, output_digest):
    def disk_full_after_3(call: int, folder: Path) -> None:
        if call > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a write() reports it: no file name

    out = tmp_path / "out"
    calls = _patch_write_sample(monkeypatch, disk_full_after_3)
    assert _run(out) == exit_codes.ENVIRONMENT
    assert len(calls) == 4  # stopped at the first failure instead of failing the 6 other scenes too
    err = capsys.readouterr().err
    assert f"matseg synth2d: error: {out}: no space left on device (ENOSPC)" in err
    assert err.count("ENOSPC") == 1
    assert "job aborted; fix the problem, then rerun the same command: it skips the items already finished" in err
    assert [p.name for p in find_samples(out)] == ["000000", "000001", "000002"]
    for folder in find_samples(out):
        read_sample(folder)  # intact
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["exit_code"], summary["done"], summary["failed"]) == (3, 3, [])
    assert "ENOSPC" in summary["aborted"]

    monkeypatch.undo()  # space freed
    _assert_resumes(out, 3, output_digest, tmp_path)


def test_summary_that_cannot_be_written_is_printed_and_exits_3(tmp_path, monkeypatch, capsys):
    import matseg.io.atomic as atomic

    real = atomic.write_json_atomic

    def write_json_atomic(path, obj, **kwargs):
        if Path(path).name == "summary.json":  # the disk fills up with the last scene
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(path).parent / ".summary.json.x.tmp"))
        return real(path, obj, **kwargs)

    monkeypatch.setattr(atomic, "write_json_atomic", write_json_atomic)
    out = tmp_path / "out"
    assert _run(out, 2) == exit_codes.ENVIRONMENT
    err = capsys.readouterr().err
    assert "job 'synth2d': 2 items" in err and "done           2" in err  # the summary all the same
    assert f"cannot write {out / 'summary.json'}: " in err and "no space left on device (ENOSPC)" in err
    assert len(find_samples(out)) == 2 and not (out / "summary.json").exists()


def test_output_folder_deleted_mid_run_aborts(tmp_path, monkeypatch, capsys, output_digest):
    out = tmp_path / "out"

    def delete_before_4th(call: int, folder: Path) -> None:
        if call == 4:
            shutil.rmtree(out)

    _patch_write_sample(monkeypatch, delete_before_4th)
    assert _run(out) == exit_codes.ENVIRONMENT
    err = capsys.readouterr().err
    assert f"matseg synth2d: error: {out}: the output folder was deleted or moved during the run" in err
    monkeypatch.undo()
    _assert_resumes(out, 1, output_digest, tmp_path)  # scene 3 went into the new folder


def _unprivileged() -> list[str]:
    """Command prefix that runs as a user for whom permission bits count (root ignores them)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"] if setpriv else []
    if not prefix or subprocess.run([*prefix, sys.executable, "-c", "import matseg"], capture_output=True).returncode:
        pytest.skip("running as root and cannot switch to an unprivileged user")
    return prefix


def test_output_folder_made_read_only_mid_run_aborts(output_digest):
    prefix = _unprivileged()
    base = Path(tempfile.mkdtemp(prefix="matseg-readonly-"))  # not under pytest's root-only tmp
    try:
        base.chmod(0o777)
        out, n = base / "out", 300
        cmd = [*prefix, sys.executable, "-m", "matseg", "synth2d", "--no-progress", "-n", str(n), "-w", "1"]
        cmd += ["-o", str(out), *SMALL]
        env = {**os.environ, "HOME": str(base)}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while time.time() < deadline and (not out.is_dir() or len(find_samples(out)) < 3) and proc.poll() is None:
            time.sleep(0.01)
        out.chmod(0o555)
        try:
            _, err = proc.communicate(timeout=120)
        finally:
            out.chmod(0o755)
        kept = len(find_samples(out))
        assert proc.returncode == exit_codes.ENVIRONMENT, err
        assert 3 <= kept < n
        assert f"{out}/" in err and "permission denied (EACCES) in the output folder" in err
        assert err.count("EACCES") == 1 and "job aborted (summary.json not written); fix the problem" in err
        rerun = subprocess.run(cmd, env=env, capture_output=True, text=True)
        assert rerun.returncode == exit_codes.OK, rerun.stderr
        assert json.loads((out / "summary.json").read_text())["skipped"] == kept
        assert len(find_samples(out)) == n
    finally:
        shutil.rmtree(base, ignore_errors=True)
