"""Photo and texture libraries of any size: listing, header scan, and a reusable index.

A library is a folder (searched recursively, hidden entries skipped) or a text file that lists
image paths, one a line (``#`` comments and blank lines ignored; relative paths are relative to
the list's folder). Scanning reads each file's header once (its upright size); the result is
kept in an index file under the cache folder, keyed by the library's absolute path, and reused
by later runs for every file whose size and modification time are unchanged. The user's
library is never written to.

Cache folder: ``$MATSEG_CACHE_DIR``, else ``$XDG_CACHE_HOME/matseg``, else ``~/.cache/matseg``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from matseg.io.images import ImageReadError, list_images, read_image_info

logger = logging.getLogger(__name__)

INDEX_FORMAT = "matseg-library-index 1"


def cache_dir() -> Path:
    """The user-wide cache folder of matseg (see the module docstring)."""
    if os.environ.get("MATSEG_CACHE_DIR"):
        return Path(os.environ["MATSEG_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "matseg"


@dataclass
class LibraryScan:
    """What a scan found: parallel columns over the usable images, plus the rejected files.

    Attributes:
        root: the folder (or the list file's folder) labels are relative to.
        paths: absolute path per usable image (str: a Path object per file costs ~10x the memory).
        labels: POSIX path relative to ``root`` when inside it, else the path as listed.
        widths, heights: ``(N,)`` int32 upright size from the header.
        bad: ``path -> reason`` for files that are not readable images.
        reused: how many headers came from the index instead of the file.
    """

    root: Path
    paths: list[str]
    labels: list[str]
    widths: np.ndarray
    heights: np.ndarray
    bad: dict[str, str]
    reused: int = 0


def read_file_list(path: str | os.PathLike) -> list[str]:
    """Absolute paths listed in a text file (one a line; ``#`` comments, blank lines ignored)."""
    path = Path(path)
    base = path.resolve().parent
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file listing image paths") from None
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out.append(line if os.path.isabs(line) else str(base / line))
    return out


def list_library(source: str | os.PathLike) -> tuple[Path, list[str]]:
    """``(root, image paths)`` of a folder or a list file.

    Raises:
        FileNotFoundError: ``source`` does not exist (message names it).
    """
    source = Path(source)
    if source.is_dir():
        root = source.resolve()
        return root, [str(p) for p in list_images(root)]
    if source.is_file():
        return source.resolve().parent, read_file_list(source)
    raise FileNotFoundError(f"{source}: no such folder or file list")


def index_path(source: str | os.PathLike) -> Path:
    key = hashlib.sha256(str(Path(source).resolve()).encode()).hexdigest()[:24]
    return cache_dir() / "libraries" / f"{key}.tsv"


def _load_index(path: Path) -> dict[str, tuple[int, int, int, int, str]]:
    """``path -> (size, mtime_ns, width, height, error)`` from an index file (empty when unusable)."""
    try:
        with open(path, encoding="utf-8") as fh:
            if fh.readline().rstrip("\n") != INDEX_FORMAT:
                return {}
            out = {}
            for line in fh:
                p, size, mtime, w, h, err = line.rstrip("\n").split("\t")
                out[p] = (int(size), int(mtime), int(w), int(h), err)
            return out
    except (OSError, ValueError):
        return {}


def _save_index(path: Path, rows: list[tuple[str, int, int, int, int, str]]) -> None:
    from matseg.io.atomic import write_text_atomic

    lines = [INDEX_FORMAT] + [f"{p}\t{s}\t{m}\t{w}\t{h}\t{e}" for p, s, m, w, h, e in rows]
    try:
        write_text_atomic(path, "\n".join(lines) + "\n")
    except OSError as exc:  # a read-only home must not stop a run: the next run scans again
        logger.warning("cannot write the library index %s (%s); the next run will scan again", path, exc)


def scan_library(source: str | os.PathLike, use_index: bool = True) -> LibraryScan:
    """Header scan of a library, reusing and refreshing its index (see the module docstring)."""
    root, files = list_library(source)
    index_file = index_path(source)
    known = _load_index(index_file) if use_index else {}
    paths, labels, widths, heights, bad, rows = [], [], [], [], {}, []
    reused = 0
    prefix = str(root).rstrip(os.sep) + os.sep
    for p in files:
        try:
            st = os.stat(p)
        except OSError as exc:
            bad[p] = exc.strerror or "cannot read"
            continue
        hit = known.get(p)
        if hit is not None and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            w, h, err = hit[2], hit[3], hit[4]
            reused += 1
        else:
            try:
                info = read_image_info(p)
                w, h, err = info.width, info.height, ""
            except ImageReadError as exc:
                w, h, err = 0, 0, str(exc).split(": ", 1)[-1].replace("\t", " ").replace("\n", " ")
        rows.append((p, st.st_size, st.st_mtime_ns, w, h, err))
        if err:
            bad[p] = err
            continue
        paths.append(p)
        # Inside the root: the path below it (os.path.relpath costs 20 us a file at 10^5 files).
        labels.append(p[len(prefix) :].replace(os.sep, "/") if p.startswith(prefix) else p)
        widths.append(w)
        heights.append(h)
    if use_index and reused < len(rows):
        _save_index(index_file, rows)
    return LibraryScan(root, paths, labels, np.asarray(widths, np.int32), np.asarray(heights, np.int32), bad, reused)
