"""PBR materials: the folder layout and its readers (``pbr``), texture -> PBR (``make``),
mixing (``mix``), shaded previews (``preview``), batch jobs and the ``matseg pbr`` command."""

from matseg.materials.make import MakeConfig, make_pbr, textureless_pbr
from matseg.materials.mix import MixConfig, mix_materials
from matseg.materials.pbr import PBRMaterial, PBRReadError, PBRReport, find_materials, read_pbr, write_pbr
from matseg.materials.preview import render_sphere

__all__ = [
    "MakeConfig",
    "MixConfig",
    "PBRMaterial",
    "PBRReadError",
    "PBRReport",
    "find_materials",
    "make_pbr",
    "mix_materials",
    "read_pbr",
    "render_sphere",
    "textureless_pbr",
    "write_pbr",
]
