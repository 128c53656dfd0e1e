"""The folders the app may serve, and the one way to turn a request path into a file.

Every file the app reads on behalf of a request goes through :func:`resolve_inside`, which
resolves symlinks first and refuses anything that lands outside the root given on the command
line (``../``, absolute paths, symlinks pointing out).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class OutsideRoot(PermissionError):
    """A request named a file outside the folders the app was given."""


@dataclass(frozen=True)
class ServedRoot:
    """One folder from the command line: ``id`` is what URLs use (``data0``, ``results1``...)."""

    id: str
    kind: str  # "data", "results" or "bench"
    path: Path  # resolved

    @property
    def label(self) -> str:
        return self.path.name or str(self.path)


def make_roots(kind: str, folders: list[str | os.PathLike], must_exist: bool = True) -> list[ServedRoot]:
    """Resolve the folders of one kind; a missing folder raises ``FileNotFoundError`` naming it."""
    roots = []
    for i, folder in enumerate(folders):
        path = Path(folder).expanduser()
        if must_exist and not path.is_dir():
            raise FileNotFoundError(f"{folder}: not a folder")
        roots.append(ServedRoot(f"{kind}{i}", kind, path.resolve()))
    return roots


def resolve_inside(root: Path, relative: str, must_exist: bool = True) -> Path:
    """The file ``root/relative``, guaranteed to be inside ``root`` after resolving symlinks.

    Raises:
        OutsideRoot: ``relative`` is absolute, holds a NUL, or resolves outside ``root``.
        FileNotFoundError: ``must_exist`` and there is no such file or folder.
    """
    if "\x00" in relative or os.path.isabs(relative) or relative.startswith(("/", "\\")):
        raise OutsideRoot(f"{relative!r}: not a path inside the served folder")
    candidate = (root / relative).resolve(strict=False)
    if candidate != root and not candidate.is_relative_to(root):
        raise OutsideRoot(f"{relative!r}: outside the served folder {root}")
    if must_exist and not candidate.exists():
        raise FileNotFoundError(f"{relative}: not found in {root}")
    return candidate
