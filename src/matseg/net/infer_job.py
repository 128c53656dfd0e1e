"""Runner jobs of ``matseg predict`` and ``matseg segment``: one photo per item.

Item ``i`` is ``inputs[i]`` (:func:`matseg.io.inputs.find_inputs`: files and folders of the
command line, uniquely named); its outputs are ``OUT/<name>_*`` (a name may hold sub-folders,
mirroring an input folder). Every file is written atomically; with ``resume`` an item whose
files all exist is skipped (the caller sets it only when the folder's ``run.json`` records the
same model and options). Unreadable photos and points outside a photo fail their item only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from matseg.io.images import ImageReadError, read_image_rgb, write_image
from matseg.io.inputs import InputImage
from matseg.runner import ItemError, WorkItem


@dataclass(frozen=True)
class PredictorSpec:
    """What :class:`matseg.net.infer.Predictor` is built from (picklable, for worker processes)."""

    weights: str | None
    device: str = "auto"
    max_side: int | None = None
    precision: str = "fp32"
    tta: bool = False

    def build(self):
        from matseg.net.infer import Predictor, tta_options

        return Predictor(self.weights, device=self.device, max_side=self.max_side, precision=self.precision, **tta_options(self.tta))


class InferJob:
    """Shared part of the two jobs; subclasses name their outputs and do the work of one photo."""

    name = "infer"

    def __init__(self, spec: PredictorSpec, out_dir: Path, inputs: list[InputImage], resume: bool = False, predictor=None):
        self.spec = spec
        self.out_dir = Path(out_dir)
        self.inputs = inputs
        self.resume = resume
        self._predictor = predictor  # the caller's, when the job runs in its process

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_predictor"] = None  # each worker process builds its own in setup()
        return state

    def items(self) -> list[WorkItem]:
        return [WorkItem(i, inp.name, 0) for i, inp in enumerate(self.inputs)]

    def outputs(self, name: str) -> list[Path]:
        raise NotImplementedError

    def is_done(self, item: WorkItem) -> bool:
        return self.resume and all(path.exists() for path in self.outputs(item.name))

    def setup(self) -> None:
        if self._predictor is None:
            self._predictor = self.spec.build()

    def run(self, item: WorkItem) -> dict:
        path = self.inputs[item.index].path
        try:
            image = read_image_rgb(path)
        except ImageReadError as exc:
            raise ItemError(str(exc)) from None
        try:
            line = self.work(path, image, item.name)
        except ValueError as exc:  # e.g. an image too thin for the net after --max-side
            raise ItemError(f"{path}: {exc}") from None
        from tqdm import tqdm

        tqdm.write(line)  # above the progress bar, not through it
        return {}

    def work(self, path: Path, image: np.ndarray, name: str) -> str:
        """Write the outputs of one photo; return the line that reports them."""
        raise NotImplementedError

    def _prefix(self, name: str) -> Path:
        return self.out_dir / name


class PredictJob(InferJob):
    """``OUT/<name>_p<i>.npy`` (float32 similarity, -1..1), ``.png`` and ``_overlay.png`` per point."""

    name = "predict"

    def __init__(self, spec, out_dir, inputs, points: list[tuple[float, float]], radius: float = 0.0, **kwargs):
        super().__init__(spec, out_dir, inputs, **kwargs)
        self.points = list(points)
        self.radius = radius

    def outputs(self, name: str) -> list[Path]:
        prefix = self._prefix(name)
        return [prefix.parent / f"{prefix.name}_p{i}{tail}" for i in range(len(self.points)) for tail in (".npy", ".png", "_overlay.png")]

    def work(self, path: Path, image: np.ndarray, name: str) -> str:
        from matseg.net.infer import save_similarity_outputs

        h, w = image.shape[:2]
        outside = [p for p in self.points if not (0 <= p[0] < w and 0 <= p[1] < h)]
        if outside:
            raise ItemError(f"{path}: point(s) {outside} outside the image ({w}x{h})")
        prefix = self._prefix(name)
        sims = self._predictor.similarity_maps(image, self.points, self.radius)
        written = [save_similarity_outputs(prefix.parent, f"{prefix.name}_p{i}", image, sim, point)[0] for i, (sim, point) in enumerate(zip(sims, self.points))]
        return "\n".join(f"{path}: point {point} -> {file}" for point, file in zip(self.points, written))


class SegmentJob(InferJob):
    """``OUT/<name>_labels.png`` (material ids), ``_colour.png`` and ``_overlay.png``."""

    name = "segment"

    def __init__(self, spec, out_dir, inputs, materials: int | None = None, max_materials: int = 8, seed: int = 0, **kwargs):
        super().__init__(spec, out_dir, inputs, **kwargs)
        self.materials = materials
        self.max_materials = max_materials
        self.seed = seed

    def outputs(self, name: str) -> list[Path]:
        prefix = self._prefix(name)
        return [prefix.parent / f"{prefix.name}_{kind}.png" for kind in ("labels", "colour", "overlay")]

    def work(self, path: Path, image: np.ndarray, name: str) -> str:
        import cv2

        from matseg.net.infer import colorize_labels

        labels = self._predictor.segment(image, self.materials, self.max_materials, self.seed)
        colour = colorize_labels(labels)
        labels_path, colour_path, overlay_path = self.outputs(name)
        write_image(colour_path, colour)
        write_image(overlay_path, cv2.addWeighted(image, 0.5, colour, 0.5, 0))
        write_image(labels_path, labels.astype(np.uint8))
        return f"{path}: {int(labels.max()) + 1} materials -> {colour_path}"
