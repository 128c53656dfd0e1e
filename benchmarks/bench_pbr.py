"""Speed of texture -> PBR (`matseg pbr make`), PBR mixing (`matseg pbr mix`) and the preview sphere.

Reference (digest §3.1, same 2-core machine class, one core):
- Turn_Texture_To_PBR.py on the 14 sample textures (240-320 px): compute 0.012 s/texture,
  0.020 s including reading the texture and writing 5 JPEGs; on 38 extracted textures of
  525-675 px: 0.046 s compute, 0.055 s with I/O;
- Mix_PBRS.py on the 9 sample PBRs (512^2): 0.065 s per mix (read, mix, write).

Usage:  python benchmarks/bench_pbr.py [--repeats 3]
Prints, on one core (this process, OpenCV single-threaded): make compute and compute + I/O per
texture on ../shared/data/textures and on 600 px crops of ../shared/data/natural_images (the
size of extracted textures); mix time per mix (read + mix + write) on ../shared/data/pbr; the
128 px preview sphere per material.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, like the reference figures

import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from matseg.io.images import list_images, read_image_rgb  # noqa: E402
from matseg.io.sources import ImageSource  # noqa: E402
from matseg.materials.jobs import MakeJob, MixJob, PBRMakeConfig, PBRMixConfig  # noqa: E402
from matseg.materials.make import make_pbr  # noqa: E402
from matseg.materials.pbr import find_materials, read_pbr  # noqa: E402
from matseg.materials.preview import render_sphere  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _stats(name: str, times: list[float], reference: float | None = None) -> None:
    med, mean = statistics.median(times), statistics.mean(times)
    ref = f"   reference {reference:.3f} s -> {reference / mean:.1f}x" if reference else ""
    print(f"  {name:<34} median {med:.4f} s  mean {mean:.4f} s  (n={len(times)}){ref}")


def bench_make(folder: Path, repeats: int, ref_compute: float, ref_io: float, label: str) -> None:
    textures = ImageSource.scan(folder, "textures")
    sizes = sorted({max(e.width, e.height) for e in textures.entries})
    print(f"make: {len(textures)} textures ({label}, {sizes[0]}-{sizes[-1]} px), {repeats} seeds each")
    cfg = PBRMakeConfig(textures=str(folder))
    compute, total = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(repeats):
            cfg.seed = rep
            job = MakeJob(cfg, Path(tmp) / f"run{rep}", textures)
            for item in job.items():
                textures._cache.clear()  # read from disk every time, as the reference does
                t0 = time.perf_counter()
                info = job.run(item)
                total.append(time.perf_counter() - t0)
                compute.append(info["compute_s"])
    # The job's compute_s includes decoding the texture; time make_pbr alone too.
    pure = []
    for rep in range(repeats):
        for i in range(len(textures)):
            rgb = textures.get(i)
            t0 = time.perf_counter()
            make_pbr(np.asarray(rgb), np.random.default_rng(rep * 1000 + i), cfg)
            pure.append(time.perf_counter() - t0)
    _stats("compute (make_pbr)", pure, ref_compute)
    _stats("read + compute + write folder", total, ref_io)


def crops_of_photos(src: Path, dst: Path, side: int = 600) -> Path:
    """Centre crops of the natural photos: stand-ins for extracted textures (525-675 px)."""
    dst.mkdir(parents=True, exist_ok=True)
    for p in list_images(src):
        img = read_image_rgb(p)
        h, w = img.shape[:2]
        s = min(side, h, w)
        crop = img[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        cv2.imwrite(str(dst / f"{p.stem}.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return dst


def bench_mix(folder: Path, repeats: int) -> None:
    materials, _ = find_materials(folder)
    n = 8
    print(f"mix: {len(materials)} materials ({folder}), {repeats} runs of {n} mixes")
    times, sources = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(repeats):
            cfg = PBRMixConfig(num_mixes=n, seed=rep, pbrs=str(folder))
            job = MixJob(cfg, Path(tmp) / f"run{rep}", folder, materials)
            for item in job.items():
                t0 = time.perf_counter()
                job.run(item)
                times.append(time.perf_counter() - t0)
                sources.append(len(read_pbr(Path(tmp) / f"run{rep}" / item.name).meta["sources"]))
    _stats("read + mix + write", times, 0.065)
    print(f"  sources per mix: mean {statistics.mean(sources):.2f}")


def bench_preview(folder: Path) -> None:
    materials = [read_pbr(m, max_side=256) for m in find_materials(folder)[0]]
    times = []
    for _ in range(5):
        for m in materials:
            t0 = time.perf_counter()
            render_sphere(m.maps, 128)
            times.append(time.perf_counter() - t0)
    print("preview:")
    _stats("128 px sphere", times)
    reads = []
    for m in find_materials(folder)[0]:
        t0 = time.perf_counter()
        read_pbr(m, max_side=256)
        reads.append(time.perf_counter() - t0)
    _stats("read_pbr(max_side=256)", reads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="seeds / runs per measurement")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}, numpy {np.__version__}, opencv {cv2.__version__}; one core")  # fmt: skip
    bench_make(SHARED / "textures", args.repeats, 0.012, 0.020, "sample textures")
    with tempfile.TemporaryDirectory() as tmp:
        crops = crops_of_photos(SHARED / "natural_images", Path(tmp) / "crops")
        bench_make(crops, args.repeats, 0.046, 0.055, "600 px crops of natural_images")
    bench_mix(SHARED / "pbr", args.repeats)
    bench_preview(SHARED / "pbr")


if __name__ == "__main__":
    main()
