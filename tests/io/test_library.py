from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matseg.io.library import index_path, list_library, scan_library
from matseg.io.sources import EntryTable, ImageSource, SourceEntry


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MATSEG_CACHE_DIR", str(tmp_path / "cache"))


def _img(path: Path, w: int, h: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path)
    return path


def _library(root: Path) -> Path:
    _img(root / "a.png", 40, 30)
    _img(root / "sub" / "b.jpg", 20, 50)
    _img(root / ".hidden" / "c.png", 10, 10)
    (root / "broken.png").write_bytes(b"not an image")
    (root / "notes.txt").write_text("x")
    return root


def _tree(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_scan_folder_and_index_reuse(tmp_path: Path):
    lib = _library(tmp_path / "lib")
    before = _tree(lib)
    scan = scan_library(lib)
    assert scan.labels == ["a.png", "sub/b.jpg"]
    assert scan.widths.tolist() == [40, 20] and scan.heights.tolist() == [30, 50]
    assert list(scan.bad) == [str((lib / "broken.png").resolve())] and scan.reused == 0
    assert index_path(lib).is_file() and _tree(lib) == before  # the index lives in the cache, not the library
    again = scan_library(lib)
    assert again.reused == 3 and again.labels == scan.labels and again.widths.tolist() == [40, 20]
    _img(lib / "a.png", 64, 16)  # changed file: its header is read again
    os.utime(lib / "a.png", ns=(1, 1))
    third = scan_library(lib)
    assert third.reused == 2 and third.widths.tolist() == [64, 20]


def test_corrupt_index_is_rebuilt(tmp_path: Path):
    lib = _library(tmp_path / "lib")
    scan_library(lib)
    index_path(lib).write_text("garbage\tline\n")
    assert scan_library(lib).reused == 0 and scan_library(lib).reused == 3


def test_file_list(tmp_path: Path):
    lib = _library(tmp_path / "lib")
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my photos\nlib/a.png\n\n{(lib / 'sub' / 'b.jpg').resolve()}\nlib/missing.jpg\n")
    root, files = list_library(listing)
    assert root == tmp_path.resolve() and len(files) == 3
    scan = scan_library(listing)
    assert scan.labels == ["lib/a.png", "lib/sub/b.jpg"] and len(scan.bad) == 1
    source = ImageSource.scan(listing, "natural images")
    assert len(source) == 2 and source.get(0).shape == (30, 40, 3)
    with pytest.raises(FileNotFoundError, match="nope: no such folder or file list"):
        scan_library(tmp_path / "nope")


def test_entry_table_builds_entries():
    table = EntryTable(["/x/a.png", "/x/b.png"], ["a.png", "b.png"], np.array([3, 4]), np.array([5, 6]))
    assert table[1] == SourceEntry(Path("/x/b.png"), 4, 6, label="b.png")
    assert [e.label for e in table] == ["a.png", "b.png"] and table[:1] == [table[0]]


@pytest.mark.parametrize(("n_large", "n_small", "p_small"), [(3, 7, 0.2), (0, 5, 0.01), (1, 400, 0.0)])
def test_choose_has_the_rejection_loop_distribution(n_large: int, n_small: int, p_small: float):
    entries = [SourceEntry(Path(f"{i}.png"), 100, 100) for i in range(n_large)]
    entries += [SourceEntry(Path(f"s{i}.png"), 10, 10) for i in range(n_small)]
    source = ImageSource("t", entries)
    weights = np.array([1.0] * n_large + [p_small] * n_small)
    expected = weights / weights.sum() if weights.sum() > 0 else np.full(len(weights), 1 / len(weights))
    rng = np.random.default_rng(0)
    draws = 20000
    counts = np.bincount([source.choose(rng, 50, 50, p_small) for _ in range(draws)], minlength=len(entries))
    # Within 5 standard deviations of the binomial count of every entry.
    sd = np.sqrt(draws * expected * (1 - expected))
    assert np.all(np.abs(counts - draws * expected) <= 5 * sd + 1)


def test_links_to_one_photo_share_one_decode(tmp_path: Path):
    photo = _img(tmp_path / "photo.png", 12, 8)
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in ("x.png", "y.png"):
        os.symlink(photo, lib / name)
    other = _img(lib / "z.png", 12, 8)
    source = ImageSource.scan(lib, "natural images")
    assert [e.label for e in source.entries] == ["x.png", "y.png", "z.png"]
    assert source.get(0) is source.get(1)  # one decode for both links
    assert source.get(2) is not source.get(0) and other.exists()
