"""The MatSeg benchmark's triplet metric (paper §4.1, reference digest §1.10), vectorised numpy.

Vocabulary: an image has ``N`` annotated points; ``pred[a, j]`` is the predicted similarity of
point ``j`` to anchor ``a`` and ``gt[a, j]`` the ground truth (1 same material, 0.6 / 0.3 partial,
0 unrelated).

* **Paper triplet accuracy** (:func:`triplet_anchor_scores`): for anchor ``a`` every pair of other
  points ``(j, k)`` with ``gt[a, j] != gt[a, k]`` is a triplet; it is correct when the prediction
  orders ``j`` and ``k`` the same way; a predicted tie (``|pred[a,j] - pred[a,k]| <= TIE_TOLERANCE``)
  counts 1/2, so the score never depends on point order and a constant prediction scores 0.5.
  Anchor accuracy = correct / valid triplets (pooled per anchor).
* **Reference variant** (:func:`reference_anchor_scores`): ``Evaluate.py``'s soft branch exactly
  (§1.10 step 3): rank the other points by predicted similarity, average a per-(anchor, p2) ratio
  over p2. Equal to the paper accuracy when there are two GT levels and no predicted ties;
  slightly different with partial similarities.
* **Top-1**: the most similar other point has the highest GT similarity (ties in the prediction:
  the expected value over a random choice among the tied points; reference variant: first in
  the stable ranking).
* **Modes**: ``all`` (relations used), ``soft`` (only triplets with a partially similar point;
  only images with ``group_relations.txt``), ``hard`` (relations ignored: same material or not).
* Anchors without a valid triplet are skipped; per image the mean over anchors (``point``) and
  the mean over materials of their anchors' mean (``material``); datasets average images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "MODES",
    "VARIANTS",
    "TIE_TOLERANCE",
    "AnchorScores",
    "l2_normalize",
    "disc_windows",
    "point_descriptors",
    "disc_means",
    "cosine_maps",
    "dot_rows",
    "descriptor_similarity",
    "mode_ground_truth",
    "triplet_anchor_scores",
    "reference_anchor_scores",
    "summarize_anchors",
    "evaluate_points",
    "aggregate_images",
]

MODES = ("all", "soft", "hard")
VARIANTS = ("paper", "reference")
METRIC_KEYS = ("triplet_point", "triplet_material", "top1_point", "top1_material")
TIE_TOLERANCE = 1e-10  # float64 round-off of equal similarities; real differences are far larger
_BLOCK_ELEMENTS = 1 << 22  # anchors are processed in blocks of at most this many (anchor, j, k) cells


# ----------------------------------------------------------------------------- point descriptors


def l2_normalize(x: np.ndarray, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    """Unit vectors along ``axis`` (float32 or float64 as given); all-zero vectors stay zero."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    norm = np.sqrt(np.sum(x * x, axis=axis, keepdims=True))
    return x / np.maximum(norm, eps)


def _check_points(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] not in (2, 3):
        raise ValueError(f"points must be (N, 3) [x, y, r] or (N, 2) [x, y], got shape {points.shape}")
    h, w = shape
    if points.size and ((points[:, 0] < -0.5) | (points[:, 0] > w - 0.5) | (points[:, 1] < -0.5) | (points[:, 1] > h - 0.5)).any():
        raise ValueError(f"points outside the {w}x{h} (WxH) map: x in [{points[:, 0].min():g}, {points[:, 0].max():g}], "
                         f"y in [{points[:, 1].min():g}, {points[:, 1].max():g}]")  # fmt: skip
    return points


def disc_windows(points: np.ndarray, shape: tuple[int, int]) -> list[tuple[slice, slice, np.ndarray]]:
    """Pixels of each point's disc: ``(rows, cols, mask)`` per point, mask over ``[rows, cols]``.

    A pixel ``(i, j)`` is in the disc of ``[x, y, r]`` when ``(j - x)^2 + (i - y)^2 <= r^2`` (the
    reference draws a filled ``cv2.circle``); a disc with no pixel centre (r < 0.5) is the nearest
    pixel; ``(N, 2)`` points are single pixels.
    """
    points = _check_points(points, shape)
    h, w = shape
    windows = []
    for p in points:
        x, y = p[0], p[1]
        r = p[2] if p.shape[0] == 3 else 0.0
        x0, x1 = max(0, int(np.ceil(x - r))), min(w, int(np.floor(x + r)) + 1)
        y0, y1 = max(0, int(np.ceil(y - r))), min(h, int(np.floor(y + r)) + 1)
        if x1 > x0 and y1 > y0:
            yy = (np.arange(y0, y1) - y)[:, None]
            xx = (np.arange(x0, x1) - x)[None, :]
            mask = yy * yy + xx * xx <= r * r
            if mask.any():
                windows.append((slice(y0, y1), slice(x0, x1), mask))
                continue
        i, j = min(h - 1, max(0, int(round(y)))), min(w - 1, max(0, int(round(x))))
        windows.append((slice(i, i + 1), slice(j, j + 1), np.ones((1, 1), dtype=bool)))
    return windows


