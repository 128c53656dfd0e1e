"""Read ``matseg eval`` output folders for the Results page.

An eval folder holds ``results.json`` (task, predictor, config, aggregate scores, one record
per image), ``results.csv`` and ``panels/*.png``. The page shows the aggregate table, a
sortable per-image table and the panels; two folders side by side.
"""

from __future__ import annotations

from pathlib import Path

from matseg.io.atomic import load_json

RESULTS_NAME = "results.json"


class ResultsFormatError(ValueError):
    """A folder given with ``--results`` is not a readable ``matseg eval`` output."""


def find_eval_folders(root: Path) -> list[Path]:
    """``root`` itself when it holds ``results.json``, else its sub-folders that do (sorted, depth <= 2)."""
    if (root / RESULTS_NAME).is_file():
        return [root]
    found = sorted(p.parent for p in root.glob(f"*/{RESULTS_NAME}")) + sorted(p.parent for p in root.glob(f"*/*/{RESULTS_NAME}"))
    return found


def read_results(folder: Path) -> dict:
    """``results.json`` of an eval folder. Raises :class:`ResultsFormatError` naming the file."""
    path = folder / RESULTS_NAME
    data = load_json(path, ResultsFormatError, "matseg eval result")
    if not isinstance(data, dict) or "task" not in data or "aggregate" not in data:
        raise ResultsFormatError(f"{path}: not a matseg eval result (no 'task'/'aggregate')")
    return data


def predictor_label(data: dict) -> str:
    """Short name of the predictor of a result: ``matseg (matseg-lite0-2026.12.4)``, ``effnet``..."""
    predictor = data.get("predictor") or {}
    name = predictor.get("name", "?")
    params = predictor.get("params") or {}
    detail = params.get("model") or Path(str(params.get("weights", ""))).name
    return f"{name} ({detail})" if detail else name


def per_image_rows(data: dict) -> tuple[list[str], list[dict]]:
    """The per-image table: column names and one flat row per image.

    Benchmark results (``matseg-bench``): triplet and top-1 scores per mode (paper variant);
    mask results: mean IoU over the image's segments and the segment count.
    """
    rows = []
    if data["task"] == "masks":
        columns = ["image", "mean_iou", "segments"]
        for image in data.get("images", []):
            segments = image.get("segments") or []
            ious = [s.get("mean_iou") for s in segments if isinstance(s, dict) and s.get("mean_iou") is not None]
            rows.append({"image": image.get("name"), "mean_iou": image.get("mean_iou", sum(ious) / len(ious) if ious else None),
                         "segments": len(segments)})  # fmt: skip
        return columns, rows
    columns = ["image", "points", "materials"]
    for image in data.get("images", []):
        row = {"image": image.get("name"), "points": image.get("points"), "materials": len(image.get("materials", []))}
        for mode, variants in (image.get("results") or {}).items():
            scores = (variants or {}).get("paper") or {}
            for metric in ("triplet_point", "triplet_material"):
                key = f"{mode}.{metric}"
                if key not in columns:
                    columns.append(key)
                row[key] = scores.get(metric)
        rows.append(row)
    return columns, rows


def summary(folder: Path, root: Path) -> dict:
    """What the Results page needs of one eval folder (panels as paths relative to ``root``)."""
    data = read_results(folder)
    columns, rows = per_image_rows(data)
    panels = sorted((folder / "panels").glob("*.png")) if (folder / "panels").is_dir() else []
    return {
        "name": folder.relative_to(root).as_posix() if folder != root else folder.name,
        "task": data["task"],
        "predictor": predictor_label(data),
        "created": data.get("created"),
        "config": data.get("config"),
        "aggregate": data["aggregate"],
        "columns": columns,
        "rows": rows,
        "panels": [p.relative_to(root).as_posix() for p in panels],
    }
