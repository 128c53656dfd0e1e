"""matseg: zero-shot material-state segmentation (the MatSeg paper's system).

Data flows one way, one subpackage per stage:
``extract`` (pattern maps, textures) -> ``materials`` (PBR) -> ``synth2d`` / ``synth3d``
(scenes) -> dataset on disk (``io``) -> ``net`` (training, inference) -> ``evaluate``; ``app`` (the local
web app) sits on top of them all. ``runner`` executes batch stages on a
process pool or Ray; ``tools`` holds ``check`` and ``show``.

The names below are the small public API; they are imported on first use so that
``import matseg`` (and the CLI's start-up) stays fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    # inputs
    "ImageSource": "matseg.io.sources",
    "default_photos": "matseg.io.sources",
    "default_textures": "matseg.io.sources",
    "read_image_rgb": "matseg.io.images",
    # pattern maps (paper §3.1) and textures (§3.2.1)
    "MapConfig": "matseg.extract.maps",
    "pattern_maps": "matseg.extract.maps",
    "extract_textures": "matseg.extract.textures",
    # PBR materials (§3.2.2, appendix F)
    "read_pbr": "matseg.materials.pbr",
    "write_pbr": "matseg.materials.pbr",
    "make_pbr": "matseg.materials.make",
    "mix_materials": "matseg.materials.mix",
    # 2D scenes
    "Scene2DConfig": "matseg.synth2d.scene",
    "Scene2D": "matseg.synth2d.scene",
    "generate_scene": "matseg.synth2d.scene",
    "Synth2DConfig": "matseg.synth2d.job",
    # dataset format
    "Sample": "matseg.io.dataset",
    "read_sample": "matseg.io.dataset",
    "write_sample": "matseg.io.dataset",
    "find_samples": "matseg.io.dataset",
    "check_dataset": "matseg.tools.check",
    # descriptor net (appendix G; torch extra) and evaluation (§4)
    "load_model": "matseg.net.checkpoint",
    "Predictor": "matseg.net.infer",  # Predictor() = the shipped default model
    "TTA_PRESET": "matseg.net.infer",  # Predictor(**TTA_PRESET): test-time augmentation
    "model_info": "matseg.models",
    "create_predictor": "matseg.evaluate.predictors",
    "available_predictors": "matseg.evaluate.predictors",
    "contact_sheet": "matseg.tools.show",
    # configuration and batch runs
    "load_config": "matseg.config",
    "run_job": "matseg.runner",
    "RunnerOptions": "matseg.runner",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'matseg' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
