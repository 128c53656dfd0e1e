"""Failures of the machine rather than of an item: disk full, output folder read-only, forbidden or gone.

Such a failure would repeat for every remaining item, so the runner stops the whole job at the
first one (:class:`EnvironmentFailure`) instead of failing item after item. An unreadable *input*
stays the item's own failure: only the output folder (``Job.out_dir``) is the environment's.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


def _codes(*names: str) -> frozenset[int]:
    return frozenset(getattr(errno, name) for name in names if hasattr(errno, name))  # not all exist everywhere


# Writing anywhere failed for lack of room or because the file system refuses writes: no item can
# cause or fix that, whichever path it was (the output folder, a scratch folder of a renderer).
NO_SPACE = _codes("ENOSPC", "EDQUOT")
ANYWHERE = NO_SPACE | _codes("EROFS")
# Refused access is the environment's only on the output folder; on an input it is a bad input.
IN_OUTPUT = _codes("EACCES", "EPERM", "ESTALE")
GONE = _codes("ENOENT", "ENOTDIR")


class EnvironmentFailure(Exception):
    """The job was aborted because its output cannot be written; finished items are kept.

    ``summary`` is the partial :class:`~matseg.runner.RunSummary` and ``out_dir`` the job's output
    folder, both set by :func:`~matseg.runner.run_job` (None when raised elsewhere).
    """

    def __init__(self, message: str, summary=None, out_dir: Path | None = None):
        super().__init__(message)
        self.summary = summary
        self.out_dir = out_dir


def _chain(exc: BaseException):
    """``exc`` and the exceptions it was raised from or while handling (``ItemError(...) from exc``,
    and also ``from None``, which only hides the context from tracebacks)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _under(path, folder: str) -> bool:
    if not isinstance(path, (str, os.PathLike)):  # bytes names and file descriptors: cannot tell
        return False
    path = os.path.abspath(os.fspath(path))
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _describe(err: OSError) -> str:
    name = errno.errorcode.get(err.errno, str(err.errno))
    return f"{os.strerror(err.errno).lower()} ({name})"


def environment_problem(exc: BaseException, out_dir: str | os.PathLike | None = None) -> str | None:
    """One line naming the path and the problem if ``exc`` is a failure of the environment, else None.

    Environmental: ENOSPC/EDQUOT/EROFS anywhere; EACCES/EPERM/ESTALE on a path under ``out_dir``;
    ENOENT/ENOTDIR once ``out_dir`` itself has disappeared. Exceptions chained to ``exc`` count too.
    """
    folder = os.path.abspath(os.fspath(out_dir)) if out_dir is not None else None
    for err in _chain(exc):
        if not isinstance(err, OSError) or err.errno is None:
            continue
        paths = [p for p in (err.filename, err.filename2) if p is not None]
        named = next((os.fspath(p) for p in paths if isinstance(p, (str, os.PathLike))), None)
        if err.errno in ANYWHERE:
            where = named or folder
            return f"{where}: {_describe(err)}" if where else _describe(err)
        if folder is None:
            continue
        inside = [os.fspath(p) for p in paths if _under(p, folder)]
        if err.errno in IN_OUTPUT and inside:
            return f"{inside[0]}: {_describe(err)} in the output folder"
        if err.errno in GONE and (inside or not paths) and not os.path.isdir(folder):
            return f"{folder}: the output folder disappeared during the run ({_describe(err)})"
    return None


class OutputFolderWatch:
    """Notices the output folder being deleted, moved, unmounted or replaced while the job runs.

    A deleted folder does not make items fail: the atomic writers create missing parents, so
    items would go on writing into a fresh empty folder. The watch holds the folder open, which
    also keeps a new folder from getting the old one's inode number, and compares the two.
    """

    def __init__(self, folder: str | os.PathLike | None):
        self.folder = Path(folder) if folder is not None else None
        self._fd: int | None = None
        if self.folder is not None and self.folder.is_dir():  # none yet: nothing to watch
            try:
                self._fd = os.open(self.folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            except OSError:  # e.g. Windows, where folders cannot be opened like this
                pass

    def problem(self) -> str | None:
        if self._fd is None:
            return None
        try:
            held = os.fstat(self._fd)
        except OSError:  # e.g. ESTALE: the folder was removed on the file server
            held = None
        try:
            now = os.stat(self.folder)
        except OSError:
            now = None
        intact = held is not None and held.st_nlink > 0  # a deleted folder has no links left
        if intact and now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            return None
        if now is None:
            return (f"{self.folder}: the output folder disappeared during the run "
                    "(deleted, moved, unmounted or no longer accessible)")  # fmt: skip
        return f"{self.folder}: the output folder was deleted or moved during the run, and a new folder took its place"

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
