"""What a user reads: tables on screen, CSV rows, and PNG panels of similarity maps."""

from __future__ import annotations

import csv
import io
import math

import cv2
import numpy as np

from matseg.evaluate.metrics import METRIC_KEYS, MODES, VARIANTS

__all__ = [
    "format_benchmark_table",
    "format_mask_table",
    "benchmark_csv",
    "mask_csv",
    "heatmap",
    "benchmark_panel",
    "mask_panel",
]

TILE_HEIGHT = 320
TITLE_BAND = 34
# distinct colours (RGB) for materials, in order
PALETTE = np.array(
    [(230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (245, 130, 48), (145, 30, 180),
     (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)],
    dtype=np.uint8,
)  # fmt: skip

MODE_TEXT = {
    "all": "all triplets (relations used)",
    "soft": "only triplets with a partially similar point (images with group_relations.txt)",
    "hard": "relations ignored (same material or not)",
}


def _fmt(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def format_benchmark_table(aggregate: dict, title: str) -> str:
    """Aligned text table of :func:`~matseg.evaluate.metrics.aggregate_images` output."""
    head = ("mode", "variant", "triplet/point", "triplet/material", "top1/point", "top1/material", "images", "anchors")
    rows = [head]
    for mode in MODES:
        for variant in VARIANTS:
            e = aggregate[mode][variant]
            rows.append((mode, variant, *(_fmt(e[k]) for k in METRIC_KEYS), str(e["images"]), str(e["anchors"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [title]
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("paper = triplet accuracy of §4.1 pooled per anchor; reference = Evaluate.py's per-(anchor, p2) average.")
    lines.append("point = mean over anchors, material = mean over materials; each image weighs the same.")
    lines += [f"{m}: {t}" for m, t in MODE_TEXT.items()]
    return "\n".join(lines)


def format_mask_table(aggregate: dict, title: str) -> str:
    return "\n".join([
        title,
        f"mean IoU at the optimal threshold, over segments: {_fmt(aggregate['miou_segments'])} "
        f"({aggregate['segments']} segments, {aggregate['points']} points)",
        f"mean IoU at the optimal threshold, over images:   {_fmt(aggregate['miou_images'])} ({aggregate['images']} images)",
    ])  # fmt: skip


def _csv_text(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if isinstance(v, float) and math.isnan(v) else (f"{v:.6f}" if isinstance(v, float) else v) for v in row])
    return buf.getvalue()


def benchmark_csv(records: list[dict], aggregate: dict) -> str:
    """One row per image x mode x variant, then the dataset means (image ``ALL``)."""
    header = ["image", "mode", "variant", *METRIC_KEYS, "anchors", "materials", "triplets", "skipped"]
    rows = []
    for r in records:
        for mode in MODES:
            for variant in VARIANTS:
                e = r["results"][mode][variant]
                if "skipped" in e:
                    rows.append([r["name"], mode, variant, *([float("nan")] * len(METRIC_KEYS)), 0, 0, 0, e["skipped"]])
                else:
                    rows.append([r["name"], mode, variant, *(e[k] for k in METRIC_KEYS), e["anchors"], e["materials"], e["triplets"], ""])
    for mode in MODES:
        for variant in VARIANTS:
            e = aggregate[mode][variant]
            rows.append(["ALL", mode, variant, *(e[k] for k in METRIC_KEYS), e["anchors"], "", "", f"mean over {e['images']} images"])
    return _csv_text(header, rows)


def mask_csv(records: list[dict], aggregate: dict) -> str:
    """One row per image x segment, then the dataset means (image ``ALL``)."""
    header = ["image", "segment", "pixels", "points", "mean_iou", "min_iou", "max_iou"]
    rows = []
    for r in records:
        for s in r["segments"]:
            ious = s["ious"] or [float("nan")]
            rows.append([r["name"], s["name"], s["pixels"], len(s["ious"]), s["mean_iou"], float(min(ious)), float(max(ious))])
    rows.append(["ALL", "segments", "", aggregate["points"], aggregate["miou_segments"], "", ""])
    rows.append(["ALL", "images", "", "", aggregate["miou_images"], "", ""])
    return _csv_text(header, rows)


# ----------------------------------------------------------------------------- panels


def heatmap(values: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """``(H, W)`` float -> ``(H, W, 3)`` uint8 RGB (viridis), ``[lo, hi]`` (default min, max) -> dark..bright."""
    values = np.asarray(values, dtype=np.float32)
    lo = float(values.min()) if lo is None else lo
    hi = float(values.max()) if hi is None else hi
    scaled = np.clip((values - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(values)
    bgr = cv2.applyColorMap(np.rint(scaled * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _titled(tile: np.ndarray, lines: list[str]) -> np.ndarray:
    band = np.full((TITLE_BAND, tile.shape[1], 3), 255, dtype=np.uint8)
    for i, text in enumerate(lines[:2]):
        cv2.putText(band, text, (4, 14 + 15 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, tile], axis=0)


def _grid(tiles: list[np.ndarray], columns: int = 4) -> np.ndarray:
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    rows = math.ceil(len(tiles) / columns)
    cols = min(columns, len(tiles))
    out = np.full((rows * (h + 4), cols * (w + 4), 3), 255, dtype=np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, columns)
        out[r * (h + 4): r * (h + 4) + t.shape[0], c * (w + 4): c * (w + 4) + t.shape[1]] = t
    return out


def _fit(image: np.ndarray) -> tuple[np.ndarray, float]:
    s = TILE_HEIGHT / image.shape[0]
    size = (max(1, round(image.shape[1] * s)), TILE_HEIGHT)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR), s


def _draw_circle(tile: np.ndarray, x: float, y: float, r: float, colour, thickness: int = 2) -> None:
    centre = (int(round(x)), int(round(y)))
    cv2.circle(tile, centre, max(2, int(round(r))), (255, 255, 255), thickness + 2, cv2.LINE_AA)
    cv2.circle(tile, centre, max(2, int(round(r))), tuple(int(c) for c in colour), thickness, cv2.LINE_AA)


def benchmark_panel(image, results: dict, anchors: list[int], maps: dict, prompts: dict) -> np.ndarray:
    """PNG panel of one benchmark image: the image with its points (colour = material), then per
    material the similarity map of one anchor (viridis, min..max of the map; the anchor has a
    white cross; prompt points of point-conditioned models: + positive, x negative).

    Args:
        image: :class:`~matseg.evaluate.benchmark.BenchmarkImage`.
        results: its ``evaluate_points`` results (numbers in the titles).
        anchors, maps, prompts: from ``benchmark_point_similarity``.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    base, s = _fit(image.image)
    pts = image.points * np.array([s, s, s])
    marked = base.copy()
    for (x, y, r), lab in zip(pts, image.labels):
        _draw_circle(marked, x, y, r, PALETTE[lab % len(PALETTE)])
    e = results["all"]["paper"]
    summary = "skipped" if "skipped" in e else f"triplet {e['triplet_point']:.3f}/pt {e['triplet_material']:.3f}/mat"
    tiles = [_titled(marked, [f"{image.name}: {image.num_points} points, {len(image.materials)} materials", f"all: {summary}"])]
    for a in anchors:
        if a not in maps:
            continue
        sim = maps[a]
        tile, _ = _fit(heatmap(sim))
        for (x, y, r), lab in zip(pts, image.labels):
            _draw_circle(tile, x, y, r, PALETTE[lab % len(PALETTE)], 1)
        ax, ay = pts[a, :2]
        cv2.drawMarker(tile, (int(round(ax)), int(round(ay))), (255, 255, 255), cv2.MARKER_CROSS, 18, 3)
        pos, neg = prompts.get(a, ((), ()))
        for idx, marker in ((pos, cv2.MARKER_CROSS), (neg, cv2.MARKER_TILTED_CROSS)):
            for j in idx:
                if j != a:
                    cv2.drawMarker(tile, (int(round(pts[j, 0])), int(round(pts[j, 1]))), (255, 255, 255), marker, 12, 2)
        key = image.materials[image.labels[a]]
        tiles.append(_titled(tile, [f"similarity to material {key} (point {a})", f"map range {sim.min():.2f}..{sim.max():.2f}"]))
    return _grid(tiles)


def mask_panel(image: np.ndarray, rows: list[dict], max_rows: int = 4) -> np.ndarray:
    """PNG panel of one mask-dataset image: per segment (first point) the image with the point and
    the segment outline, the similarity map, and the best-threshold mask (green = correct, red =
    false positive, blue = missed, grey = not scored).

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        rows: ``evaluate_mask_image`` panel rows (``name, segment, sim, threshold, iou, prompt``).

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    tiles = []
    for row in rows[:max_rows]:
        seg = row["segment"]
        base, s = _fit(image)
        seg_small = cv2.resize(seg.astype(np.uint8), (base.shape[1], base.shape[0]), interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(seg_small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        marked = base.copy()
        cv2.drawContours(marked, contours, -1, (255, 255, 0), 2)
        positive, negative = row["prompt"]
        for pts, colour, marker in ((positive, (0, 255, 0), cv2.MARKER_CROSS), (negative, (255, 0, 0), cv2.MARKER_TILTED_CROSS)):
            for x, y in np.asarray(pts).reshape(-1, 2):
                cv2.drawMarker(marked, (int(round(x * s)), int(round(y * s))), (255, 255, 255), marker, 16, 4)
                cv2.drawMarker(marked, (int(round(x * s)), int(round(y * s))), colour, marker, 16, 2)
        sim_tile, _ = _fit(heatmap(row["sim"]))
        pred = row["sim"] >= row["threshold"]
        valid = row.get("valid", np.ones_like(seg))
        overlay = image.copy()
        overlay[pred & seg & valid] = (0, 200, 0)
        overlay[pred & ~seg & valid] = (220, 0, 0)
        overlay[~pred & seg & valid] = (0, 0, 220)
        overlay[~valid] = 128  # not scored (outside the ROI / ignore label)
        mix, _ = _fit(cv2.addWeighted(image, 0.4, overlay, 0.6, 0))
        tiles += [
            _titled(marked, [f"segment {row['name']}: point + outline", "+ positive, x negative prompt"]),
            _titled(sim_tile, ["similarity to the point", f"range {row['sim'].min():.2f}..{row['sim'].max():.2f}"]),
            _titled(mix, [f"best threshold {row['threshold']:.3f}: IoU {row['iou']:.3f}", "green ok, red false pos., blue missed"]),
        ]
    if not tiles:
        return _titled(_fit(image)[0], ["no segment"])
    return _grid(tiles, columns=3)
