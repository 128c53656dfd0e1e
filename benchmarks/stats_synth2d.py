"""Distribution statistics of generated 2D scenes for a configuration (no files written).

Used to document what a parameter does to the data, e.g. the reference's dead "transition band"
rule (docs/deviations.md):

    python benchmarks/stats_synth2d.py -n 100
    python benchmarks/stats_synth2d.py -n 100 --set maps.max_band_to_lower_ratio=0.33
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from matseg.config import load_config
from matseg.io.sources import ImageSource
from matseg.synth2d.scene import Scene2DConfig, generate_scene

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images", type=Path, default=SHARED / "natural_images")
    ap.add_argument("--textures", type=Path, default=SHARED / "textures")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    cfg = load_config(Scene2DConfig, None, args.overrides)
    photos = ImageSource.scan(args.images, "natural images")
    textures = ImageSource.scan(args.textures, "textures")
    rows = []
    for i in range(args.n):
        s = generate_scene(photos, textures, np.random.default_rng([args.seed, i]), cfg)
        w = s.weights
        soft = ((w > 1 / 255) & (w < 254 / 255)).any(0)
        rows.append((s.roi.mean(), soft.mean(), s.info["visible_materials"], len(w), s.info["hard"]))
    a = np.array(rows, dtype=float)
    print(f"{args.n} scenes, overrides: {args.overrides or 'none'}")
    print(f"  annotated (ROI) fraction of the image: mean {a[:, 0].mean():.3f}, median {np.median(a[:, 0]):.3f}")
    print(f"  pixels with a soft weight (1..254 of 255): mean {a[:, 1].mean():.3f}; in soft scenes {a[a[:, 4] == 0, 1].mean():.3f}")
    print(f"  materials per scene: mean {a[:, 3].mean():.2f}, visible {a[:, 2].mean():.2f}; hard scenes {a[:, 4].mean():.2f}")


if __name__ == "__main__":
    main()
