"""recipes/devset: the committed point annotations of the real-photo development set are well formed
(read with matseg's own benchmark readers; no photos, no network)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from matseg.evaluate.benchmark import parse_annotation, read_annotation
from matseg.evaluate.relations import read_relations

ROOT = Path(__file__).resolve().parents[2]
DEVSET = ROOT / "recipes" / "devset"
RESERVED = ("tuxpaint-data", "lomiri-wallpapers", "mate-backgrounds", "plasma-workspace-wallpapers")


def _load_fetch():
    spec = importlib.util.spec_from_file_location("photos_fetch_devset", ROOT / "recipes" / "photos" / "fetch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


IMAGES = _load_fetch().load_yaml_subset((DEVSET / "devset.yaml").read_text(encoding="utf-8"), "devset.yaml")["images"]


def test_devset_size():
    assert len(IMAGES) >= 12
    assert len({img["stem"] for img in IMAGES}) == len(IMAGES)
    assert sum(1 for img in IMAGES if (DEVSET / "annotations" / img["stem"] / "group_relations.txt").is_file()) >= 4
    folders = {p.name for p in (DEVSET / "annotations").iterdir() if p.is_dir()}
    assert folders == {img["stem"] for img in IMAGES}, "annotation folders and devset.yaml differ"


@pytest.mark.parametrize("img", IMAGES, ids=[img["stem"] for img in IMAGES])
def test_annotation(img):
    assert img["file"] == f"dev/{img['stem']}.jpg"
    assert not any(r in img["source"] for r in RESERVED)
    folder = DEVSET / "annotations" / img["stem"]
    data, path = read_annotation(folder)
    keys, points, labels, warnings = parse_annotation(data, str(path))
    assert not warnings
    assert 2 <= len(keys) <= 6
    assert len(points) >= 30
    assert keys == [str(m["key"]) for m in img["materials"]]
    assert all(m["name"] for m in img["materials"])
    w, h = img["width"], img["height"]
    x, y, r = points[:, 0], points[:, 1], points[:, 2]
    assert (r > 0).all()
    inside = (x - r >= 0) & (y - r >= 0) & (x + r <= w - 1) & (y + r <= h - 1)
    assert inside.all(), f"{path}: discs outside the {w}x{h} image: {points[~inside].tolist()}"
    assert int(img["points"]) == len(points)
    rel = folder / "group_relations.txt"
    listed = [g["group"] for g in img.get("relations") or []]
    if rel.is_file():
        pairs, notes = read_relations(rel, keys)
        assert pairs and not notes
        groups = [ln.strip() for ln in rel.read_text(encoding="utf-8").splitlines() if ln.strip()]
        assert [g.replace(" ", "") for g in groups] == [g.replace(" ", "") for g in listed]
        assert all(g["reason"] for g in img["relations"])
    else:
        assert not listed
