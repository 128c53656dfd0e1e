"""Batch jobs of ``matseg pbr make`` and ``matseg pbr mix`` (see :mod:`matseg.runner`).

Every material is one item written to ``<out>/<name>/`` in the layout of
:mod:`matseg.materials.pbr`. ``make`` names a material after its texture and seeds it from
that name (``derive_seed(seed, key(name))``), so adding textures to the input folder leaves the
other materials' bytes unchanged; ``mix`` item ``i`` is ``<out>/<i:06d>/`` seeded with
``derive_seed(seed, i)``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import matseg
from matseg.config import option, section, to_dict
from matseg.io.images import ImageReadError
from matseg.io.sources import ImageSource
from matseg.materials.make import MakeConfig, make_pbr, textureless_pbr
from matseg.materials.mix import MixConfig, choose_sources, mix_materials
from matseg.materials.pbr import PBRReadError, is_pbr_finished, read_pbr, write_pbr
from matseg.runner import ItemError, WorkItem, derive_seed


@dataclass
class PBROutputConfig:
    """How materials are written."""

    jpeg_quality: int = option(95, "OriginColor.jpg quality", "§2.5")

    def __post_init__(self):
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")


@dataclass
class PBRMakeConfig(MakeConfig):
    """Everything that defines a ``matseg pbr make`` run (saved as config.yaml)."""

    seed: int = option(0, "master seed; the material of texture NAME uses derive_seed(seed, key(NAME))", "ours")
    textures: str | None = option(None, "folder of texture images (searched recursively)", "§1.5")
    output: PBROutputConfig = section(PBROutputConfig, "output format")

    def __post_init__(self):
        super().__post_init__()
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


@dataclass
class PBRMixConfig(MixConfig):
    """Everything that defines a ``matseg pbr mix`` run (saved as config.yaml)."""

    num_mixes: int = option(100, "number of mixed materials (-n)", "§1.6 (reference: 8)")
    seed: int = option(0, "master seed; mix i uses derive_seed(seed, i)", "ours")
    pbrs: str | None = option(None, "folder of PBR material folders (any naming convention, searched recursively)", "§1.6")
    output: PBROutputConfig = section(PBROutputConfig, "output format")

    def __post_init__(self):
        super().__post_init__()
        if self.num_mixes < 0 or self.seed < 0:
            raise ValueError(f"num_mixes and seed must be >= 0, got {self.num_mixes}, {self.seed}")


# Keys that may change between runs into one folder without changing any finished material.
MAKE_RUN_ONLY_KEYS = ("textureless.count",)
MIX_RUN_ONLY_KEYS = ("num_mixes",)


def recorded_config(cfg, run_only: tuple[str, ...]) -> dict:
    """The config as recorded in each material's meta.json: without the run-only keys."""
    data = to_dict(cfg)
    for key in run_only:
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node[part]
        del node[leaf]
    return data


def name_key(name: str) -> int:
    """A stable non-negative integer for a material name (seed derivation)."""
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=7).digest(), "big")


def material_names(labels: list[str]) -> list[str]:
    """Output folder names for texture files: the relative path without extension, ``/`` -> ``__``;
    textures that would share a name (``a.jpg``, ``a.png``) keep their extension (``a_png``)."""
    stems = [label.rsplit(".", 1)[0].replace("/", "__") for label in labels]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    return [s if counts[s] == 1 else label.replace("/", "__").replace(".", "_") for s, label in zip(stems, labels)]


def _meta(generator: str, item: WorkItem, master_seed: int, config: dict, **fields) -> dict:
    return {"generator": generator, "matseg_version": matseg.__version__, "name": item.name,
            "seed": item.seed, "master_seed": master_seed, **fields, "config": config}  # fmt: skip


