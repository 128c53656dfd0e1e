"""The ``synth3d`` batch job: N rendered scenes in the MatSeg format, one folder each.

Importable without Blender; ``bpy`` is imported by the worker's :meth:`Synth3DJob.setup`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import matseg
from matseg.config import to_dict
from matseg.io.atomic import write_folder
from matseg.io.dataset import FINISHED_NAME, encode_sample, mask_file_name
from matseg.io.sources import ImageSource, default_photos
from matseg.runner import ItemError, WorkItem, derive_seed
from matseg.synth2d.job import SceneOutput
from matseg.synth3d.config import Inputs3DConfig, Synth3DConfig

# Keys that may change between runs into one folder without changing any finished scene.
RUN_ONLY_KEYS = ("num_scenes", "render.threads", "inputs.cache_mb", "output.shard_size")


def recorded_config(cfg: Synth3DConfig) -> dict:
    """The config as stored in each meta.json: without :data:`RUN_ONLY_KEYS`, so extending a
    dataset or changing the thread count leaves finished samples' metadata valid."""
    data = to_dict(cfg)
    for key in RUN_ONLY_KEYS:
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node[part]
        node.pop(parts[-1], None)
    return data


def load_inputs(cfg: Inputs3DConfig):
    """Scan every input collection once (in the driver).

    Returns ``(SceneInputs, bad)``; ``bad`` maps skipped files/folders to the reason. Raises
    FileNotFoundError / NotADirectoryError / ValueError naming the folder when a given folder
    is missing or holds nothing usable (an empty HDRI folder is an error, not a crash).
    """
    from matseg.synth3d.materials import PbrLibrary, scan_pbr_roots
    from matseg.synth3d.objects import list_mesh_files
    from matseg.synth3d.scene import SceneInputs
    from matseg.synth3d.world import list_hdris

    bad: dict[str, str] = {}
    photos = ImageSource.scan(cfg.images, "natural images", cfg.cache_mb << 20) if cfg.images else default_photos()
    photos.cache_bytes = cfg.cache_mb << 20
    bad.update(photos.bad)
    pbrs: list[dict] = []
    if cfg.pbr:
        pbrs, pbr_bad = scan_pbr_roots(cfg.pbr)
        bad.update(pbr_bad)
    hdris = list_hdris(cfg.hdri)
    meshes = list_mesh_files(cfg.objects) if cfg.objects else []
    inputs = SceneInputs(photos=photos, hdris=hdris, pbrs=pbrs, mesh_files=meshes, photo_max_side=cfg.image_max_side,
                         pbr_library=PbrLibrary(cfg.pbr_max_side))  # fmt: skip
    return inputs, bad


def mask_materials(plan: dict) -> list[dict]:
    """Per mask file, the material in it (published ``scene_data.pkl`` content, as JSON)."""
    out = []
    for i, leaf in enumerate(plan["material"]["leaves"]):
        entry = {"mask name": mask_file_name(i + 1), "mode": leaf["mode"], "id": leaf["id"]}
        entry["data"] = leaf["found"] if leaf["mode"] == "pbr" else leaf["data"]
        if leaf["mode"] == "pbr":
            entry["mapping"] = leaf["mapping"]
        out.append(entry)
    return out


class Synth3DJob(SceneOutput):
    """Runner job: item i -> ``<out>/<i zero-padded>/`` (see :mod:`matseg.runner`)."""

    name = "synth3d"

    def __init__(self, cfg: Synth3DConfig, out_dir: Path, inputs, threads: int = 1):
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.inputs = inputs
        self.threads = threads
        self._next_attempt: dict[str, int] = {}

    def setup(self) -> None:
        import cv2

        from matseg.synth3d.blender import require_bpy

        cv2.setNumThreads(1)
        require_bpy()  # fail the worker's setup with the install hint, before any item

    def run(self, item: WorkItem) -> dict:
        if self.shards:
            return {"warnings": self.shards.write(item.index, self._shard_scene, skip=(ItemError,))}
        start = time.perf_counter()
        files, warnings, info = self._scene(item.index, item.seed, item.name)
        t0 = time.perf_counter()
        write_folder(self.out_dir / item.name, files, FINISHED_NAME)
        write_s = time.perf_counter() - t0
        return {"warnings": warnings, "seconds": time.perf_counter() - start, "write_s": write_s, **info["memory"]}

    def _shard_scene(self, index: int) -> tuple[dict[str, bytes], list[str]]:
        # Scenes in a shard keep their own seeds: the scenes of a folder run.
        files, warnings, _ = self._scene(index, derive_seed(self.cfg.seed, index), f"{index:0{self.cfg.output.name_digits}d}")
        return files, warnings

    def _scene(self, index: int, seed: int, name: str) -> tuple[dict[str, bytes], list[str], dict]:
        """Scene ``index`` rendered and encoded as sample files; raises ``ItemError`` when it cannot be made."""
        from matseg.synth3d.scene import Scene3DError, SceneRejectedError, generate_scene

        # A retry of a scene the quality gate rejected draws new attempts instead of repeating
        # the same (deterministic) ones; per worker process, so the outcome is still a function
        # of the seed and of how often the runner retried.
        first = self._next_attempt.get(name, 0)
        try:
            scene = generate_scene(seed, self.cfg, self.inputs, self.threads, first_attempt=first)
        except SceneRejectedError as exc:
            self._next_attempt[name] = exc.next_attempt
            raise ItemError(str(exc)) from None
        except Scene3DError as exc:
            raise ItemError(str(exc)) from None
        info = scene.info
        timing = {**info["timing"], "threads": self.threads}
        meta = {
            "generator": "matseg synth3d",
            "matseg_version": matseg.__version__,
            "index": index,
            "seed": seed,
            "master_seed": self.cfg.seed,
            "attempt": info["attempt"],
            "rejected_attempts": info["rejected_attempts"],
            "materials": mask_materials(info["plan"]),
            "camera": info["camera"],
            "camera_draw": info["camera_draw"],
            "scene": info["plan"],
            "render": info["render"],
            "annotation": info["annotation"],
            "config": recorded_config(self.cfg),
            "timing": timing,
            "memory": info["memory"],
        }
        files = encode_sample(scene.image, scene.weights, scene.roi, meta, jpeg_quality=self.cfg.output.jpeg_quality)
        return files, [f"scene redrawn: {r['reason']}" for r in info["rejected_attempts"]], info


def memory_report(out_dir: Path, names: list[str]) -> dict:
    """Resident memory per scene (from each sample's meta.json) of the items ``names``."""
    import json

    rss, peak = [], []
    for name in names:
        try:
            meta = json.loads((Path(out_dir) / name / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        memory = meta.get("memory") or {}
        if "rss_mb" in memory:
            rss.append(memory["rss_mb"])
            peak.append(memory.get("peak_rss_mb", memory["rss_mb"]))
    if not rss:
        return {}
    return {
        "scenes": len(rss),
        "rss_mb_median": float(np.median(rss)),
        "rss_mb_max": float(np.max(rss)),
        "peak_rss_mb_max": float(np.max(peak)),
    }
