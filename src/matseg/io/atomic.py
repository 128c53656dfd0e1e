"""Atomic file and folder writes: readers never see a half-written output."""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _create_temporary(path: Path) -> tuple[int, Path]:
    """Open a new file next to ``path`` named ``.<name>.<random>.tmp`` (see :func:`remove_stale_temporaries`).

    Mode 0o666 lets the kernel apply the umask (and a folder's default ACL) exactly as for any
    other new file, so outputs are 0644 under umask 022 and can be shared. ``tempfile.mkstemp``
    would make them 0600, and a chmod afterwards would need the umask, which a process can only
    read by changing it (racy with other threads) and which ignores default ACLs.
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temporary name for {path.name}")


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    The file gets the permissions of any newly created file (0644 under umask 022).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj, indent: int = 2) -> None:
    """Write strict JSON (NaN/inf become null, which every JSON reader accepts) atomically."""
    write_bytes_atomic(path, json_bytes(obj, indent))


def finite_json(obj):
    """``obj`` with non-finite floats replaced by None (Python's json would write bare NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    try:
        import numpy as np

        if isinstance(obj, np.floating):
            return finite_json(float(obj))
        if isinstance(obj, np.ndarray):
            return finite_json(obj.tolist())
    except ImportError:  # pragma: no cover
        pass
    return obj


def json_default(obj):
    # numpy scalars/arrays and paths appear in metadata; store them as plain JSON values.
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


TMP_PREFIX = ".tmp-"


@contextmanager
def atomic_folder(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder next to ``final``; on success rename it to ``final``.

    If ``final`` already exists (an unfinished folder left by another tool), it is moved to
    ``<parent>/.incomplete/<name>-<id>`` rather than deleted. On an exception the temporary
    folder is removed and ``final`` is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{TMP_PREFIX}{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            aside = final.parent / ".incomplete" / f"{final.name}-{uuid.uuid4().hex[:8]}"
            aside.parent.mkdir(exist_ok=True)
            os.replace(final, aside)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete temporary folders/files this package left in ``folder`` after a crash. Returns the count."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    n = 0
    for p in folder.iterdir():
        if p.name.startswith(TMP_PREFIX) or (p.name.startswith(".") and p.name.endswith(".tmp")):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            n += 1
    return n


def load_json(path: str | os.PathLike, error: type[Exception], what: str) -> object:
    """Parse a JSON file; any read or parse failure raises ``error("<path>: not a readable <what> (...)")``."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: not a readable {what} ({exc})") from None


def json_bytes(obj, indent: int = 2) -> bytes:
    """Strict, indented JSON of ``obj`` as UTF-8 bytes (non-finite floats become null)."""
    return (json.dumps(finite_json(obj), indent=indent, default=json_default, allow_nan=False) + "\n").encode("utf-8")


def write_folder(folder: str | os.PathLike, files: dict[str, bytes], marker: str = "Finished.txt") -> Path:
    """Write ``{relative path: bytes}`` as one atomic folder, the empty ``marker`` file last.

    Callers encode everything first, so a failure while encoding leaves no trace on disk; the
    files inside need no temporary names because the folder as a whole appears at once.
    """
    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        for rel, data in files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (tmp / marker).write_bytes(b"")
    return folder