def point_descriptors(descriptors: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Descriptor of each annotated point, as in the reference.

    Args:
        descriptors: ``(H, W, C)`` float per-pixel descriptors (any scale; normalised here).
        points: ``(N, 3)`` ``[x, y, r]`` (or ``(N, 2)`` single pixels) in pixel coordinates.

    Returns:
        ``(N, C)`` float64: the L2-normalised mean of the L2-normalised pixel descriptors in each
        point's disc (zero if they cancel exactly).
    """
    if descriptors.ndim != 3:
        raise ValueError(f"descriptors must be (H, W, C), got shape {descriptors.shape}")
    out = np.zeros((len(points), descriptors.shape[2]), dtype=np.float64)
    for n, (rows, cols, mask) in enumerate(disc_windows(points, descriptors.shape[:2])):
        pixels = descriptors[rows, cols][mask].astype(np.float64)
        out[n] = l2_normalize(pixels).sum(axis=0)
    return l2_normalize(out)


def disc_means(maps: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Mean of each map over each point's disc.

    Args:
        maps: ``(H, W)`` or ``(K, H, W)`` float (e.g. similarity maps of a point-conditioned model).
        points: ``(N, 3)`` ``[x, y, r]``.

    Returns:
        ``(N,)`` or ``(K, N)`` float64.
    """
    single = maps.ndim == 2
    stack = maps[None] if single else maps
    out = np.empty((stack.shape[0], len(points)), dtype=np.float64)
    for n, (rows, cols, mask) in enumerate(disc_windows(points, stack.shape[1:])):
        out[:, n] = stack[:, rows, cols][:, mask].mean(axis=1, dtype=np.float64)
    return out[0] if single else out


def cosine_maps(descriptors: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity of every pixel to each vector.

    Args:
        descriptors: ``(H, W, C)`` float per-pixel descriptors.
        vectors: ``(K, C)`` or ``(C,)`` query vectors (normalised here).

    Returns:
        ``(K, H, W)`` (or ``(H, W)``) float32 in [-1, 1].
    """
    h, w, c = descriptors.shape
    single = np.ndim(vectors) == 1
    q = l2_normalize(np.atleast_2d(vectors).astype(np.float32))
    flat = l2_normalize(descriptors.reshape(-1, c).astype(np.float32, copy=False))
    maps = dot_rows(q, flat).reshape(-1, h, w)
    return maps[0] if single else maps


def dot_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(P, C) x (N, C) -> (P, N)`` dot products, bit-identical whatever the thread count.

    BLAS matrix products here change their last bits with the number of BLAS threads (measured:
    1 vs 2 OpenBLAS threads differ by up to 3e-7 in float32), which would make results depend on
    how many workers run; ``einsum`` without ``optimize`` uses NumPy's own fixed-order loops
    (about 2-4x slower than BLAS, still ~40 ms for 20 maps of 0.37 Mpx x 30 channels).
    """
    return np.einsum("pc,nc->pn", a, b, optimize=False)


def descriptor_similarity(vectors: np.ndarray) -> np.ndarray:
    """``(N, N)`` float64 cosine similarity between point descriptors ``(N, C)``."""
    v = l2_normalize(np.asarray(vectors, dtype=np.float64))
    return np.clip(dot_rows(v, v), -1.0, 1.0)


# ----------------------------------------------------------------------------- per-anchor scores


@dataclass
class AnchorScores:
    """Per-anchor results: ``accuracy``/``top1`` ``(N,)`` float64 (NaN = anchor skipped), ``triplets``
    ``(N,)`` int64 valid triplets (paper variant) or counted p2 (reference variant)."""

    accuracy: np.ndarray
    top1: np.ndarray
    triplets: np.ndarray


def _prepare(pred: np.ndarray, gt: np.ndarray, exclude: np.ndarray | None):
    """Validated ``(pred, gt, include, empty AnchorScores, anchor blocks)`` for the two scorers."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.ndim != 2 or pred.shape[0] != pred.shape[1] or gt.shape != pred.shape:
        raise ValueError(f"pred and gt must be square (N, N) of equal shape, got {pred.shape} and {gt.shape}")
    if not np.isfinite(pred).all():
        raise ValueError("pred contains NaN or infinite similarities")
    n = pred.shape[0]
    include = ~np.eye(n, dtype=bool)
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=bool)
        if exclude.shape != pred.shape:
            raise ValueError(f"exclude must be {pred.shape}, got {exclude.shape}")
        include &= ~exclude
    scores = AnchorScores(np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, dtype=np.int64))
    block = max(1, _BLOCK_ELEMENTS // max(1, n * n))
    return pred, gt, include, scores, [slice(start, min(n, start + block)) for start in range(0, n, block)]


def _is_partial(w: np.ndarray) -> np.ndarray:
    return (w > 0) & (w < 1)


def triplet_anchor_scores(pred: np.ndarray, gt: np.ndarray, soft_only: bool = False, exclude: np.ndarray | None = None) -> AnchorScores:
    """Paper triplet accuracy and top-1 per anchor (pooled over the anchor's triplets).

    Args:
        pred: ``(N, N)`` predicted similarity, row = anchor (need not be symmetric).
        gt: ``(N, N)`` ground-truth similarity in [0, 1].
        soft_only: count only triplets where one of the two points is partially similar
            (0 < gt < 1) to the anchor.
        exclude: optional ``(N, N)`` bool; ``exclude[a, j]`` removes point ``j`` from anchor ``a``'s
            triplets (e.g. the prompt points of a point-conditioned model).

    Returns:
        :class:`AnchorScores`; anchors without a valid triplet are NaN.
    """
    pred, gt, include, scores, blocks = _prepare(pred, gt, exclude)
    for a in blocks:
        w, s, inc = gt[a], pred[a], include[a]
        pair = inc[:, :, None] & inc[:, None, :] & (w[:, :, None] > w[:, None, :])  # j more similar than k in GT
        if soft_only:
            part = _is_partial(w)
            pair &= part[:, :, None] | part[:, None, :]
        diff = s[:, :, None] - s[:, None, :]
        credit = np.where(diff > TIE_TOLERANCE, 1.0, np.where(diff >= -TIE_TOLERANCE, 0.5, 0.0))
        valid = pair.sum(axis=(1, 2))
        correct = (credit * pair).sum(axis=(1, 2))
        scores.triplets[a] = valid
        with np.errstate(invalid="ignore", divide="ignore"):
            scores.accuracy[a] = np.where(valid > 0, correct / valid, np.nan)
        # top-1: expected correctness of a random pick among the (tied) most similar points
        s_inc = np.where(inc, s, -np.inf)
        best = s_inc.max(axis=1, keepdims=True)
        tied = inc & (s_inc >= best - TIE_TOLERANCE)
        w_best = np.where(inc, w, -np.inf).max(axis=1, keepdims=True)
        hit = (tied & (w >= w_best)).sum(axis=1) / np.maximum(tied.sum(axis=1), 1)
        scores.top1[a] = np.where(valid > 0, hit, np.nan)
    return scores


def reference_anchor_scores(pred: np.ndarray, gt: np.ndarray, soft_only: bool = False, exclude: np.ndarray | None = None) -> AnchorScores:
    """The reference evaluator's per-(anchor, p2) accuracy (digest §1.10 step 3), vectorised.

    For anchor ``a`` the other (included) points are ranked by descending ``pred[a]`` (stable:
    equal values keep point order; the reference's torch ``argsort`` leaves that order
    unspecified), giving GT weights ``w[0..n-1]``. For each position ``p`` (with
    ``soft_only``: only partially similar ``w[p]``): ``errors = #{j < p: w[p] > w[j]} +
    #{j > p: w[p] < w[j]}``, ``possible = #{j: w[j] != w[p]}``; skipped if ``possible == 0``;
    ``acc_p = 1 - errors / possible``. Anchor accuracy = mean of ``acc_p``; top-1 =
    ``w[0] >= max(w)``. The anchor is removed explicitly instead of assumed to rank first.

    Args / Returns: as :func:`triplet_anchor_scores` (``triplets`` = number of counted p).
    """
    pred, gt, include, scores, blocks = _prepare(pred, gt, exclude)
    pos = np.arange(pred.shape[0])
    before = pos[None, :] < pos[:, None]  # [p, j]: j ranked before p
    after = pos[None, :] > pos[:, None]
    for a in blocks:
        order = np.argsort(-np.where(include[a], pred[a], -np.inf), axis=1, kind="stable")
        w = np.take_along_axis(gt[a], order, axis=1)
        inc = np.take_along_axis(include[a], order, axis=1)
        wp, wj = w[:, :, None], w[:, None, :]
        incj = inc[:, None, :]
        errors = ((before & (wp > wj) | after & (wp < wj)) & incj).sum(axis=2)
        possible = ((wp != wj) & incj).sum(axis=2)
        counted = inc & (possible > 0)
        if soft_only:
            counted &= _is_partial(w)
        with np.errstate(invalid="ignore", divide="ignore"):
            acc_p = np.where(counted, 1.0 - errors / np.maximum(possible, 1), 0.0)
            num = counted.sum(axis=1)
            scores.accuracy[a] = np.where(num > 0, acc_p.sum(axis=1) / num, np.nan)
        w_max = np.where(inc, w, -np.inf).max(axis=1)
        scores.top1[a] = np.where(num > 0, (w[:, 0] >= w_max).astype(np.float64), np.nan)
        scores.triplets[a] = num
    return scores


# ----------------------------------------------------------------------------- averaging


def summarize_anchors(scores: AnchorScores, labels: np.ndarray) -> dict:
    """Per-image numbers from per-anchor scores.

    Returns:
        ``{"triplet_point", "triplet_material", "top1_point", "top1_material"}`` (float, NaN when
        no anchor was scored) plus ``anchors`` (scored anchors), ``materials`` (materials with a
        scored anchor) and ``triplets`` (sum of the per-anchor counts).
    """
    labels = np.asarray(labels)
    ok = ~np.isnan(scores.accuracy)
    out = {"anchors": int(ok.sum()), "materials": 0, "triplets": int(scores.triplets[ok].sum())}
    if not ok.any():
        return {**dict.fromkeys(METRIC_KEYS, float("nan")), **out}
    mats = np.unique(labels[ok])
    out["materials"] = int(mats.size)
    for name, values in (("triplet", scores.accuracy), ("top1", scores.top1)):
        out[f"{name}_point"] = float(values[ok].mean())
        out[f"{name}_material"] = float(np.mean([values[ok & (labels == m)].mean() for m in mats]))
    return out


def mode_ground_truth(material_similarity: np.ndarray, labels: np.ndarray, mode: str) -> np.ndarray:
    """``(N, N)`` GT point similarity for a mode: relations kept (all, soft) or ignored (hard)."""
    labels = np.asarray(labels)
    if mode == "hard":
        return (labels[:, None] == labels[None, :]).astype(np.float64)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
    return np.asarray(material_similarity, dtype=np.float64)[np.ix_(labels, labels)]


_SCORERS = {"paper": triplet_anchor_scores, "reference": reference_anchor_scores}


def evaluate_points(
    pred: np.ndarray,
    material_similarity: np.ndarray,
    labels: np.ndarray,
    has_relations: bool,
    exclude: np.ndarray | None = None,
) -> dict:
    """Every mode and variant for one image.

    Args:
        pred: ``(N, N)`` predicted similarity (row = anchor).
        material_similarity: ``(M, M)`` GT material similarity.
        labels: ``(N,)`` material index of each point.
        has_relations: the image has a relations file (``soft`` is evaluated only then).
        exclude: optional ``(N, N)`` bool, see :func:`triplet_anchor_scores`.

    Returns:
        ``{mode: {variant: summary}}``, summary as :func:`summarize_anchors`, or
        ``{"skipped": reason}`` when no anchor could be scored (e.g. one material only).
    """
    labels = np.asarray(labels)
    results: dict = {}
    for mode in MODES:
        results[mode] = {}
        for variant, scorer in _SCORERS.items():
            if mode == "soft" and not has_relations:
                results[mode][variant] = {"skipped": "no group_relations.txt"}
                continue
            gt = mode_ground_truth(material_similarity, labels, mode)
            summary = summarize_anchors(scorer(pred, gt, soft_only=mode == "soft", exclude=exclude), labels)
            if summary["anchors"] == 0:
                if np.unique(labels).size < 2:
                    reason = "one material only: no triplet has two different ground-truth similarities"
                elif mode == "soft":
                    reason = "no partially similar points"
                else:
                    reason = "no anchor has a valid triplet"
                summary = {"skipped": reason}
            results[mode][variant] = summary
    return results


def aggregate_images(per_image: list[dict]) -> dict:
    """Dataset numbers: the mean over images of each per-image number (each image weighs the same).

    Args:
        per_image: ``evaluate_points`` results of each image.

    Returns:
        ``{mode: {variant: {metric: mean, "images": count, "anchors": total}}}``; a metric is NaN
        when no image was scored in that mode.
    """
    out: dict = {}
    for mode in MODES:
        out[mode] = {}
        for variant in VARIANTS:
            scored = [r[mode][variant] for r in per_image if "skipped" not in r.get(mode, {}).get(variant, {"skipped": 1})]
            entry = {k: (float(np.mean([s[k] for s in scored])) if scored else float("nan")) for k in METRIC_KEYS}
            entry["images"] = len(scored)
            entry["anchors"] = int(sum(s["anchors"] for s in scored))
            out[mode][variant] = entry
    return out
