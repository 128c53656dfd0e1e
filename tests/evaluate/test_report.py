import csv
import io

import numpy as np

from matseg.evaluate.metrics import aggregate_images, evaluate_points
from matseg.evaluate.report import benchmark_csv, format_benchmark_table, heatmap, mask_csv, mask_panel


def _records():
    labels = np.array([0, 0, 1, 1])
    perfect = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], float)
    results = [evaluate_points(perfect, np.eye(2), labels, False), evaluate_points(np.zeros((4, 4)), np.eye(2), labels, False)]
    return [{"name": f"im{i}", "results": r} for i, r in enumerate(results)], aggregate_images(results)


def test_table_and_csv_show_every_mode_and_variant():
    records, agg = _records()
    table = format_benchmark_table(agg, "title")
    lines = table.splitlines()
    assert lines[0] == "title" and sum(line.startswith(("all", "soft", "hard")) for line in lines) >= 6
    assert "0.7500" in table  # mean of 1.0 and 0.5
    rows = list(csv.DictReader(io.StringIO(benchmark_csv(records, agg))))
    assert len(rows) == 2 * 6 + 6
    soft = [r for r in rows if r["image"] == "im0" and r["mode"] == "soft"]
    assert soft[0]["skipped"] == "no group_relations.txt" and soft[0]["triplet_point"] == ""
    total = [r for r in rows if r["image"] == "ALL" and r["mode"] == "hard" and r["variant"] == "paper"][0]
    assert float(total["triplet_point"]) == 0.75


def test_mask_csv_rows():
    records = [{"name": "a", "segments": [{"name": "1", "pixels": 10, "ious": [0.5, 1.0], "mean_iou": 0.75}]}]
    agg = {"miou_segments": 0.75, "miou_images": 0.75, "segments": 1, "images": 1, "points": 2}
    rows = list(csv.DictReader(io.StringIO(mask_csv(records, agg))))
    assert rows[0]["min_iou"] == "0.500000" and rows[0]["max_iou"] == "1.000000" and rows[-1]["image"] == "ALL"


def test_heatmap_and_mask_panel():
    values = np.tile(np.linspace(-1, 1, 50, dtype=np.float32), (20, 1))
    rgb = heatmap(values)
    assert rgb.shape == (20, 50, 3) and rgb.dtype == np.uint8
    assert rgb[:, -1].sum() > rgb[:, 0].sum()  # bright = similar
    seg = np.zeros((20, 50), bool)
    seg[:, 25:] = True
    row = {"name": "1", "segment": seg, "valid": np.ones_like(seg), "sim": values, "threshold": 0.0, "iou": 1.0,
           "prompt": (np.array([[30.0, 10.0]]), np.zeros((0, 2)))}  # fmt: skip
    panel = mask_panel(np.zeros((20, 50, 3), np.uint8), [row])
    assert panel.ndim == 3 and panel.shape[0] > 320 and panel.shape[1] > 3 * 50
