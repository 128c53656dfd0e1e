"""3D training scenes rendered with Blender (paper §3.1 "Creating 3D scenes", appendix C).

``matseg synth3d`` builds each scene from code (no .blend file): random objects whose surface
is split into 2-8 materials by soft maps from natural photos (a binary tree of Mix Shaders),
an HDRI, optional ground, distractors and lights, and a random camera; Cycles renders the RGB
and, in the same render, each material's exact soft weight and the object's visible coverage
as Shader AOVs. Samples are written in the MatSeg format.

Modules: ``config`` (parameters), ``objects``, ``materials``, ``world`` (pure random draws +
Blender builders), ``annotation`` (AOV passes), ``blender`` (the one guarded ``bpy`` import,
scene reset, render settings), ``scene`` (one scene from a seed), ``job`` and ``cli``.
Importing this package, its config and its CLI does not need Blender; rendering does:
``pip install 'matseg[synth3d]'`` on Python 3.11.
"""

from matseg.synth3d.config import Synth3DConfig

__all__ = ["Synth3DConfig"]
