from __future__ import annotations

import json
from pathlib import Path

import pytest

from matseg.app.results import ResultsFormatError, find_eval_folders, per_image_rows, summary


def test_summary_of_an_eval_folder(eval_folder: Path):
    (folder,) = find_eval_folders(eval_folder)
    data = json.loads((folder / "results.json").read_text())
    s = summary(folder, eval_folder)
    assert s["name"] == "colour" and s["task"] == "matseg-bench" and s["predictor"] == "colour"
    assert s["aggregate"] == data["aggregate"]
    (row,) = s["rows"]
    assert row["all.triplet_point"] == data["images"][0]["results"]["all"]["paper"]["triplet_point"]
    assert s["panels"] and all((eval_folder / p).is_file() for p in s["panels"])


def test_mask_rows_average_segments():
    data = {"task": "masks", "images": [{"name": "a", "segments": [{"mean_iou": 0.2}, {"mean_iou": 0.6}]}]}
    columns, rows = per_image_rows(data)
    assert columns == ["image", "mean_iou", "segments"]
    assert rows == [{"image": "a", "mean_iou": pytest.approx(0.4), "segments": 2}]


def test_unreadable_results_named(tmp_path: Path):
    (tmp_path / "results.json").write_text("{broken")
    with pytest.raises(ResultsFormatError, match=r"results\.json: not a readable"):
        summary(tmp_path, tmp_path)
