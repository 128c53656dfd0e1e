"""Unsupervised extraction of uniform textures from photos (paper §3.2.1 and appendix I, digest §1.3-1.4).

The photo is cut into square cells of ``T x T`` pixels. Each cell has 13 value distributions
("channels", digest §1.3): B, G, R, mean(B,G,R); Sobel-x of B, G, R; Sobel-y of B, G, R;
gradient magnitude of B, G, R (3x3 Sobel). Two cells are *similar* when, on every channel,
``1 - JS distance >= sim_thresh`` (0.5), where the distributions are 10-bin histograms over the
*pair's joint range* ``[min(a ∪ b), max(a ∪ b)]`` (``np.histogram(bins=10, range=...)``) and the
JS distance uses the natural log (``scipy.spatial.distance.jensenshannon``). A square region of
cells is uniform when every pair of its cells is similar; square regions of at least
``min_cells x min_cells`` cells are extracted, largest first, without near-duplicates.

Same definition as the reference, computed differently:

- **Histograms from per-cell cumulative counts.** Every channel takes few distinct values
  (B, G, R: 256 integers; mean: (B+G+R)/3; Sobel: integers -1020..1020; magnitude: square
  roots of the integers gx²+gy²). For each cell we store how many of its pixels lie below each
  possible value (a cumulative table; for the magnitude, the cell's sorted gx²+gy²). The count
  of a cell in any bin ``[e_k, e_k+1)`` of any pair's joint range is then two table look-ups,
  so the reference's joint-range histogram is reproduced exactly (same float64 bin edges as
  ``np.linspace``, same ``<``/``<=`` tests) without touching pixels again. A pair comparison
  is an array operation over (pairs x 13 channels x 10 bins), and the JS divergence of two
  integer histograms with equal totals ``n`` is ``ln 2 + Σ(L(a) + L(b) - L(a+b)) / 2n`` with
  ``L(k) = k ln k`` from a table (no logarithms per pair).
- **All squares at once.** Uniformity is closed under sub-squares, so a square of side s+1 is
  uniform iff its four side-s sub-squares are and every pair of cells at Chebyshev distance
  exactly s in it is similar. Scores ``min pair similarity`` are built side by side for every
  origin from that recurrence; cell pairs are only compared inside squares whose four
  sub-squares are uniform, so textured areas stop costing after a few sides.
- **Colour first.** A square uniform on all 13 channels is uniform on B, G, R and mean, so a
  first search on those four (up to ``min_cells``) finds the only cells that can be in a region;
  the gradient distributions are computed for those cells alone. Same regions, and photos
  with little uniform area skip most of the work.

Bugs of the reference fixed here (docs/deviations.md): every cell of a region is compared with
every other (the reference never compared the first row and column), the saved square is the
verified one (the reference saved one cell less), near-duplicates are removed by overlap (the
reference removed only fully contained squares).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from matseg.config import option, section

CHANNEL_NAMES = (
    "B", "G", "R", "mean",
    "sobel_x_B", "sobel_x_G", "sobel_x_R",
    "sobel_y_B", "sobel_y_G", "sobel_y_R",
    "grad_mag_B", "grad_mag_G", "grad_mag_R",
)  # fmt: skip

# |3x3 Sobel| of 8-bit data is at most 4 * 255.
_SOBEL_MAX = 1020
# Pairs compared per vectorised batch: bounds the (pairs x bins) temporaries to ~100 MB.
_PAIR_CHUNK = 65536
# gx² + gy² <= 2 * 1020² < 2**21: cell index and key share one int64.
_KEY_BITS = 21


@dataclass
class SmoothFilterConfig:
    """Rejection of textureless crops (digest §1.4), applied to the crop at source resolution."""

    enabled: bool = option(True, "move too-smooth or saturated textures to .rejected/ instead of keeping them", "§1.4")
    min_std: float = option(3.5, "reject if any 2x2 quadrant of the crop has a pixel std below this", "§1.4")
    bright_std: float = option(6.0, "... or a quadrant with std below this and ...", "§1.4")
    bright_mean: float = option(245.0, "... mean above this (saturated highlights)", "§1.4")


@dataclass
class TextureExtractConfig:
    """Parameters of texture extraction (paper appendix I, digest §1.3-1.4)."""

    tile_size: int = option(0, "cell side in px of the working image; 0 = by image size (tile_small / tile_large)", "app. I")
    tile_small: int = option(40, "cell side for small photos (Open Images, <= 1024 px)", "app. I")
    tile_large: int = option(75, "cell side for large photos (Segment Anything, ~1500x2250)", "app. I, §1.3")
    large_min_side: int = option(1200, "a photo is large when the shorter side of its working image is at least this many px", "ours")
    min_cells: int = option(0, "minimum side of a region in cells; 0 = by image size (min_cells_small / min_cells_large)", "app. I")
    min_cells_small: int = option(6, "minimum region side in cells for small photos (6 x 40 = 240 px)", "app. I")
    min_cells_large: int = option(7, "minimum region side in cells for large photos (7 x 75 = 525 px)", "app. I, §1.3")
    max_image_size: int = option(2200, "photos whose shorter side is longer are first downscaled to this shorter side (bilinear; area averaging below half size)", "§1.3")
    sim_thresh: float = option(0.5, "two cells are similar when 1 - Jensen-Shannon distance >= this on every channel", "§1.3, paper §3.2.1")
    bins: int = option(10, "histogram bins per channel, over the pair's joint value range", "§1.3")
    max_overlap: float = option(0.25, "drop a region when this fraction of its area or more lies in one already kept (larger or better) region; 1.0 = drop only fully contained ones (reference)", "ours, §1.3")
    max_regions: int = option(101, "at most this many regions per photo (kept + rejected), largest first", "§1.3")
    smooth_filter: SmoothFilterConfig = section(SmoothFilterConfig, "rejection of smooth / saturated crops")

    def __post_init__(self):
        if self.tile_size < 0 or self.min_cells < 0:
            raise ValueError(f"tile_size and min_cells must be >= 0 (0 = automatic), got {self.tile_size}, {self.min_cells}")
        for name in ("tile_small", "tile_large"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be >= 2 px, got {getattr(self, name)}")
        if max(self.tile_size, self.tile_small, self.tile_large) > 255:
            raise ValueError("tile sizes above 255 px are not supported (per-cell counts are 16-bit)")
        for name in ("min_cells_small", "min_cells_large"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be >= 2, got {getattr(self, name)}")
        if self.min_cells == 1:
            raise ValueError("min_cells must be 0 (automatic) or >= 2")
        if self.max_image_size < 16:
            raise ValueError(f"max_image_size must be >= 16, got {self.max_image_size}")
        if not 0.0 < self.sim_thresh <= 1.0:
            raise ValueError(f"sim_thresh must be in (0, 1], got {self.sim_thresh}")
        if self.bins < 2:
            raise ValueError(f"bins must be >= 2, got {self.bins}")
        if not 0.0 < self.max_overlap <= 1.0:
            raise ValueError(f"max_overlap must be in (0, 1], got {self.max_overlap}")
        if self.max_regions < 1:
            raise ValueError(f"max_regions must be >= 1, got {self.max_regions}")


# ---------------------------------------------------------------------------------------------
# Working image and grid


def working_image(rgb: np.ndarray, max_image_size: int) -> tuple[np.ndarray, float]:
    """Downscale so that the shorter side is at most ``max_image_size`` (digest §1.3 step 1).

    Bilinear, or area averaging when the scale is below 0.5.

    Args:
        rgb: ``(H, W, 3)`` uint8.
        max_image_size: limit of the shorter side in px.

    Returns:
        ``(work, scale)``: ``work`` is ``(h, w, 3)`` uint8 (``rgb`` itself when no resize is
        needed), ``scale = work side / source side`` (<= 1).
    """
    _check_rgb(rgb)
    h, w = rgb.shape[:2]
    scale = max_image_size / min(h, w)
    if scale >= 1.0:
        return rgb, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # As elsewhere in matseg: bilinear (the reference's), area averaging when shrinking more
    # than 2x, where bilinear would alias fine texture (and so its gradients).
    interpolation = cv2.INTER_AREA if scale < 0.5 else cv2.INTER_LINEAR
    return cv2.resize(rgb, size, interpolation=interpolation), scale


def grid_parameters(work_height: int, work_width: int, cfg: TextureExtractConfig) -> tuple[int, int, bool]:
    """``(tile, min_cells, large)`` for a working image of this size (paper appendix I).

    A photo is *large* when the shorter side of its working image is at least
    ``cfg.large_min_side``; explicit ``tile_size`` / ``min_cells`` override the size classes.
    """
    large = min(work_height, work_width) >= cfg.large_min_side
    tile = cfg.tile_size or (cfg.tile_large if large else cfg.tile_small)
    min_cells = cfg.min_cells or (cfg.min_cells_large if large else cfg.min_cells_small)
    return tile, min_cells, large


def _check_rgb(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        got = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {got}")


# ---------------------------------------------------------------------------------------------
# Per-cell statistics


@dataclass
class _DenseChannel:
    """Channel with few distinct values: ``value(level)``, level = 0..L-1, and per-cell cumulative counts.

    ``cum[r * (L + 1) + j]`` = number of pixels of the cell stored in row ``r = row_of[cell]``
    whose level is ``< j``. ``offset`` is set for integer-valued channels (value = level +
    offset); otherwise ``values`` (sorted float64 value of each level) is searched.
    """

    num_levels: int
    cum: np.ndarray
    row_of: np.ndarray
    offset: int | None
    values: np.ndarray | None

    def count_below(self, cells: np.ndarray, edges: np.ndarray) -> np.ndarray:
        if self.offset is not None:
            # For integer data, #(v < e) = ceil(e) - offset exactly (ceil of a float is exact).
            j = np.ceil(edges).astype(np.int64) - self.offset
        else:
            j = np.searchsorted(self.values, edges, side="left").astype(np.int64)
        np.clip(j, 0, self.num_levels, out=j)
        j += self.row_of[cells][:, None] * (self.num_levels + 1)
        return self.cum[j]


@dataclass
class _SortedChannel:
    """Gradient magnitude ``sqrt(k)``, ``k = gx² + gy²``: every cell's k values, sorted, as one array.

    ``keys[r * n + i] = (r << 21) + k_i`` with ``k_i`` sorted within row ``r = row_of[cell]``
    (k < 2**21), so one ``searchsorted`` over all cells answers "how many pixels of a cell
    have k < K".
    """

    keys: np.ndarray
    row_of: np.ndarray
    pixels_per_cell: int

    def count_below(self, cells: np.ndarray, edges: np.ndarray) -> np.ndarray:
        # sqrt is monotone and float64 sqrt is correctly rounded, so #(sqrt(k) < e) = #(k < K)
        # with K the smallest integer whose float64 sqrt is >= e: the comparisons stay exact.
        k = np.ceil(edges * edges).astype(np.int64)
        for _ in range(8):  # ceil(e²) is off by at most one; step until exact
            down = (k > 0) & (np.sqrt(np.maximum(k - 1, 0).astype(np.float64)) >= edges)
            up = np.sqrt(k.astype(np.float64)) < edges
            if not (down.any() or up.any()):
                break
            k += up.astype(np.int64) - down.astype(np.int64)
        rows = self.row_of[cells][:, None]
        flat = ((rows << _KEY_BITS) + np.minimum(k, 1 << _KEY_BITS)).reshape(-1)
        # Sorted queries let searchsorted reuse its previous position: ~10x faster here.
        order = np.argsort(flat)
        found = np.empty(flat.shape, np.int64)
        found[order] = np.searchsorted(self.keys, flat[order], side="left")
        return found.reshape(edges.shape) - rows * self.pixels_per_cell


@dataclass
class CellStats:
    """Per-cell distributions of the 13 channels of one working image (see :func:`cell_statistics`).

    Attributes:
        rows, cols: grid size in cells; cell ``c`` is at row ``c // cols``, column ``c % cols``.
        tile: cell side in px; every cell holds ``n = tile²`` pixels.
        bins: histogram bins per channel.
        lo, hi: ``(channels, cells)`` float64, each cell's minimum and maximum value per
            channel (the reference's float64 property-map values); NaN for cells not computed.
        computed: ``(cells,)`` bool, the cells whose distributions were computed (only these
            may be compared).
    """

    rows: int
    cols: int
    tile: int
    bins: int
    lo: np.ndarray
    hi: np.ndarray
    computed: np.ndarray = field(repr=False)
    channels: list = field(repr=False)
    xlogx: np.ndarray = field(repr=False)

    @property
    def num_cells(self) -> int:
        return self.rows * self.cols

    @property
    def pixels_per_cell(self) -> int:
        return self.tile * self.tile


def _cell_major(plane: np.ndarray, rows: int, cols: int, tile: int) -> np.ndarray:
    """``(H, W)`` -> ``(rows * cols, tile²)``: the pixels of each grid cell as one row."""
    grid = plane[: rows * tile, : cols * tile].reshape(rows, tile, cols, tile)
    return np.ascontiguousarray(grid.transpose(0, 2, 1, 3)).reshape(rows * cols, tile * tile)


def _dense_channel(levels: np.ndarray, num_levels: int, row_of: np.ndarray, offset: int | None, values: np.ndarray | None) -> _DenseChannel:
    rows, n = levels.shape
    cum = np.zeros((rows, num_levels + 1), np.uint16 if n < 65536 else np.int32)
    # A few hundred cells at a time keeps the bincount temporaries small (~32 MB).
    step = max(1, (1 << 22) // max(num_levels, n))
    for start in range(0, rows, step):
        block = levels[start : start + step]
        index = np.add(block, (np.arange(block.shape[0], dtype=np.intp) * num_levels)[:, None], dtype=np.intp)
        counts = np.bincount(index.reshape(-1), minlength=block.shape[0] * num_levels)
        np.cumsum(counts.reshape(block.shape[0], num_levels), axis=1, out=cum[start : start + step, 1:])
    return _DenseChannel(num_levels, cum.reshape(-1), row_of, offset, values)


def cell_statistics(work: np.ndarray, tile: int, bins: int = 10, channels: int = 13, cells: np.ndarray | None = None) -> CellStats:
    """Per-cell distributions of the channels of ``work`` on a ``tile``-px grid.

    Channels (digest §1.3, in this order): B, G, R; mean(B, G, R); Sobel-x of B, G, R; Sobel-y
    of B, G, R; gradient magnitude ``sqrt(gx² + gy²)`` of B, G, R (3x3 Sobel over the whole
    image, OpenCV's default reflected border). Values are kept exactly as integers (int16 Sobel,
    int32 ``gx² + gy²``); nothing is stored in float per pixel.

    Args:
        work: ``(H, W, 3)`` uint8 RGB working image with ``H, W >= tile``.
        tile: cell side in px, 2..255. Cells are ``floor(H / tile) x floor(W / tile)``, from the
            top-left corner; the remainder at the right/bottom is not used.
        bins: histogram bins per channel (for the comparisons made later).
        channels: compute only the first this many channels (4 = B, G, R, mean).
        cells: optional ``(rows, cols)`` or ``(rows * cols,)`` bool mask: compute only these
            cells (comparing another one raises ``ValueError``).

    Returns:
        :class:`CellStats`.
    """
    _check_rgb(work)
    if not 2 <= tile <= 255:
        raise ValueError(f"tile must be in 2..255 px, got {tile}")
    if not 1 <= channels <= len(CHANNEL_NAMES):
        raise ValueError(f"channels must be in 1..{len(CHANNEL_NAMES)}, got {channels}")
    rows, cols = work.shape[0] // tile, work.shape[1] // tile
    if rows < 1 or cols < 1:
        raise ValueError(f"image {work.shape[1]}x{work.shape[0]} is smaller than one {tile}-px cell")
    n = tile * tile
    total_cells = rows * cols
    computed = np.ones(total_cells, bool) if cells is None else np.asarray(cells, bool).reshape(-1).copy()
    if computed.size != total_cells:
        raise ValueError(f"cells mask has {computed.size} entries, the grid {rows}x{cols} has {total_cells}")
    selected = np.flatnonzero(computed)
    row_of = np.full(total_cells, -1, np.int64)
    row_of[selected] = np.arange(selected.size)
    subset = None if selected.size == total_cells else selected
    lo = np.full((channels, total_cells), np.nan)
    hi = np.full_like(lo, np.nan)
    built: dict[int, object] = {}

    def cell_rows(plane: np.ndarray) -> np.ndarray:
        per_cell = _cell_major(plane, rows, cols, tile)
        return per_cell if subset is None else per_cell[subset]

    def add_dense(index: int, levels: np.ndarray, num_levels: int, offset: int | None, values=None) -> None:
        mn, mx = levels.min(axis=1), levels.max(axis=1)
        if values is None:
            lo[index, selected], hi[index, selected] = mn.astype(np.float64) + offset, mx.astype(np.float64) + offset
        else:
            lo[index, selected], hi[index, selected] = values[mn], values[mx]
        built[index] = _dense_channel(levels, num_levels, row_of, offset, values)

    red, green, blue = cv2.split(work)
    bgr = [blue, green, red]
    total = np.zeros(work.shape[:2], np.uint16)
    for c, plane in enumerate(bgr):
        if c < channels:
            add_dense(c, cell_rows(plane), 256, 0)
        total += plane
    if channels > 3:
        # mean(B, G, R) in float64 is (B + G + R) / 3 correctly rounded: 766 possible values.
        add_dense(3, cell_rows(total), 766, None, np.arange(766, dtype=np.float64) / 3.0)
    for c, plane in enumerate(bgr if channels > 4 else ()):
        gx = cell_rows(cv2.Sobel(plane, cv2.CV_16S, 1, 0, ksize=3))
        gy = cell_rows(cv2.Sobel(plane, cv2.CV_16S, 0, 1, ksize=3))
        for index, g in ((4 + c, gx), (7 + c, gy)):
            if index < channels:
                add_dense(index, g + np.int16(_SOBEL_MAX), 2 * _SOBEL_MAX + 1, -_SOBEL_MAX)
        if 10 + c >= channels:
            continue
        squares = gx.astype(np.int32)
        squares *= squares
        gy32 = gy.astype(np.int32)
        squares += gy32 * gy32
        del gx, gy, gy32
        squares.sort(axis=1)
        lo[10 + c, selected] = np.sqrt(squares[:, 0].astype(np.float64))
        hi[10 + c, selected] = np.sqrt(squares[:, -1].astype(np.float64))
        keys = np.add(squares, (np.arange(selected.size, dtype=np.int64) << _KEY_BITS)[:, None], dtype=np.int64)
        del squares
        built[10 + c] = _SortedChannel(keys.reshape(-1), row_of, n)
    k = np.arange(2 * n + 1, dtype=np.float64)
    xlogx = k * np.log(np.maximum(k, 1.0))
    return CellStats(rows, cols, tile, bins, lo, hi, computed, [built[i] for i in range(channels)], xlogx)


# ---------------------------------------------------------------------------------------------
# Histograms and similarities


def joint_range_histograms(stats: CellStats, channel: int, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Histogram counts of cells ``a`` and ``b`` on one channel, over each pair's joint range.

    Identical to ``np.histogram(values, bins, range=(min(a ∪ b), max(a ∪ b)))`` of each cell of
    the pair (float64 edges from ``np.linspace``, bins ``[e_k, e_k+1)``, the last one closed;
    a pair with a single value puts everything in one bin of both).

    Args:
        stats: from :func:`cell_statistics`.
        channel: index into :data:`CHANNEL_NAMES`.
        a, b: ``(P,)`` integer cell indices.

    Returns:
        ``(counts_a, counts_b)``, each ``(P, bins)`` int64; every row sums to ``tile²``.
    """
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    if not (stats.computed[a].all() and stats.computed[b].all()):
        raise ValueError("a cell outside the `cells` given to cell_statistics was compared")
    lo = np.minimum(stats.lo[channel, a], stats.lo[channel, b])
    hi = np.maximum(stats.hi[channel, a], stats.hi[channel, b])
    step = (hi - lo) / stats.bins
    # np.linspace: edge_k = k * step + start, in this order of float64 operations.
    edges = np.arange(1, stats.bins, dtype=np.float64)[None, :] * step[:, None] + lo[:, None]
    n = stats.pixels_per_cell
    out = []
    for cells in (a, b):
        below = np.empty((len(cells), stats.bins + 1), np.int64)
        below[:, 0] = 0
        below[:, -1] = n
        below[:, 1:-1] = stats.channels[channel].count_below(cells, edges)
        out.append(np.diff(below, axis=1))
    return out[0], out[1]


def js_distance(p: np.ndarray, q: np.ndarray, axis: int = -1) -> np.ndarray:
    """Jensen-Shannon distance (natural log) between distributions along ``axis``.

    Same as ``scipy.spatial.distance.jensenshannon(p, q, axis=axis)``: ``p`` and ``q`` are
    normalised to sum 1, ``m = (p + q) / 2``, result ``sqrt((KL(p||m) + KL(q||m)) / 2)`` in
    ``[0, sqrt(ln 2) ≈ 0.8326]``. Inputs: non-negative float arrays of equal shape.
    """
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {p.shape} and {q.shape}")
    if (p < 0).any() or (q < 0).any():
        raise ValueError("distributions must be non-negative")
    p = p / p.sum(axis=axis, keepdims=True)
    q = q / q.sum(axis=axis, keepdims=True)
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log(p / m), 0.0).sum(axis=axis)
        kl_q = np.where(q > 0, q * np.log(q / m), 0.0).sum(axis=axis)
    return np.sqrt(np.maximum((kl_p + kl_q) / 2, 0.0))


