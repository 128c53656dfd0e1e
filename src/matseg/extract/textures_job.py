"""The ``textures extract`` batch job: one item per input photo, one output folder per photo.

Layout (``OUT`` can be given to ``matseg synth2d --textures OUT`` as it is)::

    OUT/config.yaml, OUT/summary.json
    OUT/<name>/                                  one folder per photo (<name> = its path below the
                                                 input folder, without extension)
      <stem>_<k>_Score_<dddd>_TileSize<T>_Texture.jpg    crop at source resolution (JPEG q95)
      <stem>_<k>_Score_<dddd>_TileSize<T>_Texture.json   its record: source, box, cells, score, ...
      .rejected/<same names>                     crops the smooth/saturated filter set aside,
                                                 JSON with the reason (hidden: not scanned as textures)
      meta.json                                  the photo: sizes, grid, counts, config, timing
      Finished.txt                               written last; a rerun skips finished photos

``<k>`` is the region's rank (largest, then best score first), ``<dddd>`` the first four
decimals of the score (minimum pair similarity), ``<T>`` the cell size: the published naming
(digest §2.4) with a JSON per texture instead of the reference's separate folders.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import matseg
from matseg.config import option, section, to_dict
from matseg.extract.textures import Extraction, TextureExtractConfig, extract_textures
from matseg.io.atomic import json_bytes, write_folder
from matseg.io.dataset import FINISHED_NAME, is_finished
from matseg.io.images import ImageReadError, encode_image, read_image_rgb
from matseg.io.inputs import InputImage
from matseg.runner import ItemError, WorkItem

REJECTED_DIR = ".rejected"
META_NAME = "meta.json"


@dataclass
class TextureOutputConfig:
    """How textures are written."""

    jpeg_quality: int = option(95, "quality of the texture JPEGs (reference: OpenCV default 95)", "§2.4")

    def __post_init__(self):
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")


@dataclass
class TextureJobConfig(TextureExtractConfig):
    """Everything that defines a texture extraction run (the resolved copy is saved as config.yaml)."""

    output: TextureOutputConfig = section(TextureOutputConfig, "output format")


def score_digits(score: float) -> str:
    """First four decimals of a score in [0, 1] (``0.5110306 -> "5110"``; 1.0 -> ``"9999"``)."""
    return f"{min(9999, math.floor(score * 10000 + 1e-9)):04d}"


def texture_name(stem: str, index: int, score: float, tile: int) -> str:
    """``<stem>_<index>_Score_<dddd>_TileSize<tile>_Texture`` (published pattern, digest §2.4), no extension."""
    return f"{stem}_{index}_Score_{score_digits(score)}_TileSize{tile}_Texture"


def _box(x: int, y: int, w: int, h: int) -> dict:
    return {"x": x, "y": y, "w": w, "h": h}


def write_extraction(folder: Path, source: Path, rgb, extraction: Extraction, cfg: TextureJobConfig, timing: dict) -> dict:
    """Write one photo's textures, records and ``meta.json`` atomically (``Finished.txt`` last).

    Args:
        folder: final output folder of the photo (an unfinished one is moved aside).
        source: the photo's path (recorded).
        rgb: ``(H, W, 3)`` uint8, the decoded photo the boxes refer to.
        extraction: from :func:`~matseg.extract.textures.extract_textures` on ``rgb``.

    Returns:
        The ``meta.json`` content.
    """
    source = Path(source).resolve()
    params = to_dict(cfg)
    common = {
        "source": str(source),
        "source_size": list(extraction.source_size),
        "working_size": list(extraction.working_size),
        "working_scale": extraction.scale,
        "tile_size": extraction.tile,
        "min_cells": extraction.min_cells,
        "size_class": "large" if extraction.large else "small",
    }
    files: dict[str, bytes] = {}
    kept, rejected = [], []
    for index, tex in enumerate(extraction.textures):
        name = texture_name(source.stem, index, tex.square.score, extraction.tile)
        prefix = f"{REJECTED_DIR}/" if tex.rejected else ""
        x, y, w, h = tex.box
        record = {
            "texture": f"{name}.jpg",
            "index": index,
            **common,
            "box": _box(*tex.box),
            "box_working": _box(*tex.box_working),
            "cells": {"row": tex.square.row, "col": tex.square.col, "side": tex.square.side},
            "score": tex.square.score,
            "rejected": tex.rejected,
            "deterministic": True,
            "matseg_version": matseg.__version__,
            "config": params,
        }
        files[f"{prefix}{name}.jpg"] = encode_image(rgb[y : y + h, x : x + w], ".jpg", jpeg_quality=cfg.output.jpeg_quality)
        files[f"{prefix}{name}.json"] = json_bytes(record)
        (rejected if tex.rejected else kept).append(f"{prefix}{name}.jpg")
    meta = {
        "generator": "matseg textures extract",
        "matseg_version": matseg.__version__,
        **common,
        "grid": {"rows": extraction.grid[0], "cols": extraction.grid[1]},
        "too_small": extraction.too_small,
        "uniform_origins": extraction.uniform_origins,
        "pairs_compared": extraction.pairs_compared,
        "textures": kept,
        "rejected": rejected,
        "config": params,
        "timing": timing,
    }
    files[META_NAME] = json_bytes(meta)
    write_folder(folder, files, FINISHED_NAME)
    return meta


def read_meta(folder: Path) -> dict | None:
    """A finished photo folder's ``meta.json`` (None if missing or unreadable)."""
    try:
        return json.loads((Path(folder) / META_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class TextureJob:
    """Runner job: photo ``i`` -> ``<out>/<name>/`` (see :mod:`matseg.runner`). Deterministic: no seeds."""

    name = "textures"

    def __init__(self, cfg: TextureJobConfig, out_dir: Path, inputs: list[InputImage]):
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.inputs = list(inputs)

    def items(self) -> list[WorkItem]:
        # Nothing is random; the seed field is unused (0).
        return [WorkItem(i, inp.name, 0) for i, inp in enumerate(self.inputs)]

    def is_done(self, item: WorkItem) -> bool:
        return is_finished(self.out_dir / item.name)

    def setup(self) -> None:
        import cv2

        cv2.setNumThreads(1)  # one photo per core

    def run(self, item: WorkItem) -> dict:
        source = self.inputs[item.index].path
        start = time.perf_counter()
        try:
            rgb = read_image_rgb(source)
        except ImageReadError as exc:
            raise ItemError(str(exc)) from None
        read_s = time.perf_counter() - start
        extraction = extract_textures(rgb, self.cfg)
        extract_s = time.perf_counter() - start - read_s
        timing = {"read_s": round(read_s, 4), "extract_s": round(extract_s, 4)}
        meta = write_extraction(self.out_dir / item.name, source, rgb, extraction, self.cfg, timing)
        warnings = []
        if extraction.too_small:
            warnings.append("photo too small for a texture of min_cells x min_cells cells (see its meta.json)")
        return {"warnings": warnings, "textures": len(meta["textures"]), "rejected": len(meta["rejected"])}
