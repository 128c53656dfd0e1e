"""Command-line photos (files and folders) as uniquely named items."""

import pytest

from matseg.io.inputs import find_inputs


def test_find_inputs_names_and_exclusions(tmp_path):
    folder = tmp_path / "in"
    (folder / ".hidden").mkdir(parents=True)
    (folder / "sub").mkdir()
    for name in ("x.jpg", "x.png", ".hidden/y.jpg", ".dot.jpg", "sub.jpg", "sub/w.jpg"):
        (folder / name).write_bytes(b"")
    (folder / "out").mkdir()
    (folder / "out" / "z.jpg").write_bytes(b"")
    inputs = find_inputs([folder], exclude=folder / "out")
    assert [(i.path.name, i.name) for i in inputs] == [
        ("sub.jpg", "sub_jpg"), ("w.jpg", "sub/w"), ("x.jpg", "x"), ("x.png", "x_png"),
    ]  # fmt: skip


def test_files_of_the_same_name_from_different_folders_get_different_names(tmp_path):
    for name in ("a/x.jpg", "b/x.jpg", "b/x.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    inputs = find_inputs([tmp_path / "a/x.jpg", tmp_path / "b/x.jpg", tmp_path / "b/x.png"])
    assert [i.name for i in inputs] == ["x", "x_jpg", "x_png"]


def test_missing_paths_and_empty_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jpg: no such file or folder"):
        find_inputs([tmp_path / "nope.jpg"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files found in .*empty"):
        find_inputs([tmp_path / "empty"])
