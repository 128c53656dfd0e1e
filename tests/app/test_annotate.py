from __future__ import annotations

import json
from pathlib import Path

import pytest

from matseg.app.annotate import AnnotationError, list_benchmark, load_annotation, relations_text, save_annotation
from matseg.cli import main

STEM = "20230913_185027"


def test_load_published_sample(bench_copy: Path):
    (entry,) = list_benchmark(bench_copy)
    assert entry == {"stem": STEM, "image": f"{STEM}.jpg", "annotated": True, "problem": ""}
    doc = load_annotation(bench_copy, STEM)
    original = json.loads((bench_copy / "data" / STEM / "data.json").read_text())
    assert (doc["width"], doc["height"]) == (3000, 4000)
    assert doc["groups"] == {k: v["pt_im"] for k, v in original.items()}


def _scores(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())["aggregate"]


def test_save_round_trip_evaluates_identically(bench_copy: Path, tmp_path: Path):
    before = tmp_path / "before"
    assert main(["eval", "matseg-bench", str(bench_copy), "--predictor", "colour", "-o", str(before), "--no-progress"]) == 0
    doc = load_annotation(bench_copy, STEM)
    (bench_copy / "data" / STEM / "data.json").unlink()
    (bench_copy / "data" / STEM / "data.pkl").unlink()
    saved = save_annotation(bench_copy, STEM, doc["groups"], doc["relations"])
    assert saved == {"points": 37, "groups": 2, "files": ["data.json"]}
    written = json.loads((bench_copy / "data" / STEM / "data.json").read_text())
    assert written["1"]["pt_pg"][0] == [167, 500, 19]  # the authors' quarter-scale copy, as published
    after = tmp_path / "after"
    assert main(["eval", "matseg-bench", str(bench_copy), "--predictor", "colour", "-o", str(after), "--no-progress"]) == 0
    assert _scores(after) == _scores(before)


def test_relations_saved_and_reloaded(bench_copy: Path):
    doc = load_annotation(bench_copy, STEM)
    groups = {**doc["groups"], "3": [[100, 200, 20]]}
    rel = [{"kind": "[", "keys": ["1", "2"]}, {"kind": "(", "keys": ["2", "3"]}]
    save_annotation(bench_copy, STEM, groups, rel)
    assert (bench_copy / "data" / STEM / "group_relations.txt").read_text() == "[1,2]\n(2,3)\n"
    again = load_annotation(bench_copy, STEM)
    assert again["relations"] == rel and again["groups"]["3"] == [[100.0, 200.0, 20.0]]
    save_annotation(bench_copy, STEM, groups, [])  # no relations left: the file goes
    assert not (bench_copy / "data" / STEM / "group_relations.txt").exists()


@pytest.mark.parametrize(
    ("groups", "relations", "message"),
    [
        ({"1": [[5000, 1, 3]]}, [], "outside the upright image"),
        ({"1": [[5, 1, 0]]}, [], "radius must be > 0"),
        ({"1": [[5, 1]]}, [], r"expected \[x, y, r\]"),
        ({"1": [[5, 1, 3]]}, [{"kind": "[", "keys": ["1", "9"]}], "9"),
        ({"1": [[5, 1, 3]]}, [{"kind": "{", "keys": ["1", "1"]}], "kind must be"),
        ({}, [], "no annotated points|non-empty"),
    ],
)
def test_save_refuses_bad_annotations_and_writes_nothing(bench_copy: Path, groups, relations, message):
    data = bench_copy / "data" / STEM / "data.json"
    before = data.read_bytes()
    with pytest.raises(AnnotationError, match=message):
        save_annotation(bench_copy, STEM, groups, relations)
    assert data.read_bytes() == before


def test_new_benchmark_from_images_folder(tmp_path: Path, bench_copy: Path):
    root = tmp_path / "new"
    (root / "images").mkdir(parents=True)
    (root / "images" / "photo.jpg").write_bytes((bench_copy / "images" / f"{STEM}.jpg").read_bytes())
    assert list_benchmark(root)[0]["annotated"] is False
    assert load_annotation(root, "photo")["groups"] == {}
    groups = {"a": [[10, 10, 5], [50, 60, 5]], "b": [[2000, 3000, 5], [2100, 3100, 5]]}
    save_annotation(root, "photo", groups, [{"kind": "(", "keys": ["a", "b"]}])
    out = tmp_path / "eval"
    assert main(["eval", "matseg-bench", str(root), "--predictor", "colour", "-o", str(out), "--no-progress"]) == 0
    assert _scores(out)["all"]["paper"]["anchors"] == 4


def test_relations_text_format():
    assert relations_text([{"kind": "[", "keys": [" a", "b "]}]) == "[a,b]\n"
    with pytest.raises(AnnotationError, match="at least two"):
        relations_text([{"kind": "(", "keys": ["a"]}])
