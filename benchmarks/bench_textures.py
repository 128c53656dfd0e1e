"""Speed, memory, texture counts and agreement of texture extraction (docs/benchmarks.md).

    .venv/bin/python benchmarks/bench_textures.py                       # ours, tiles 75 and 40
    .venv/bin/python benchmarks/bench_textures.py --reference           # + the reference re-implemented
    .venv/bin/python benchmarks/bench_textures.py --agreement           # + exact check of every region pair
    .venv/bin/python benchmarks/bench_textures.py --worst-case          # + a photo that is all one texture

Each (photo, tile) runs in a fresh subprocess, so its peak RSS (``ru_maxrss``) is that run's
alone: decode + extraction (cold = first call in the process, warm = median of the next ones).

``--reference`` times a faithful re-implementation of the reference extractor (digest §1.3:
per-pair ``np.histogram`` over the joint range + ``scipy`` ``jensenshannon`` with the early exit,
N x N memo, growth from every origin with its row/column scan, containment de-dup, 101 cap)
on the same working image, in its own subprocess, on this machine. The digest's measured
figures (20 s for a 2250x1500 photo, 50 s for 2667x1500 at tile 75; peak RSS 1.36 GB) are
printed per Mpx for comparison too.

``--agreement`` checks every cell pair of every extracted region (default config) with the
exact slow checker of tests/extract/test_textures.py and reports the agreement rate; it also
locates the reference's published textures (../shared/data/textures) in their source photos
and reports how much of each our extraction covers.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
# Digest §3.1: (label, width, height, seconds, textures) of the reference at tile 75, one core.
REFERENCE_FIGURES = [("sa_10547.jpg", 2250, 1500, 19.97, 13), ("sa_3726.jpg", 2667, 1500, 50.4, 25)]
REFERENCE_PEAK_RSS_MB = 1360


def _checker():
    """The exact reference-semantics checker of the test suite (np.histogram + scipy)."""
    path = ROOT / "tests" / "extract" / "test_textures.py"
    spec = importlib.util.spec_from_file_location("texture_checker", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _config(tile: int):
    from matseg.extract.textures import TextureExtractConfig

    if tile == 0:
        return TextureExtractConfig()
    return TextureExtractConfig(tile_size=tile, min_cells=7 if tile >= 75 else 6)


def child_ours(path: str, tile: int, repeat: int) -> dict:
    from matseg.extract.textures import extract_textures
    from matseg.io.images import read_image_rgb

    start = time.perf_counter()
    rgb = read_image_rgb(path)
    read_s = time.perf_counter() - start
    baseline = _rss_mb()
    cfg = _config(tile)
    times = []
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        result = extract_textures(rgb, cfg)
        times.append(time.perf_counter() - start)
    return {
        "source_size": result.source_size, "working_size": result.working_size, "tile": result.tile,
        "min_cells": result.min_cells, "grid": result.grid, "read_s": read_s, "cold_s": times[0],
        "warm_s": statistics.median(times[1:]) if len(times) > 1 else times[0],
        "kept": sum(not t.rejected for t in result.textures), "rejected": sum(bool(t.rejected) for t in result.textures),
        "pairs": result.pairs_compared, "rss_baseline_mb": baseline, "rss_peak_mb": _rss_mb(),
    }  # fmt: skip


def reference_extract(checker, rgb: np.ndarray, tile: int, min_tiles2map: int, sim_thresh: float = 0.5, max_regions: int = 101):
    """The reference extractor's control flow (digest §1.3), bugs included, on a working image."""
    maps = checker.reference_maps(rgb)
    cols, rows = rgb.shape[1] // tile, rgb.shape[0] // tile
    memo = -np.ones((rows * cols, rows * cols), np.float32)
    counter = {"channel_sims": 0}

    def sim(c1, c2):
        i, j = c1[1] * cols + c1[0], c2[1] * cols + c2[0]
        if memo[i, j] < 0:
            sims = checker.reference_channel_sims(maps, tile, cols, i, j, sim_thresh)
            counter["channel_sims"] += len(sims)
            memo[i, j] = memo[j, i] = min(sims)
        return memo[i, j]

    regions = []
    for x1 in range(0, cols - min_tiles2map + 1):
        for y1 in range(0, rows - min_tiles2map + 1):
            region, rsize, rsize_fin, ok = [(x1, y1)], 0, 0, True
            for rsize in range(1, min(cols - x1, rows - y1)):
                new = [(x1 + i, y1 + rsize) for i in range(1, rsize + 1)] + [(x1 + rsize, y1 + i) for i in range(1, rsize + 1)]
                for cell in new:
                    ok = all(sim(cell, other) >= sim_thresh for other in region)
                    if not ok:
                        break
                    region.append(cell)
                if not ok:
                    break
                rsize_fin = rsize
            if rsize > min_tiles2map:
                x, y, s = x1 * tile, y1 * tile, rsize_fin * tile
                if not any(bx <= x and by <= y and x + s <= bx + bs and y + s <= by + bs for bx, by, bs in regions):
                    regions.append((x, y, s))
                    if len(regions) >= max_regions:
                        return regions, counter["channel_sims"]
    return regions, counter["channel_sims"]


