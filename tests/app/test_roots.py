from __future__ import annotations

import os
from pathlib import Path

import pytest

from matseg.app.roots import OutsideRoot, make_roots, resolve_inside


def test_resolve_inside_accepts_nested_files(tmp_path: Path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f.png").write_bytes(b"x")
    assert resolve_inside(tmp_path.resolve(), "a/b/f.png") == (tmp_path / "a" / "b" / "f.png").resolve()
    assert resolve_inside(tmp_path.resolve(), "a/./b/../b/f.png").name == "f.png"


@pytest.mark.parametrize("relative", ["../secret.txt", "a/../../secret.txt", "/etc/passwd", "a/\x00.png"])
def test_resolve_inside_refuses_paths_out(tmp_path: Path, relative: str):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("no")
    with pytest.raises(OutsideRoot):
        resolve_inside(root.resolve(), relative)


def test_resolve_inside_refuses_symlinks_pointing_out(tmp_path: Path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("no")
    os.symlink(tmp_path / "secret.txt", root / "link.txt")
    os.symlink(tmp_path, root / "up")
    with pytest.raises(OutsideRoot):
        resolve_inside(root.resolve(), "link.txt")
    with pytest.raises(OutsideRoot):
        resolve_inside(root.resolve(), "up/secret.txt")


def test_resolve_inside_missing_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        resolve_inside(tmp_path.resolve(), "nope.png")


def test_make_roots_names_missing_folder(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="missing"):
        make_roots("data", [tmp_path / "missing"])
    (root,) = make_roots("bench", [tmp_path])
    assert root.id == "bench0" and root.path == tmp_path.resolve()
