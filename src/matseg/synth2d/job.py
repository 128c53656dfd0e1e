"""The ``synth2d`` batch job: N scenes written in the MatSeg format, one folder each."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

import matseg
from matseg.config import option, section, to_dict
from matseg.io.dataset import FINISHED_NAME, encode_sample, is_finished
from matseg.io.atomic import write_folder
from matseg.io.shards import SceneShards
from matseg.io.sources import ImageSource, default_photos, default_textures
from matseg.runner import ItemError, WorkItem, derive_seed
from matseg.synth2d.scene import Scene2DConfig, SceneError, generate_scene


@dataclass
class InputsConfig:
    """Where the photos and textures come from."""

    images: str | None = option(None, "natural photos (patterns, shadows, backgrounds): a folder or a text file listing image paths, one a line; null = built-in scikit-image photos", "§1.2")
    textures: str | None = option(None, "uniform textures (e.g. from `matseg textures extract`): a folder or a text file listing image paths; null = built-in texture photos and crops", "§1.2")
    cache_mb: int = option(1024, "decoded-image cache per worker process, MiB", "ours")


@dataclass
class OutputConfig:
    """How samples are written."""

    jpeg_quality: int = option(95, "RGB__RGB.jpg quality (reference: OpenCV default 95)", "§2.1")
    name_digits: int = option(6, "zero-padded digits of the sample folder names", "ours")
    shard_size: int = option(0, "0: one folder per scene; N > 0: tar shards of N scenes each plus index.json "
                             "(docs/formats.md; the scenes are the same bytes as in folders)", "ours")  # fmt: skip

    def __post_init__(self):
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if self.shard_size < 0:
            raise ValueError(f"shard_size must be >= 0, got {self.shard_size}")


@dataclass
class Synth2DConfig(Scene2DConfig):
    """Everything that defines a synth2d dataset (the resolved copy is saved as config.yaml)."""

    num_scenes: int = option(100, "number of scenes", "ours")
    seed: int = option(0, "master seed; scene i uses derive_seed(seed, i)", "ours")
    inputs: InputsConfig = section(InputsConfig, "input collections")
    output: OutputConfig = section(OutputConfig, "output format")

    def __post_init__(self):
        if self.num_scenes < 0:
            raise ValueError(f"num_scenes must be >= 0, got {self.num_scenes}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


# Keys that may change between runs into the same folder without changing any finished scene.
RUN_ONLY_KEYS = ("num_scenes", "inputs.cache_mb", "output.shard_size")


def scene_config_dict(cfg: Synth2DConfig) -> dict:
    """The config as recorded per sample: without the run-only keys, so extending a dataset
    with more scenes leaves the finished samples' bytes valid."""
    data = to_dict(cfg)
    for key in RUN_ONLY_KEYS:
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node[part]
        node.pop(leaf, None)
    return data


def load_sources(cfg: InputsConfig) -> tuple[ImageSource, ImageSource]:
    """Scan the input folders (or take the built-in collections)."""
    cache = cfg.cache_mb << 20
    photos = ImageSource.scan(cfg.images, "natural images", cache) if cfg.images else default_photos()
    textures = ImageSource.scan(cfg.textures, "textures", cache) if cfg.textures else default_textures()
    photos.cache_bytes = textures.cache_bytes = cache
    return photos, textures


class SceneOutput:
    """Output side of a scene generator's runner job (synth2d, synth3d): one work item per scene
    folder, or one per shard with ``output.shard_size``. Needs ``self.cfg`` and ``self.out_dir``."""

    @cached_property
    def shards(self) -> SceneShards | None:
        """The shard layout of ``output.shard_size``; None for folders."""
        out = self.cfg.output
        return SceneShards(self.out_dir, self.cfg.num_scenes, out.shard_size, out.name_digits) if out.shard_size else None

    def items(self) -> list[WorkItem]:
        seed = self.cfg.seed
        if self.shards:
            return [WorkItem(i, name, derive_seed(seed, i)) for i, name in enumerate(self.shards.names())]
        digits = self.cfg.output.name_digits
        return [WorkItem(i, f"{i:0{digits}d}", derive_seed(seed, i)) for i in range(self.cfg.num_scenes)]

    def is_done(self, item: WorkItem) -> bool:
        return self.shards.done(item.name) if self.shards else is_finished(self.out_dir / item.name)

    def finish(self) -> None:
        """After the run: the shard index of everything finished (a no-op for folders)."""
        if self.shards:
            self.shards.finish()


class Synth2DJob(SceneOutput):
    """Runner job: item i -> ``<out>/<i zero-padded>/`` (see :mod:`matseg.runner`)."""

    name = "synth2d"

    def __init__(self, cfg: Synth2DConfig, out_dir: Path, photos: ImageSource, textures: ImageSource):
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.photos = photos
        self.textures = textures

    def setup(self) -> None:
        import cv2

        cv2.setNumThreads(1)  # one scene per core; OpenCV's own threads would oversubscribe

    def run(self, item: WorkItem) -> dict:
        if self.shards:
            return {"warnings": self.shards.write(item.index, self._shard_scene, skip=(ItemError,))}
        files, warnings, generate_s = self._scene(item.index, item.seed)
        write_folder(self.out_dir / item.name, files, FINISHED_NAME)
        return {"warnings": warnings, "generate_s": generate_s}

    def _shard_scene(self, index: int) -> tuple[dict[str, bytes], list[str]]:
        # Scenes in a shard keep their own seeds: the scenes of a folder run.
        files, warnings, _ = self._scene(index, derive_seed(self.cfg.seed, index))
        return files, warnings

    def _scene(self, index: int, seed: int) -> tuple[dict[str, bytes], list[str], float]:
        """Scene ``index`` encoded as sample files; raises ``ItemError`` when it cannot be made."""
        start = time.perf_counter()
        rng = np.random.default_rng(seed)
        try:
            scene = generate_scene(self.photos, self.textures, rng, self.cfg)
        except SceneError as exc:
            raise ItemError(str(exc)) from None
        generate_s = time.perf_counter() - start
        meta = {
            "generator": "matseg synth2d",
            "matseg_version": matseg.__version__,
            "index": index,
            "seed": seed,
            "master_seed": self.cfg.seed,
            "scene": scene.info,
            "config": scene_config_dict(self.cfg),
            "timing": {"generate_s": round(generate_s, 4)},
        }
        files = encode_sample(scene.image, scene.weights, scene.roi, meta, jpeg_quality=self.cfg.output.jpeg_quality)
        return files, scene.info.get("warnings", []), generate_s