def child_reference(path: str, tile: int) -> dict:
    from matseg.extract.textures import grid_parameters, working_image
    from matseg.io.images import read_image_rgb

    checker = _checker()
    cfg = _config(tile)
    work, _ = working_image(read_image_rgb(path), cfg.max_image_size)
    tile, min_cells, _ = grid_parameters(work.shape[0], work.shape[1], cfg)
    start = time.perf_counter()
    # The reference accepted a square with min_tiles2map + 1 verified steps and saved min_tiles2map cells.
    regions, channel_sims = reference_extract(checker, work, tile, min_cells)
    return {"seconds": time.perf_counter() - start, "regions": len(regions), "channel_sims": channel_sims, "rss_peak_mb": _rss_mb()}


def _spawn(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_speed(images: list[Path], tiles: list[int], repeat: int, with_reference: bool) -> None:
    print(f"\n## speed and memory (one process per photo and tile; warm = median of {repeat - 1} runs after the first)\n")
    header = "| photo | source px | Mpx | tile | grid | kept | rejected | pairs compared | cold s | warm s | warm s/Mpx | peak RSS MB (after decode) |"
    if with_reference:
        header += " reference s | reference / warm |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    totals: dict[int, list] = {t: [] for t in tiles}
    for tile in tiles:
        for path in images:
            r = _spawn("--child-ours", str(path), str(tile), str(repeat))
            w, h = r["source_size"]
            mpx = w * h / 1e6
            row = (f"| {path.name} | {w}x{h} | {mpx:.2f} | {r['tile']} | {r['grid'][1]}x{r['grid'][0]} | {r['kept']} | "
                   f"{r['rejected']} | {r['pairs']} | {r['cold_s']:.3f} | {r['warm_s']:.3f} | {r['warm_s'] / mpx:.3f} | "
                   f"{r['rss_peak_mb']:.0f} ({r['rss_baseline_mb']:.0f}) |")  # fmt: skip
            entry = {"mpx": mpx, **r}
            if with_reference:
                ref = _spawn("--child-reference", str(path), str(tile))
                row += f" {ref['seconds']:.1f} | {ref['seconds'] / r['warm_s']:.0f}x |"
                entry["reference"] = ref
            print(row, flush=True)
            totals[tile].append(entry)
    print()
    for tile, rows in totals.items():
        mpx = sum(r["mpx"] for r in rows)
        warm = sum(r["warm_s"] for r in rows)
        line = (f"tile {tile or 'auto'}: {len(rows)} photos, {mpx:.1f} Mpx, warm {warm:.2f} s ({warm / mpx:.3f} s/Mpx), "
                f"cold {sum(r['cold_s'] for r in rows):.2f} s, textures kept {sum(r['kept'] for r in rows)}, "
                f"rejected {sum(r['rejected'] for r in rows)}, max peak RSS {max(r['rss_peak_mb'] for r in rows):.0f} MB")  # fmt: skip
        if with_reference:
            ref = sum(r["reference"]["seconds"] for r in rows)
            line += (f"; reference re-implementation {ref:.1f} s ({ref / mpx:.2f} s/Mpx) = {ref / warm:.0f}x ours, "
                     f"its peak RSS up to {max(r['reference']['rss_peak_mb'] for r in rows):.0f} MB")  # fmt: skip
        print(line)
    for label, w, h, seconds, count in REFERENCE_FIGURES:
        mpx = w * h / 1e6
        print(f"digest §3.1 reference: {label} {w}x{h} tile 75: {seconds} s = {seconds / mpx:.2f} s/Mpx, {count} textures")
    print(f"digest §3.1 reference peak RSS: {REFERENCE_PEAK_RSS_MB} MB")


def _worst_case_photo() -> np.ndarray:
    return np.random.default_rng(0).integers(40, 200, size=(1500, 2250, 3)).astype(np.uint8)


def child_worst_case(tile: int, reference: bool) -> dict:
    """A photo that is one uniform texture (i.i.d. noise): every pair of cells is compared."""
    from matseg.extract.textures import extract_textures

    rgb = _worst_case_photo()
    start = time.perf_counter()
    if reference:
        regions, channel_sims = reference_extract(_checker(), rgb, tile, 7 if tile >= 75 else 6)
        return {"seconds": time.perf_counter() - start, "regions": len(regions), "rss_peak_mb": _rss_mb()}
    result = extract_textures(rgb, _config(tile))
    return {"seconds": time.perf_counter() - start, "pairs": result.pairs_compared, "kept": len(result.textures),
            "grid": result.grid, "rss_peak_mb": _rss_mb()}  # fmt: skip


def run_worst_case(tiles: list[int], with_reference: bool) -> None:
    print("\n## worst case: a 2250x1500 photo that is one uniform texture (i.i.d. noise)\n")
    for tile in tiles:
        r = _spawn("--child-worst", str(tile), "ours")
        line = (f"tile {tile}: grid {r['grid'][1]}x{r['grid'][0]}, {r['pairs']} pairs compared, {r['seconds']:.2f} s, "
                f"{r['kept']} regions, peak RSS {r['rss_peak_mb']:.0f} MB")  # fmt: skip
        if with_reference and tile >= 75:  # at tile 40 the reference needs ~2 M pair comparisons (~1 h)
            ref = _spawn("--child-worst", str(tile), "reference")
            line += f"; reference re-implementation {ref['seconds']:.1f} s ({ref['seconds'] / r['seconds']:.0f}x), peak RSS {ref['rss_peak_mb']:.0f} MB"
        print(line, flush=True)


def run_agreement(images: list[Path]) -> None:
    import cv2

    from matseg.extract.textures import cell_statistics, extract_textures, pair_similarity, working_image
    from matseg.io.images import read_image_rgb

    checker = _checker()
    print("\n## agreement with the reference's definition (every pair of every region, default config)\n")
    total_pairs = passing = regions = 0
    worst = 0.0
    for path in images:
        rgb = read_image_rgb(path)
        result = extract_textures(rgb)
        work, _ = working_image(rgb, 2200)
        maps = checker.reference_maps(work)
        cols = result.grid[1]
        for tex in result.textures:
            sq = tex.square
            ids = ((sq.row + np.arange(sq.side))[:, None] * cols + sq.col + np.arange(sq.side)[None, :]).ravel()
            a, b = np.triu_indices(ids.size, 1)
            ref = np.array([min(checker.reference_channel_sims(maps, result.tile, cols, int(p), int(q))) for p, q in zip(ids[a], ids[b])])
            ours = pair_similarity(cell_statistics(work, result.tile), ids[a], ids[b])
            worst = max(worst, float(np.abs((1 - ours) ** 2 - (1 - ref) ** 2).max()))
            total_pairs += ref.size
            passing += int((ref >= 0.5).sum())
            regions += 1
        print(f"{path.name}: {len(result.textures)} regions checked", flush=True)
    print(f"\nregions {regions}, cell pairs {total_pairs}, passing the reference test {passing} "
          f"({100 * passing / max(1, total_pairs):.2f} %), max |JS divergence ours - reference| {worst:.1e}")  # fmt: skip

    run_global_bins(checker, images)

    print("\n## the reference's published textures (../shared/data/textures) from these photos\n")
    print("| texture | reference square (cells) | its failing pairs: saved square / verified extent | covered by our regions |")
    print("|---|---|---|---|")
    for tex_path in sorted((DATA / "textures").glob("*_Texture.jpg")):
        m = re.match(r"(.+?)_(\d+)_Score_\d+_TileSize(\d+)_Texture", tex_path.stem)
        source = images[0].parent / f"{m.group(1)}.jpg" if m else None
        if source is None or not source.exists():
            continue
        rgb, tex = read_image_rgb(source), read_image_rgb(tex_path)
        tile = int(m.group(3))
        _, _, (x, y), _ = cv2.minMaxLoc(cv2.matchTemplate(rgb, tex, cv2.TM_SQDIFF))
        k = tex.shape[0] // tile
        stats = cell_statistics(rgb, tile)

        def failing(side: int) -> float:
            r = np.arange(y // tile, min(y // tile + side, stats.rows))
            c = np.arange(x // tile, min(x // tile + side, stats.cols))
            ids = (r[:, None] * stats.cols + c[None, :]).ravel()
            a, b = np.triu_indices(ids.size, 1)
            return float((pair_similarity(stats, ids[a], ids[b]) < 0.5).mean())

        covered = 0.0
        for ours in extract_textures(rgb).textures:
            bx, by, bw, bh = ours.box
            ix = max(0, min(bx + bw, x + tex.shape[1]) - max(bx, x))
            iy = max(0, min(by + bh, y + tex.shape[0]) - max(by, y))
            covered = max(covered, ix * iy / (tex.shape[0] * tex.shape[1]))
        print(f"| {tex_path.name} | {k}x{k} at cell ({y // tile}, {x // tile}) | "
              f"{100 * failing(k):.1f} % / {100 * failing(k + 1):.1f} % | {100 * covered:.0f} % |")  # fmt: skip


def run_global_bins(checker, images: list[Path], reach: int = 3) -> None:
    """How the digest's faster alternative (fixed per-channel bins over the photo's range) would decide."""
    from matseg.extract.textures import cell_statistics, grid_parameters, js_distance, pair_similarity, working_image
    from matseg.io.images import read_image_rgb

    print(f"\n## alternative: 10 fixed bins per channel over the photo's min..max (pairs up to {reach} cells apart)\n")
    both = only_joint = only_global = total = 0
    for path in images:
        work, _ = working_image(read_image_rgb(path), 2200)
        tile, _, _ = grid_parameters(work.shape[0], work.shape[1], _config(0))
        stats = cell_statistics(work, tile)
        rows, cols = stats.rows, stats.cols
        maps = checker.reference_maps(work)[:, : rows * tile, : cols * tile]
        hists = []
        for m in maps:
            edges = np.linspace(m.min(), m.max(), 11)
            idx = np.clip(np.searchsorted(edges, m, side="right") - 1, 0, 9)
            cell = idx.reshape(rows, tile, cols, tile).transpose(0, 2, 1, 3).reshape(rows * cols, -1)
            hists.append(np.stack([np.bincount(c, minlength=10) for c in cell]))
        a, b = [], []
        for dy in range(0, reach + 1):
            for dx in range(-reach, reach + 1):
                if dy == 0 and dx <= 0:
                    continue
                yy, xx = np.mgrid[max(0, -dy) : rows - max(0, dy), max(0, -dx) : cols - max(0, dx)]
                a.append((yy * cols + xx).ravel())
                b.append(((yy + dy) * cols + xx + dx).ravel())
        a, b = np.concatenate(a), np.concatenate(b)
        joint = pair_similarity(stats, a, b) >= 0.5
        fixed = np.min([1 - js_distance(h[a], h[b]) for h in hists], axis=0) >= 0.5
        both += int((joint & fixed).sum())
        only_joint += int((joint & ~fixed).sum())
        only_global += int((~joint & fixed).sum())
        total += a.size
    print(f"cell pairs {total}: similar by both {both}, only by the reference's joint-range bins {only_joint}, "
          f"only by fixed bins {only_global}; the decisions differ for {100 * (only_joint + only_global) / total:.1f} % "
          f"of the pairs ({100 * only_global / max(1, both + only_global):.0f} % of the fixed-bin 'similar' pairs "
          f"fail the reference's test)")  # fmt: skip


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-ours":
        print(json.dumps(child_ours(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--child-reference":
        print(json.dumps(child_reference(sys.argv[2], int(sys.argv[3]))))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--child-worst":
        print(json.dumps(child_worst_case(int(sys.argv[2]), sys.argv[3] == "reference")))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=DATA / "natural_images")
    parser.add_argument("--tiles", type=int, nargs="+", default=[75, 40], help="tile sizes (0 = automatic by size)")
    parser.add_argument("--repeat", type=int, default=4, help="extractions per photo (first = cold)")
    parser.add_argument("--reference", action="store_true", help="also time the reference re-implementation (slow)")
    parser.add_argument("--agreement", action="store_true", help="also check every region pair exactly (slow)")
    parser.add_argument("--worst-case", action="store_true", help="also time a photo that is one uniform texture")
    parser.add_argument("--only", nargs="*", help="photo file names to use (default: all)")
    args = parser.parse_args()
    from matseg.io.images import list_images

    images = [p for p in list_images(args.images, recursive=False) if not args.only or p.name in args.only]
    import cv2

    print(f"# bench_textures: {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"NumPy {np.__version__}, OpenCV {cv2.__version__}, {len(images)} photos from {args.images}")  # fmt: skip
    if images:
        run_speed(images, args.tiles, args.repeat, args.reference)
    if args.worst_case:
        run_worst_case([t for t in args.tiles if t] or [75, 40], args.reference)
    if args.agreement:
        run_agreement(images)


if __name__ == "__main__":
    main()
