import json

import numpy as np
import pytest

from matseg.io.atomic import atomic_folder, remove_stale_temporaries, write_folder, write_json_atomic


def test_json_is_strict_nan_becomes_null(tmp_path):
    write_json_atomic(tmp_path / "a.json", {"x": float("nan"), "y": [np.float32(1.5), float("inf")], "z": np.arange(2)})
    text = (tmp_path / "a.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"x": None, "y": [1.5, None], "z": [0, 1]}


def test_write_folder_marker_last_and_nested(tmp_path):
    folder = write_folder(tmp_path / "s", {"a.txt": b"1", "sub/b.txt": b"2"}, marker="Finished.txt")
    assert (folder / "sub" / "b.txt").read_bytes() == b"2" and (folder / "Finished.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no temporaries left


def test_failed_write_leaves_nothing_and_keeps_old_folder_aside(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_folder(tmp_path / "s") as tmp:
            (tmp / "x").write_text("partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "old.txt").write_text("unfinished, from another tool")
    write_folder(tmp_path / "t", {"new.txt": b"n"})
    assert (tmp_path / "t" / "new.txt").exists()
    moved = list((tmp_path / ".incomplete").iterdir())
    assert len(moved) == 1 and (moved[0] / "old.txt").read_text().startswith("unfinished")


def test_remove_stale_temporaries_only_touches_ours(tmp_path):
    (tmp_path / ".tmp-000001-123-abcd").mkdir()
    (tmp_path / ".x.json.abc.tmp").write_text("")
    (tmp_path / "000002").mkdir()
    (tmp_path / ".hidden_user_file").write_text("keep")
    assert remove_stale_temporaries(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden_user_file", "000002"]
