"""Texture extraction: each function's contract, the reference's definition reproduced exactly,
its scan bugs fixed, and agreement with an exact slow checker on the shared natural images."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from matseg.extract.textures import (
    CHANNEL_NAMES,
    SmoothFilterConfig,
    Square,
    TextureExtractConfig,
    UniformSquares,
    cell_statistics,
    channel_similarity,
    extract_textures,
    grid_parameters,
    joint_range_histograms,
    js_distance,
    map_box,
    pair_similarity,
    select_squares,
    smooth_reason,
    uniform_squares,
    working_image,
)
from matseg.io.images import read_image_rgb

# ---------------------------------------------------------------------------------------------
# The exact, slow checker: the reference's definition written from the digest (§1.3), with
# np.histogram over each pair's joint range and scipy's jensenshannon, float64 property maps.


def reference_maps(rgb: np.ndarray) -> np.ndarray:
    """(13, H, W) float64: B, G, R, mean; Sobel-x, Sobel-y, magnitude of B, G, R (cv2.CV_64F, ksize 3)."""
    bgr = rgb[:, :, ::-1].astype(np.float64)
    gx = cv2.Sobel(bgr, cv2.CV_64F, 1, 0, ksize=3)
    gy = cv2.Sobel(bgr, cv2.CV_64F, 0, 1, ksize=3)
    mag = np.sqrt(gx**2 + gy**2)
    return np.concatenate([bgr, bgr.mean(axis=2, keepdims=True), gx, gy, mag], axis=2).transpose(2, 0, 1)


def reference_channel_sims(maps: np.ndarray, tile: int, cols: int, a: int, b: int, thresh: float | None = None) -> list[float]:
    """1 - jensenshannon of np.histogram(bins=10, range=joint min/max, density=True), per channel."""
    (ya, xa), (yb, xb) = divmod(a, cols), divmod(b, cols)
    sims = []
    for m in maps:
        va = m[ya * tile : (ya + 1) * tile, xa * tile : (xa + 1) * tile].ravel()
        vb = m[yb * tile : (yb + 1) * tile, xb * tile : (xb + 1) * tile].ravel()
        value_range = (min(va.min(), vb.min()), max(va.max(), vb.max()))
        ha = np.histogram(va, bins=10, range=value_range, density=True)[0]
        hb = np.histogram(vb, bins=10, range=value_range, density=True)[0]
        sims.append(1.0 - jensenshannon(ha, hb))
        if thresh is not None and sims[-1] < thresh:
            break
    return sims


def reference_max_sides(maps: np.ndarray, tile: int, rows: int, cols: int, thresh: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Largest square at each origin whose every pair passes the reference test (all pairs checked)."""
    memo: dict[tuple[int, int], float] = {}

    def sim(a: int, b: int) -> float:
        key = (min(a, b), max(a, b))
        if key not in memo:
            memo[key] = min(reference_channel_sims(maps, tile, cols, a, b, thresh))
        return memo[key]

    side = np.ones((rows, cols), np.int32)
    score = np.ones((rows, cols))
    for r in range(rows):
        for c in range(cols):
            s, low = 1, 1.0
            while r + s < rows and c + s < cols:
                square = [(r + i) * cols + c + j for i in range(s + 1) for j in range(s + 1)]
                new = [q for q in square if q // cols == r + s or q % cols == c + s]
                sims = [sim(p, q) for q in new for p in square if p != q]
                if min(sims) < thresh:
                    break
                s, low = s + 1, min(low, *sims)
            side[r, c], score[r, c] = s, low
    return side, score


def assert_same_similarity(ours, ref) -> None:
    """Equal JS divergences (1 - sim)² to 1e-12; the square root makes near-identical pairs
    (divergence ~1e-16 of rounding) differ by up to ~1e-8 in similarity."""
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert np.abs((1 - ours) ** 2 - (1 - ref) ** 2).max() < 1e-12
    assert np.abs(ours - ref).max() < 1e-7


def noise_field(rng: np.random.Generator, h: int, w: int, low: int = 40, high: int = 200) -> np.ndarray:
    """Uniform i.i.d. noise: every cell has the same distributions (a perfectly uniform texture)."""
    return rng.integers(low, high, size=(h, w, 3)).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Histograms and distances


def test_joint_range_histograms_equal_numpy_on_every_channel(photo_maker):
    rng = np.random.default_rng(3)
    img = photo_maker(rng, 120, 160)
    img[:40, :40] = 77  # a constant cell: single-value ranges on several channels
    tile = 20
    stats = cell_statistics(img, tile)
    maps = reference_maps(img)
    a = np.array([0, 0, 1, 5, 7, 13, 22, 3, 0])
    b = np.array([1, 6, 8, 17, 9, 2, 23, 3, 7])
    for ch in range(len(CHANNEL_NAMES)):
        ca, cb = joint_range_histograms(stats, ch, a, b)
        assert ca.shape == (len(a), 10) and (ca.sum(1) == tile * tile).all() and (cb.sum(1) == tile * tile).all()
        for i, (p, q) in enumerate(zip(a, b)):
            (yp, xp), (yq, xq) = divmod(int(p), stats.cols), divmod(int(q), stats.cols)
            vp = maps[ch, yp * tile : (yp + 1) * tile, xp * tile : (xp + 1) * tile].ravel()
            vq = maps[ch, yq * tile : (yq + 1) * tile, xq * tile : (xq + 1) * tile].ravel()
            value_range = (min(vp.min(), vq.min()), max(vp.max(), vq.max()))
            if value_range[0] == value_range[1]:
                # numpy widens a single-value range; both cells then share one bin.
                assert (ca[i] == cb[i]).all() and ca[i].max() == tile * tile
                continue
            assert (ca[i] == np.histogram(vp, 10, range=value_range)[0]).all(), (CHANNEL_NAMES[ch], p, q)
            assert (cb[i] == np.histogram(vq, 10, range=value_range)[0]).all(), (CHANNEL_NAMES[ch], p, q)


def test_values_on_bin_edges_are_counted_like_numpy():
    # Values 0..9 in one cell and 0..99 in the other: every edge of the joint range [0, 99]
    # (9.9, 19.8, ...) and of [0, 90] falls near integers; numpy's "<" / last-bin "<=" rules apply.
    img = np.zeros((10, 20, 3), np.uint8)
    img[:, :10] = (np.arange(100).reshape(10, 10) % 10)[:, :, None]
    img[:, 10:] = np.arange(100).reshape(10, 10)[:, :, None] * 9 // 10  # 0..89
    stats = cell_statistics(img, 10)
    maps = reference_maps(img)
    ca, cb = joint_range_histograms(stats, 0, np.array([0]), np.array([1]))
    va, vb = maps[0, :, :10].ravel(), maps[0, :, 10:].ravel()
    value_range = (0.0, max(va.max(), vb.max()))
    assert (ca[0] == np.histogram(va, 10, range=value_range)[0]).all()
    assert (cb[0] == np.histogram(vb, 10, range=value_range)[0]).all()


def test_js_distance_hand_computed_and_equal_to_scipy():
    # Disjoint: JS divergence ln 2. Half/one: (0.5 ln(4/3) + ln(4/3)) / 2 = 0.75 ln(4/3).
    assert js_distance([1, 0], [0, 1]) == pytest.approx(math.sqrt(math.log(2)), abs=1e-15)
    assert js_distance([0.5, 0.5], [1, 0]) == pytest.approx(math.sqrt(0.75 * math.log(4 / 3)), abs=1e-15)
    assert js_distance([2, 2], [3, 0]) == pytest.approx(math.sqrt(0.75 * math.log(4 / 3)), abs=1e-15)  # normalised
    rng = np.random.default_rng(0)
    p, q = rng.random((50, 10)), rng.random((50, 10))
    p[p < 0.3] = 0  # zeros on one side only
    got = js_distance(p, q)
    assert np.allclose(got, [jensenshannon(x, y) for x, y in zip(p, q)], atol=1e-14, rtol=0)
    assert np.array_equal(got, js_distance(q, p))  # symmetric
    assert np.all(js_distance(p, p) < 1e-7)
    with pytest.raises(ValueError, match="same shape"):
        js_distance([1, 0], [1, 0, 0])


def test_identical_cells_have_similarity_one_and_similarity_is_symmetric():
    rng = np.random.default_rng(1)
    motif = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    img = np.tile(motif, (4, 4, 1))  # periodic: interior cells identical, gradients included
    stats = cell_statistics(img, 16)
    inner = np.array([5, 6, 9, 10])
    a, b = np.repeat(inner, 4), np.tile(inner, 4)
    assert np.allclose(pair_similarity(stats, a, b), 1.0, atol=1e-7)
    rng_cells = rng.integers(0, 16, (2, 40))
    for ch in range(len(CHANNEL_NAMES)):
        s_ab = channel_similarity(stats, ch, rng_cells[0], rng_cells[1])
        s_ba = channel_similarity(stats, ch, rng_cells[1], rng_cells[0])
        assert np.array_equal(s_ab, s_ba)
        assert np.all((s_ab >= 1 - math.sqrt(math.log(2)) - 1e-12) & (s_ab <= 1 + 1e-12))


def test_pair_similarity_equals_the_reference_on_a_real_photo(natural_images):
    img = read_image_rgb(natural_images / "00a2e43047dcd44a.jpg")  # tree and sky: similar and dissimilar pairs
    tile = 40
    stats = cell_statistics(img, tile)
    maps = reference_maps(img)
    rng = np.random.default_rng(5)
    a = rng.integers(0, stats.num_cells, 60)
    b = np.where(rng.random(60) < 0.5, rng.integers(0, stats.num_cells, 60), np.minimum(a + 1, stats.num_cells - 1))
    ours = np.stack([channel_similarity(stats, ch, a, b) for ch in range(len(CHANNEL_NAMES))], axis=1)
    ref = np.array([reference_channel_sims(maps, tile, stats.cols, int(p), int(q)) for p, q in zip(a, b)])
    assert_same_similarity(ours, ref)
    full = pair_similarity(stats, a, b)
    assert_same_similarity(full, ref.min(1))
    # With a threshold, a pair stops at its first failing channel (the reference's early exit):
    # passing pairs keep the exact minimum, failing ones stay below the threshold.
    early = pair_similarity(stats, a, b, sim_thresh=0.5)
    passing = full >= 0.5
    assert 0 < passing.sum() < len(a)
    assert np.array_equal(early[passing], full[passing]) and np.all(early[~passing] < 0.5)


def test_pair_similarity_rejects_bad_indices():
    stats = cell_statistics(np.zeros((20, 20, 3), np.uint8), 10)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        pair_similarity(stats, [0, 4], [1, 2])
    with pytest.raises(ValueError, match="same length"):
        pair_similarity(stats, [0, 1], [1])


def test_cell_statistics_for_some_channels_and_cells(photo_maker):
    img = photo_maker(np.random.default_rng(8), 120, 160)
    full = cell_statistics(img, 20)
    a, b = np.array([0, 1, 7, 12, 20]), np.array([1, 7, 8, 18, 23])
    per_channel = np.stack([channel_similarity(full, ch, a, b) for ch in range(13)])
    colour = cell_statistics(img, 20, channels=4)
    assert len(colour.channels) == 4 and np.array_equal(pair_similarity(colour, a, b), per_channel[:4].min(0))
    mask = np.zeros(full.num_cells, bool)
    mask[[0, 1, 7, 8, 12, 18, 20, 23]] = True
    some = cell_statistics(img, 20, cells=mask.reshape(full.rows, full.cols))
    assert np.array_equal(pair_similarity(some, a, b), pair_similarity(full, a, b))
    assert np.isnan(some.lo[:, 2]).all() and not np.isnan(some.lo[:, 0]).any()
    with pytest.raises(ValueError, match="outside the `cells`"):
        pair_similarity(some, [2], [3])
    found = uniform_squares(some, 0.5)
    assert found.side.reshape(-1)[2] == 0 and found.side.reshape(-1)[0] >= 1
    with pytest.raises(ValueError, match="channels must be in 1..13"):
        cell_statistics(img, 20, channels=0)


def test_cell_statistics_validates_input():
    with pytest.raises(ValueError, match="uint8 RGB"):
        cell_statistics(np.zeros((40, 40), np.uint8), 10)
    with pytest.raises(ValueError, match="float32"):
        cell_statistics(np.zeros((40, 40, 3), np.float32), 10)
    with pytest.raises(ValueError, match="smaller than one 50-px cell"):
        cell_statistics(np.zeros((40, 80, 3), np.uint8), 50)
    stats = cell_statistics(np.zeros((95, 130, 3), np.uint8), 20)
    assert (stats.rows, stats.cols, stats.pixels_per_cell) == (4, 6, 400)  # remainder unused


# ---------------------------------------------------------------------------------------------
# Uniform squares: exact search, reference bugs fixed


def _brute_force_sides(stats: UniformSquares | object, thresh: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Largest all-pairs-similar square per origin by checking every pair (our similarity)."""
    rows, cols = stats.rows, stats.cols
    n = stats.num_cells
    a, b = np.triu_indices(n, 1)
    sim = np.ones((n, n))
    sim[a, b] = sim[b, a] = pair_similarity(stats, a, b)
    side = np.ones((rows, cols), np.int32)
    score = np.ones((rows, cols))
    for r in range(rows):
        for c in range(cols):
            for s in range(2, min(rows - r, cols - c) + 1):
                ids = ((r + np.arange(s))[:, None] * cols + c + np.arange(s)[None, :]).ravel()
                block = sim[np.ix_(ids, ids)]
                if block.min() < thresh:
                    break
                side[r, c], score[r, c] = s, block.min()
    return side, score


def test_uniform_squares_equal_brute_force_search(photo_maker):
    rng = np.random.default_rng(11)
    img = noise_field(rng, 200, 260)
    img[60:140, 100:200] = photo_maker(rng, 80, 100)  # non-uniform block
    img[0:40, 0:60] = noise_field(rng, 40, 60, 100, 120)  # a second, different uniform texture
    stats = cell_statistics(img, 20)
    found = uniform_squares(stats, 0.5)
    side, score = _brute_force_sides(stats)
    assert np.array_equal(found.side, side)
    assert np.allclose(found.score, score, atol=1e-12)
    assert found.side.max() >= 5 and (found.side == 1).any()


def test_planted_foreign_texture_is_never_inside_a_region():
    # Digest §3.2: texture A everywhere, constant 250 in column 0 for rows >= 1, 600x600, tile 40.
    # The reference accepts the square at cell (0, 0) of 14 cells, 6.6 % foreign pixels.
    rng = np.random.default_rng(0)
    img = noise_field(rng, 600, 600, 0, 256)
    img[40:, :40] = 250
    cfg = TextureExtractConfig(tile_size=40, min_cells=7, max_overlap=1.0, smooth_filter=SmoothFilterConfig(enabled=False))
    result = extract_textures(img, cfg)
    assert result.textures, "the pure-A region must still be found"
    for tex in result.textures:
        sq = tex.square
        assert sq.col >= 1, f"region {sq} contains column 0 (foreign cells)"
    biggest = result.textures[0].square
    assert biggest.side == 14 and biggest.col == 1  # the largest pure-A square: columns 1..14
    found = uniform_squares(cell_statistics(img, 40), 0.5)
    assert found.side[0, 0] == 1  # (0,0)-(1,0) is already a foreign pair


@pytest.mark.parametrize("where", ["first_row", "first_column"])
def test_first_row_and_column_of_a_region_are_compared(where):
    # The reference never compares the first row and column of a square: one foreign cell there
    # was accepted. Here it must cut the square at that origin.
    rng = np.random.default_rng(2)
    img = noise_field(rng, 400, 400)
    r, c = (0, 4) if where == "first_row" else (4, 0)
    img[r * 40 : (r + 1) * 40, c * 40 : (c + 1) * 40] = 250
    found = uniform_squares(cell_statistics(img, 40), 0.5)
    assert found.side[0, 0] == 4  # squares up to 4 cells avoid the foreign cell at index 4
    assert found.side[1, 1] == 9  # the foreign cell is outside every square at (1, 1)


def test_saved_square_is_the_verified_square():
    rng = np.random.default_rng(4)
    img = noise_field(rng, 480, 480)
    img[:, 360:] = 30  # columns 9.. smooth: the uniform noise square is exactly 9 x 9 at (0, 0)
    img[360:, :] = 30
    cfg = TextureExtractConfig(tile_size=40, min_cells=6, smooth_filter=SmoothFilterConfig(enabled=False))
    result = extract_textures(img, cfg)
    noise = [t for t in result.textures if t.square.row == 0 and t.square.col == 0]
    assert noise, [t.square for t in result.textures]
    tex = noise[0]
    assert tex.square.side == 9 and tex.box == (0, 0, 360, 360) and tex.box_working == (0, 0, 360, 360)
    stats = cell_statistics(img, 40)
    ids = (np.arange(9)[:, None] * stats.cols + np.arange(9)[None, :]).ravel()
    a, b = np.triu_indices(ids.size, 1)
    sims = pair_similarity(stats, ids[a], ids[b])
    assert sims.min() >= 0.5 and tex.square.score == pytest.approx(sims.min(), abs=1e-12)


def test_uniform_squares_max_side_and_empty_candidates():
    stats = cell_statistics(noise_field(np.random.default_rng(6), 200, 200), 20)
    assert uniform_squares(stats, 0.5, max_side=4).side.max() == 4
    assert uniform_squares(stats, 1.0).side.max() == 1  # nothing is that similar
    assert uniform_squares(stats, 0.5).side[0, 0] == 10


# ---------------------------------------------------------------------------------------------
# Selection, filter, geometry


def _found(sides: dict[tuple[int, int], tuple[int, float]], shape=(20, 20)) -> UniformSquares:
    side = np.ones(shape, np.int32)
    score = np.ones(shape)
    for (r, c), (s, sc) in sides.items():
        side[r, c], score[r, c] = s, sc
    return UniformSquares(side, score, 0)


def test_select_squares_largest_first_and_deduplicated_by_overlap():
    found = _found({
        (0, 0): (10, 0.6),   # taken first (largest)
        (0, 1): (10, 0.7),   # same size, better score: taken first instead
        (10, 10): (8, 0.55),  # disjoint: kept
        (1, 2): (9, 0.9),    # inside (0, 1): dropped
        (5, 9): (6, 0.8),    # overlap with (0,1)-(10,11): rows 5..9 x cols 9..10 = 10/36 = 0.28
        (15, 0): (5, 0.5),   # disjoint
        (12, 3): (3, 0.9),   # below min_cells
    })  # fmt: skip
    chosen = select_squares(found, min_cells=5, max_overlap=0.25, max_regions=101)
    assert [(s.row, s.col, s.side) for s in chosen] == [(0, 1, 10), (10, 10, 8), (15, 0, 5)]
    assert chosen[0].score == 0.7
    # 1.0 = the reference's rule: only fully contained squares are dropped.
    loose = select_squares(found, min_cells=5, max_overlap=1.0, max_regions=101)
    assert [(s.row, s.col) for s in loose] == [(0, 1), (0, 0), (10, 10), (5, 9), (15, 0)]
    assert len(select_squares(found, 5, 1.0, max_regions=2)) == 2


def test_smooth_reason_quadrants():
    cfg = SmoothFilterConfig()
    rng = np.random.default_rng(0)
    textured = rng.integers(0, 256, (100, 100, 3)).astype(np.uint8)
    assert smooth_reason(textured, cfg) == ""
    flat_corner = textured.copy()
    flat_corner[50:, 50:] = 120  # one flat quadrant is enough
    assert smooth_reason(flat_corner, cfg).startswith("too smooth")
    bright = np.clip(250 + rng.normal(0, 4, (100, 100, 3)), 0, 255).astype(np.uint8)
    assert smooth_reason(bright, cfg).startswith("saturated")
    dim = np.clip(150 + rng.normal(0, 4, (100, 100, 3)), 0, 255).astype(np.uint8)
    assert smooth_reason(dim, cfg) == ""  # same std, not bright: kept
    with pytest.raises(ValueError, match="too small"):
        smooth_reason(textured[:1, :1], cfg)


def test_working_image_and_grid_parameters():
    img = np.zeros((3000, 4400, 3), np.uint8)
    work, scale = working_image(img, 2200)
    assert work.shape == (2200, 3227, 3) and scale == pytest.approx(2200 / 3000)
    small = np.zeros((683, 1024, 3), np.uint8)
    assert working_image(small, 2200)[0] is small
    cfg = TextureExtractConfig()
    assert grid_parameters(2200, 3227, cfg) == (75, 7, True)
    assert grid_parameters(683, 1024, cfg) == (40, 6, False)
    assert grid_parameters(1199, 2000, cfg) == (40, 6, False) and grid_parameters(1200, 1600, cfg)[2]
    assert grid_parameters(683, 1024, TextureExtractConfig(tile_size=30, min_cells=9)) == (30, 9, False)


def test_map_box_scales_back_and_stays_square_inside():
    # 4400 x 3000 source, 3227 x 2200 working: 75 px cells are ~102.3 source px.
    box = map_box(Square(row=2, col=3, side=7, score=0.6), 75, (4400, 3000), (3227, 2200))
    x, y, w, h = box
    assert w == h and abs(x - 3 * 75 * 4400 / 3227) <= 1 and abs(y - 2 * 75 * 3000 / 2200) <= 1
    assert abs(w - 7 * 75 * 3000 / 2200) <= 1
    edge = map_box(Square(row=0, col=0, side=29, score=0.6), 75, (3227, 2200), (3227, 2200))
    assert edge == (0, 0, 2175, 2175)


def test_extract_too_small_and_config_validation():
    result = extract_textures(np.zeros((200, 300, 3), np.uint8))
    assert result.textures == [] and "6x6 cells" in result.too_small and "240x240" in result.too_small
    for bad in ({"sim_thresh": 0}, {"min_cells": 1}, {"tile_size": 300}, {"max_overlap": 0}, {"bins": 1}):
        with pytest.raises(ValueError):
            TextureExtractConfig(**bad)
    with pytest.raises(ValueError, match="uint8 RGB"):
        extract_textures(np.zeros((200, 300), np.uint8))


@pytest.mark.parametrize("photo", ["0a64f17d28d83bfe.jpg", "0a2fe8effe4e72e1.jpg"])
def test_colour_prefilter_changes_no_region(natural_images, photo):
    # extract_textures first searches B, G, R, mean only and computes the gradient channels just
    # for cells inside such squares; the regions must equal those of the full 13-channel search.
    img = read_image_rgb(natural_images / photo)
    cfg = TextureExtractConfig()
    result = extract_textures(img, cfg)
    full = uniform_squares(cell_statistics(img, result.tile), cfg.sim_thresh)
    expected = select_squares(full, result.min_cells, cfg.max_overlap, cfg.max_regions)
    assert [t.square for t in result.textures] == expected and expected
    assert result.uniform_origins == int((full.side >= result.min_cells).sum())


def test_extraction_is_deterministic_and_moves_smooth_regions_aside():
    rng = np.random.default_rng(9)
    img = noise_field(rng, 400, 600)
    img[:, 320:] = 200  # a flat part (from a cell border on): uniform too, but textureless
    first = extract_textures(img, TextureExtractConfig(tile_size=40, min_cells=6))
    second = extract_textures(img, TextureExtractConfig(tile_size=40, min_cells=6))
    assert first == second
    kept = [t for t in first.textures if not t.rejected]
    flat = [t for t in first.textures if t.rejected]
    assert kept and flat
    assert all(t.box[0] + t.box[2] <= 320 for t in kept) and all(t.box[0] >= 320 for t in flat)
    assert all(t.rejected.startswith("too smooth") for t in flat)


# ---------------------------------------------------------------------------------------------
# Agreement with the reference's definition on the shared natural images


def _region_pairs(tex, cols: int) -> tuple[np.ndarray, np.ndarray]:
    sq = tex.square
    ids = ((sq.row + np.arange(sq.side))[:, None] * cols + sq.col + np.arange(sq.side)[None, :]).ravel()
    a, b = np.triu_indices(ids.size, 1)
    return ids[a], ids[b]


def test_regions_of_a_real_photo_pass_the_reference_test_for_every_pair(natural_images):
    # Every pair of every extracted region is checked with np.histogram + scipy (all 13 channels).
    img = read_image_rgb(natural_images / "0a3c831ea7781a6d.jpg")
    result = extract_textures(img)
    assert result.textures
    maps = reference_maps(img)
    for tex in result.textures:
        a, b = _region_pairs(tex, result.grid[1])
        ref = [min(reference_channel_sims(maps, result.tile, result.grid[1], int(p), int(q))) for p, q in zip(a, b)]
        assert min(ref) >= 0.5
        assert_same_similarity(tex.square.score, min(ref))


def test_reference_uniform_squares_are_ours_on_a_downscaled_photo(natural_images):
    # The other direction: an exact search with the reference's own similarity (np.histogram +
    # scipy, every pair) finds the same largest square at every origin, with the same score.
    img = read_image_rgb(natural_images / "0a64f17d28d83bfe.jpg")
    img = cv2.resize(img, (320, 212), interpolation=cv2.INTER_AREA)[:200, :300]
    tile = 20
    stats = cell_statistics(img, tile)
    found = uniform_squares(stats, 0.5)
    side, score = reference_max_sides(reference_maps(img), tile, stats.rows, stats.cols)
    assert np.array_equal(found.side, side)
    assert_same_similarity(found.score[side > 1], score[side > 1])
    assert side.max() >= 4  # the check covered real multi-cell squares


@pytest.mark.slow
def test_all_regions_of_all_shared_photos_pass_the_reference_test(natural_images):
    checked = 0
    for path in sorted(natural_images.glob("*.jpg")):
        img = read_image_rgb(path)
        result = extract_textures(img)
        work, _ = working_image(img, 2200)
        maps = reference_maps(work)
        for tex in result.textures:
            a, b = _region_pairs(tex, result.grid[1])
            ref = [min(reference_channel_sims(maps, result.tile, result.grid[1], int(p), int(q), 0.5)) for p, q in zip(a, b)]
            assert min(ref) >= 0.5, (path.name, tex.square)
            checked += len(ref)
    assert checked > 1000