def _js_distance_counts(stats: CellStats, ca: np.ndarray, cb: np.ndarray) -> np.ndarray:
    # For counts with equal totals n: JS = ln 2 + Σ(a ln a + b ln b - (a+b) ln(a+b)) / 2n.
    t = stats.xlogx
    s = (t[ca] + t[cb] - t[ca + cb]).sum(axis=1)
    js = math.log(2.0) + s / (2 * stats.pixels_per_cell)
    return np.sqrt(np.maximum(js, 0.0))


def channel_similarity(stats: CellStats, channel: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``1 - JS distance`` of the joint-range histograms of cell pairs on one channel.

    Returns ``(P,)`` float64 in ``[1 - sqrt(ln 2) ≈ 0.167, 1]``; 1 for identical distributions.
    """
    ca, cb = joint_range_histograms(stats, channel, a, b)
    return 1.0 - _js_distance_counts(stats, ca, cb)


def pair_similarity(stats: CellStats, a: np.ndarray, b: np.ndarray, sim_thresh: float | None = None) -> np.ndarray:
    """Similarity of cell pairs: the minimum of :func:`channel_similarity` over the channels of ``stats`` (13).

    Args:
        stats: from :func:`cell_statistics`.
        a, b: ``(P,)`` integer cell indices.
        sim_thresh: if given, a pair stops being compared at its first channel below the
            threshold (as the reference does); its value is then that channel's similarity
            (``< sim_thresh``), not the minimum over all channels. Pairs at or above the
            threshold always get the exact minimum.

    Returns:
        ``(P,)`` float64 in ``[0.167, 1]``.
    """
    a = np.asarray(a, np.int64).reshape(-1)
    b = np.asarray(b, np.int64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same length, got {a.shape} and {b.shape}")
    if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= stats.num_cells):
        raise ValueError(f"cell indices must be in [0, {stats.num_cells}), got {min(a.min(), b.min())}..{max(a.max(), b.max())}")
    sim = np.ones(a.shape, np.float64)
    for start in range(0, a.size, _PAIR_CHUNK):
        alive = np.arange(start, min(start + _PAIR_CHUNK, a.size))
        for channel in range(len(stats.channels)):
            if not alive.size:
                break
            s = channel_similarity(stats, channel, a[alive], b[alive])
            sim[alive] = np.minimum(sim[alive], s)
            if sim_thresh is not None:
                alive = alive[s >= sim_thresh]
    return sim


# ---------------------------------------------------------------------------------------------
# Uniform squares


@dataclass
class UniformSquares:
    """The largest uniform square at every origin cell (see :func:`uniform_squares`).

    Attributes:
        side: ``(rows, cols)`` int32, side in cells of the largest square whose top-left cell is
            this one and whose cell pairs are all similar (1 = only the cell itself, 0 = a cell
            not computed).
        score: ``(rows, cols)`` float64, minimum pair similarity in that square (1.0 for side 1).
        pairs_compared: number of cell pairs compared.
    """

    side: np.ndarray
    score: np.ndarray
    pairs_compared: int


def _ring_offsets(s: int) -> list[tuple[int, int]]:
    """Offsets ``(dy, dx)`` at Chebyshev distance ``s``, one of each ± pair (dy > 0, or dy == 0 and dx > 0)."""
    ring = [(s, dx) for dx in range(-s, s + 1)]
    ring += [(dy, dx) for dy in range(1, s) for dx in (-s, s)]
    ring.append((0, s))
    return ring


def _sliding_min(values: np.ndarray, length: int, axis: int) -> np.ndarray:
    """``out[i] = min(values[i : i + length])`` along ``axis`` (log2(length) passes)."""
    if length == 1:
        return values
    m, k = values, 1
    while 2 * k <= length:
        m = np.minimum(np.take(m, range(m.shape[axis] - k), axis=axis), np.take(m, range(k, m.shape[axis]), axis=axis))
        k *= 2
    size = values.shape[axis] - length + 1
    return np.minimum(np.take(m, range(size), axis=axis), np.take(m, range(length - k, length - k + size), axis=axis))


def _covered(origins: np.ndarray, side: int, shape: tuple[int, int]) -> np.ndarray:
    """Cells covered by a ``side x side`` square at any True origin of ``origins``."""
    sat = np.zeros((shape[0] + 1, shape[1] + 1), np.int32)
    sat[1 : origins.shape[0] + 1, 1 : origins.shape[1] + 1] = origins
    sat = sat.cumsum(0).cumsum(1)
    y = np.arange(shape[0])
    x = np.arange(shape[1])
    y0, x0 = np.maximum(y - side + 1, 0), np.maximum(x - side + 1, 0)
    y1, x1 = np.minimum(y, origins.shape[0] - 1) + 1, np.minimum(x, origins.shape[1] - 1) + 1
    total = sat[y1][:, x1] - sat[y0][:, x1] - sat[y1][:, x0] + sat[y0][:, x0]
    return total > 0


def uniform_squares(stats: CellStats, sim_thresh: float, max_side: int | None = None) -> UniformSquares:
    """For every origin cell, the largest square of cells whose every pair is similar.

    A pair is similar when :func:`pair_similarity` ``>= sim_thresh``. Exact: every pair of
    every square is accounted for (no unchecked first row or column). Work grows with the area
    of near-uniform regions, not with the number of cells squared. Only cells computed in
    ``stats`` take part (an origin that is not computed gets side 0).

    Args:
        stats: from :func:`cell_statistics`.
        sim_thresh: similarity threshold in (0, 1].
        max_side: stop growing at this side (default: the grid's shorter side).

    Returns:
        :class:`UniformSquares`.
    """
    rows, cols = stats.rows, stats.cols
    limit = min(rows, cols) if max_side is None else min(rows, cols, max_side)
    # Side 1: no pairs. Cells whose distributions were not computed never join a square.
    score = np.where(stats.computed.reshape(rows, cols), np.inf, -np.inf)
    best_side = stats.computed.reshape(rows, cols).astype(np.int32)
    best_score = np.ones((rows, cols), np.float64)
    compared = 0
    s = 1
    while s < limit:
        ok = score >= sim_thresh
        # Origins of side s+1 squares whose four side-s sub-squares are uniform.
        candidates = ok[:-1, :-1] & ok[1:, :-1] & ok[:-1, 1:] & ok[1:, 1:]
        if not candidates.any():
            break
        inside = _covered(candidates, s + 1, (rows, cols))
        ring = _ring_offsets(s)
        firsts, seconds, counts = [], [], []
        for dy, dx in ring:
            y0, y1 = max(0, -dy), rows - max(0, dy)
            x0, x1 = max(0, -dx), cols - max(0, dx)
            both = inside[y0:y1, x0:x1] & inside[y0 + dy : y1 + dy, x0 + dx : x1 + dx]
            yy, xx = np.nonzero(both)
            first = (yy + y0) * cols + (xx + x0)
            firsts.append(first)
            seconds.append(first + dy * cols + dx)
            counts.append(first.size)
        a, b = np.concatenate(firsts), np.concatenate(seconds)
        sims = pair_similarity(stats, a, b, sim_thresh)
        compared += a.size
        ring_min = np.full((rows - s, cols - s), np.inf)
        start = 0
        for (dy, dx), count, first in zip(ring, counts, firsts):
            simmap = np.full(rows * cols, np.inf)
            simmap[first] = sims[start : start + count]
            start += count
            window = _sliding_min(_sliding_min(simmap.reshape(rows, cols), s + 1 - abs(dy), 0), s + 1 - abs(dx), 1)
            top, left = max(0, -dy), max(0, -dx)
            np.minimum(ring_min, window[top : top + rows - s, left : left + cols - s], out=ring_min)
        score = np.minimum.reduce([score[:-1, :-1], score[1:, :-1], score[:-1, 1:], score[1:, 1:], ring_min])
        s += 1
        good = score >= sim_thresh
        best_side[: rows - s + 1, : cols - s + 1][good] = s
        best_score[: rows - s + 1, : cols - s + 1][good] = score[good]
    return UniformSquares(best_side, best_score, compared)


# ---------------------------------------------------------------------------------------------
# Regions


@dataclass(frozen=True)
class Square:
    """A square of grid cells: top-left ``(row, col)``, ``side`` cells, ``score`` = minimum pair similarity."""

    row: int
    col: int
    side: int
    score: float


def select_squares(found: UniformSquares, min_cells: int, max_overlap: float, max_regions: int) -> list[Square]:
    """Regions to extract: uniform squares of side >= ``min_cells``, largest first, without near-duplicates.

    Candidates are the largest square at each origin. They are taken in order of side
    (descending), score (descending), row, column; a candidate is dropped when at least
    ``max_overlap`` of its area lies inside one already taken square (with 1.0 only fully
    contained ones are dropped, as the reference did). At most ``max_regions`` are returned.
    """
    if min_cells < 1:
        raise ValueError(f"min_cells must be >= 1, got {min_cells}")
    rows, cols = np.nonzero(found.side >= min_cells)
    sides = found.side[rows, cols]
    scores = found.score[rows, cols]
    order = np.lexsort((cols, rows, -scores, -sides))
    taken: list[Square] = []
    boxes = np.zeros((0, 4), np.int64)  # row0, col0, row1, col1 of taken squares
    for i in order:
        r, c, s = int(rows[i]), int(cols[i]), int(sides[i])
        if boxes.size:
            ih = np.minimum(boxes[:, 2], r + s) - np.maximum(boxes[:, 0], r)
            iw = np.minimum(boxes[:, 3], c + s) - np.maximum(boxes[:, 1], c)
            overlap = np.clip(ih, 0, None) * np.clip(iw, 0, None) / float(s * s)
            if overlap.max() >= max_overlap:
                continue
        taken.append(Square(r, c, s, float(scores[i])))
        boxes = np.vstack([boxes, [r, c, r + s, c + s]])
        if len(taken) >= max_regions:
            break
    return taken


def smooth_reason(crop: np.ndarray, cfg: SmoothFilterConfig) -> str:
    """Why a texture crop is textureless (digest §1.4), or ``""`` if it is kept.

    The crop is split into 2x2 quadrants (``h // 2``, ``w // 2``); std and mean are over all
    pixels and channels of a quadrant. Too smooth: any quadrant with ``std < min_std``.
    Saturated: any quadrant with ``std < bright_std`` and ``mean > bright_mean``.

    Args:
        crop: ``(h, w, 3)`` uint8 with ``h, w >= 2``.
    """
    _check_rgb(crop)
    h, w = crop.shape[0] // 2, crop.shape[1] // 2
    if h < 1 or w < 1:
        raise ValueError(f"crop {crop.shape[1]}x{crop.shape[0]} too small for quadrants")
    for qy, qx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        quadrant = crop[qy * h : (qy + 1) * h if qy == 0 else None, qx * w : (qx + 1) * w if qx == 0 else None]
        std, mean = float(quadrant.std()), float(quadrant.mean())
        if std < cfg.min_std:
            return f"too smooth: a quadrant has std {std:.2f} < {cfg.min_std:g}"
        if std < cfg.bright_std and mean > cfg.bright_mean:
            return f"saturated: a quadrant has std {std:.2f} < {cfg.bright_std:g} and mean {mean:.1f} > {cfg.bright_mean:g}"
    return ""


@dataclass(frozen=True)
class Texture:
    """One extracted region.

    Attributes:
        square: the region in grid cells of the working image.
        box: ``(x, y, w, h)`` in source pixels (upright frame), the verified square mapped back
            (square, side rounded down to whole source pixels).
        box_working: ``(x, y, w, h)`` in working-image pixels (``side * tile``).
        rejected: reason the crop was set aside by the smooth/saturated filter, ``""`` if kept.
    """

    square: Square
    box: tuple[int, int, int, int]
    box_working: tuple[int, int, int, int]
    rejected: str = ""


@dataclass
class Extraction:
    """Result of :func:`extract_textures` for one photo.

    ``textures`` are in extraction order (largest, then best score first), kept and rejected
    together; ``too_small`` is set (with no textures) when the working image holds fewer than
    ``min_cells x min_cells`` cells.
    """

    source_size: tuple[int, int]
    working_size: tuple[int, int]
    scale: float
    tile: int
    min_cells: int
    large: bool
    grid: tuple[int, int]
    textures: list[Texture]
    uniform_origins: int = 0  # origins whose largest uniform square has >= min_cells cells
    pairs_compared: int = 0  # cell pairs compared (colour pre-search + full search)
    too_small: str = ""


def map_box(square: Square, tile: int, source_size: tuple[int, int], working_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The square's ``(x, y, w, h)`` in source pixels: corners scaled back per axis, kept square and inside the image."""
    sw, sh = source_size
    ww, wh = working_size
    fx, fy = sw / ww, sh / wh
    x0, y0 = round(square.col * tile * fx), round(square.row * tile * fy)
    x1, y1 = round((square.col + square.side) * tile * fx), round((square.row + square.side) * tile * fy)
    side = max(1, min(x1 - x0, y1 - y0, sw - x0, sh - y0))
    return x0, y0, side, side


def extract_textures(rgb: np.ndarray, cfg: TextureExtractConfig | None = None) -> Extraction:
    """Find the uniform-texture regions of a photo.

    Args:
        rgb: ``(H, W, 3)`` uint8 RGB photo (upright).
        cfg: parameters (defaults: the paper's).

    Returns:
        :class:`Extraction` with boxes in ``rgb``'s pixels. Deterministic (no randomness).
    """
    cfg = cfg or TextureExtractConfig()
    _check_rgb(rgb)
    work, scale = working_image(rgb, cfg.max_image_size)
    wh, ww = work.shape[:2]
    tile, min_cells, large = grid_parameters(wh, ww, cfg)
    rows, cols = wh // tile, ww // tile
    result = Extraction(
        source_size=(rgb.shape[1], rgb.shape[0]), working_size=(ww, wh), scale=scale, tile=tile,
        min_cells=min_cells, large=large, grid=(rows, cols), textures=[],
    )  # fmt: skip
    if min(rows, cols) < min_cells:
        need = min_cells * tile
        result.too_small = (
            f"working image {ww}x{wh} px holds {cols}x{rows} cells of {tile} px; "
            f"a texture needs {min_cells}x{min_cells} cells ({need}x{need} px)"
        )
        return result
    # A region uniform on all 13 channels is uniform on B, G, R and mean: a cheap first search
    # on those finds the only cells that can belong to one (squares of exactly min_cells suffice,
    # they cover every larger one); the gradient distributions are computed for those alone.
    colour = uniform_squares(cell_statistics(work, tile, cfg.bins, channels=4), cfg.sim_thresh, max_side=min_cells)
    result.pairs_compared = colour.pairs_compared
    possible = _covered(colour.side >= min_cells, min_cells, (rows, cols))
    if not possible.any():
        return result
    found = uniform_squares(cell_statistics(work, tile, cfg.bins, cells=possible), cfg.sim_thresh)
    result.uniform_origins = int((found.side >= min_cells).sum())
    result.pairs_compared += found.pairs_compared
    for square in select_squares(found, min_cells, cfg.max_overlap, cfg.max_regions):
        box = map_box(square, tile, result.source_size, result.working_size)
        x, y, w, h = box
        reason = smooth_reason(rgb[y : y + h, x : x + w], cfg.smooth_filter) if cfg.smooth_filter.enabled else ""
        side_px = square.side * tile
        result.textures.append(Texture(square, box, (square.col * tile, square.row * tile, side_px, side_px), reason))
    return result