class MakeJob:
    """Texture i -> ``<out>/<texture name>/``; then ``textureless.count`` uniform materials."""

    name = "pbr make"

    def __init__(self, cfg: PBRMakeConfig, out_dir: Path, textures: ImageSource | None):
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.textures = textures
        labels = [e.label or e.path.name for e in textures.entries] if textures is not None else []
        names = material_names(labels)
        self._sources: list[int | None] = list(range(len(names))) + [None] * cfg.textureless.count
        self._names = names + [f"textureless_{i:06d}" for i in range(cfg.textureless.count)]
        self._config = recorded_config(cfg, MAKE_RUN_ONLY_KEYS)

    def items(self) -> list[WorkItem]:
        return [WorkItem(i, n, derive_seed(self.cfg.seed, name_key(n))) for i, n in enumerate(self._names)]

    def is_done(self, item: WorkItem) -> bool:
        return is_pbr_finished(self.out_dir / item.name)

    def setup(self) -> None:
        import cv2

        cv2.setNumThreads(1)  # one material per core

    def run(self, item: WorkItem) -> dict:
        start = time.perf_counter()
        rng = np.random.default_rng(item.seed)
        source = self._sources[item.index]
        if source is None:
            maps, draws = textureless_pbr(rng, self.cfg.textureless)
            origin: dict = {"texture": None}
        else:
            entry = self.textures.entries[source]
            try:
                maps, draws = make_pbr(np.asarray(self.textures.get(source)), rng, self.cfg)
            except (ImageReadError, ValueError) as exc:
                raise ItemError(f"{entry.path}: {str(exc).removeprefix(str(entry.path) + ': ')}") from None
            origin = {"texture": entry.id, "texture_size": [entry.width, entry.height]}
        compute_s = time.perf_counter() - start
        meta = _meta("matseg pbr make", item, self.cfg.seed, self._config, source=origin, draws=draws,
                     timing={"compute_s": round(compute_s, 4)})  # fmt: skip
        write_pbr(self.out_dir / item.name, maps, meta, jpeg_quality=self.cfg.output.jpeg_quality)
        return {"compute_s": compute_s}


class MixJob:
    """Mix i -> ``<out>/<i:06d>/`` from distinct random materials of ``materials``."""

    name = "pbr mix"

    def __init__(self, cfg: PBRMixConfig, out_dir: Path, root: Path, materials: list[Path]):
        if len(materials) < 2:
            raise ValueError(f"mixing needs at least 2 materials, found {len(materials)} under {root}")
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.root = Path(root)
        self.materials = list(materials)
        self._config = recorded_config(cfg, MIX_RUN_ONLY_KEYS)

    def items(self) -> list[WorkItem]:
        return [WorkItem(i, f"{i:06d}", derive_seed(self.cfg.seed, i)) for i in range(self.cfg.num_mixes)]

    def is_done(self, item: WorkItem) -> bool:
        return is_pbr_finished(self.out_dir / item.name)

    def setup(self) -> None:
        import cv2

        cv2.setNumThreads(1)

    def run(self, item: WorkItem) -> dict:
        start = time.perf_counter()
        rng = np.random.default_rng(item.seed)
        chosen = [self.materials[i] for i in choose_sources(len(self.materials), rng, self.cfg)]
        sources, warnings, records = [], [], []
        for folder in chosen:
            try:
                material = read_pbr(folder)
            except PBRReadError as exc:
                raise ItemError(str(exc)) from None
            sources.append(material)
            rel = folder.relative_to(self.root).as_posix() if folder != self.root else "."
            warnings += [f"{folder / f}: unreadable map skipped ({why})" for f, why in material.report.unreadable.items()]
            records.append({"path": rel, **material.report.to_dict()})
        maps, info = mix_materials(sources, rng, self.cfg)
        compute_s = time.perf_counter() - start
        meta = _meta("matseg pbr mix", item, self.cfg.seed, self._config, sources=records, mix=info,
                     timing={"read_and_mix_s": round(compute_s, 4)})  # fmt: skip
        write_pbr(self.out_dir / item.name, maps, meta, jpeg_quality=self.cfg.output.jpeg_quality)
        return {"warnings": warnings, "compute_s": compute_s}
