"""Point annotations in the MatSeg benchmark layout: read for editing, validate, save atomically.

Layout (:mod:`matseg.evaluate.benchmark`): ``images/<stem>.<ext>``, ``data/<stem>/data.json``
(``{"<group>": {"pt_im": [[x, y, r], ...], "pt_pg": [...]}}``) and, when there are partial
similarities, ``data/<stem>/group_relations.txt`` (``[a,b]`` weight 0.6, ``(a,b)`` weight 0.3).
What :func:`save_annotation` writes is validated with the evaluator's own parsers first, so it
always loads in ``matseg eval matseg-bench``.
"""

from __future__ import annotations

from pathlib import Path

from matseg.evaluate.benchmark import DATA_JSON, RELATIONS, parse_annotation, read_annotation, scan_benchmark
from matseg.evaluate.relations import BRACKET_WEIGHTS, parse_relations
from matseg.io.atomic import json_bytes, write_bytes_atomic, write_text_atomic
from matseg.io.images import read_image_info

#: The authors' annotation tool keeps a quarter-scale copy of every point (``pt_pg``); writing it
#: keeps their scripts working on folders edited here.
PT_PG_SCALE = 4


class AnnotationError(ValueError):
    """An annotation sent for saving is malformed; the message says what and where."""


def _scan(root: Path):
    """``scan_benchmark`` of a folder where ``images/`` may be the only thing there yet (``data/`` is created)."""
    if not (root / "images").is_dir():
        raise FileNotFoundError(f"{root / 'images'}: folder not found (put the photos to annotate there)")
    (root / "data").mkdir(exist_ok=True)
    return scan_benchmark(root)


def list_benchmark(root: Path) -> list[dict]:
    """The images of a benchmark folder, annotated or not."""
    out = []
    for entry in _scan(root):
        if entry.image_path is None:
            continue
        annotated = (entry.data_dir / DATA_JSON).is_file() or (entry.data_dir / "data.pkl").is_file()
        out.append({"stem": entry.name, "image": entry.image_path.name, "annotated": annotated, "problem": entry.problem})
    return out


def _entry(root: Path, stem: str):
    for entry in _scan(root):
        if entry.name == stem and entry.image_path is not None:
            return entry
    raise FileNotFoundError(f"{root / 'images'}: no image named {stem}.*")


def load_annotation(root: Path, stem: str) -> dict:
    """One image's annotation for the editor.

    Returns:
        ``{"stem", "image", "width", "height", "groups": {key: [[x, y, r], ...]}, "relations":
        [{"kind": "[" or "(", "keys": [...]}], "warnings": [...], "source": file read or None}``
        with points in pixels of the upright full-resolution image.
    """
    entry = _entry(root, stem)
    info = read_image_info(entry.image_path)
    result = {"stem": stem, "image": entry.image_path.name, "width": info.width, "height": info.height,
              "groups": {}, "relations": [], "warnings": [], "source": None}  # fmt: skip
    if not entry.data_dir.is_dir() or not any((entry.data_dir / n).is_file() for n in (DATA_JSON, "data.pkl")):
        return result
    content, path = read_annotation(entry.data_dir)
    materials, points, labels, warnings = parse_annotation(content, str(path))
    result["source"] = path.name
    result["warnings"] = list(warnings)
    if path.name != DATA_JSON:
        result["warnings"].append(f"{path.name} was read; saving writes {DATA_JSON}, which matseg then reads first")
    result["groups"] = {key: points[labels == i].tolist() for i, key in enumerate(materials)}
    relations_path = entry.data_dir / RELATIONS
    if relations_path.is_file():
        result["relations"] = _relation_lines(relations_path.read_text(encoding="utf-8-sig"), materials, str(relations_path))
    return result


def _relation_lines(text: str, keys: list[str], source: str) -> list[dict]:
    parse_relations(text, keys, source)  # raises with file:line on bad content
    lines = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        lines.append({"kind": line[0], "keys": [k.strip() for k in line[1:-1].split(",") if k.strip()]})
    return lines


def relations_text(relations: list[dict]) -> str:
    """``[{"kind": "[", "keys": ["1", "2"]}]`` -> ``"[1,2]\\n"`` (one group per line)."""
    lines = []
    for i, rel in enumerate(relations):
        kind = rel.get("kind") if isinstance(rel, dict) else None
        keys = rel.get("keys") if isinstance(rel, dict) else None
        if kind not in BRACKET_WEIGHTS:
            raise AnnotationError(f"relation {i + 1}: kind must be one of {', '.join(BRACKET_WEIGHTS)}, got {kind!r}")
        if not isinstance(keys, list) or len(keys) < 2 or not all(isinstance(k, str) and k.strip() for k in keys):
            raise AnnotationError(f"relation {i + 1}: needs at least two group names, got {keys!r}")
        lines.append(f"{kind}{','.join(k.strip() for k in keys)}{BRACKET_WEIGHTS[kind][0]}")
    return "".join(line + "\n" for line in lines)


def annotation_json(groups: dict) -> dict:
    """The ``data.json`` content of ``{group: [[x, y, r], ...]}``, ``pt_pg`` added."""
    if not isinstance(groups, dict):
        raise AnnotationError(f"groups must be a mapping of group name -> points, got {type(groups).__name__}")
    content = {}
    for key, pts in groups.items():
        if not isinstance(pts, list) or not pts:
            continue  # an empty group is not written (the evaluator would ignore it with a warning)
        content[str(key)] = {
            "pt_im": [[round(float(v), 2) for v in p] if isinstance(p, (list, tuple)) else p for p in pts],
            "pt_pg": [[round(float(v) / PT_PG_SCALE) for v in p] if isinstance(p, (list, tuple)) else p for p in pts],
        }
    return content


def save_annotation(root: Path, stem: str, groups: dict, relations: list[dict]) -> dict:
    """Validate and write ``data/<stem>/data.json`` and ``group_relations.txt`` atomically.

    The relations file is removed when there are no relations. Returns ``{"points", "groups",
    "files"}``.

    Raises:
        AnnotationError: malformed groups or relations, points outside the image, relations
        naming unknown groups (nothing is written then).
        FileNotFoundError: no such image.
    """
    from matseg.evaluate.benchmark import BenchmarkFormatError, check_points_inside
    from matseg.evaluate.relations import RelationsError

    entry = _entry(root, stem)
    info = read_image_info(entry.image_path)
    try:
        content = annotation_json(groups)
        materials, points, labels, _ = parse_annotation(content, f"{stem}: {DATA_JSON}")
        check_points_inside(points, labels, materials, (info.height, info.width), f"{stem}: {DATA_JSON}")
        text = relations_text(relations)
        parse_relations(text, materials, f"{stem}: {RELATIONS}")
    except (BenchmarkFormatError, RelationsError, TypeError, ValueError) as exc:
        raise AnnotationError(str(exc)) from None
    entry.data_dir.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(entry.data_dir / DATA_JSON, json_bytes(content, indent=None))
    relations_path = entry.data_dir / RELATIONS
    files = [DATA_JSON]
    if text:
        write_text_atomic(relations_path, text)
        files.append(RELATIONS)
    elif relations_path.exists():
        relations_path.unlink()
    return {"points": int(len(points)), "groups": len(materials), "files": files}
