"""Browse a folder given with ``--data``: a MatSeg dataset, a PBR folder or a texture folder.

Pure functions of (root folder, item name): the server adds caching and HTTP. Item names are
paths relative to the root (POSIX); :func:`matseg.app.roots.resolve_inside` turns them back
into files, so an item name can never reach outside the root.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from matseg.app.roots import resolve_inside
from matseg.io.images import decode_image_rgb, encode_image, read_image_rgb

THUMB_SIDE = 256


def folder_kind(root: Path) -> str:
    """``"dataset"``, ``"pbr"``, ``"textures"`` or ``"empty"`` (see ``matseg show``)."""
    from matseg.tools.show import detect_kind

    try:
        return detect_kind(root)
    except ValueError:
        return "empty"


def list_items(root: Path, kind: str) -> list[str]:
    """Item names (relative POSIX paths) of a folder of ``kind``, in a stable order."""
    if kind == "dataset":
        from matseg.io.dataset import find_samples

        folders = find_samples(root)
    elif kind == "pbr":
        from matseg.materials.pbr import find_materials

        folders = find_materials(root)[0]
    elif kind == "textures":
        from matseg.io.images import list_images

        folders = list_images(root)
    else:
        return []
    return [_relative(root, f) for f in folders]


def _relative(root: Path, path) -> str:
    from matseg.io.dataset import SampleRef

    if isinstance(path, SampleRef):  # a sample inside a shard folder: its key
        return path.relative_name()
    rel = Path(path).resolve().relative_to(root).as_posix()
    return "" if rel == "." else rel


@lru_cache(maxsize=8)
def _shard_samples_by_key(root: str, index_stamp: tuple[int, int]) -> dict:
    """Key -> sample of a shard folder; cached per version of its index.json, so the grid's
    thumbnail requests do not each parse an index that lists the whole dataset."""
    from matseg.io.shards import shard_samples

    return {sample.relative_name(): sample for sample in shard_samples(root)}


def _sample(root: Path, item: str):
    """The sample ``item`` of a dataset: a folder inside ``root``, or a shard member by key."""
    from matseg.io.shards import INDEX_NAME, is_shard_folder

    if is_shard_folder(root):
        index = (root / INDEX_NAME).stat()
        sample = _shard_samples_by_key(str(root), (index.st_mtime_ns, index.st_size)).get(item)
        if sample is None:
            raise FileNotFoundError(f"{item}: no such sample in the shards of {root}")
        return sample
    return resolve_inside(root, item)


def _shrink(image: np.ndarray, side: int) -> np.ndarray:
    h, w = image.shape[:2]
    s = min(1.0, side / max(h, w))
    if s >= 1.0:
        return image
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def thumbnail(root: Path, kind: str, item: str, side: int = THUMB_SIDE) -> bytes:
    """JPEG thumbnail of one item: the sample's image, a material card or the texture."""
    if kind == "dataset":
        from matseg.io.dataset import RGB_NAME, SampleRef

        sample = _sample(root, item)
        if isinstance(sample, SampleRef):
            image = decode_image_rgb(sample.read_files()[RGB_NAME], str(sample.path / RGB_NAME))
        else:
            image = read_image_rgb(sample / RGB_NAME)
        return encode_image(_shrink(image, side), ".jpg", jpeg_quality=85)
    path = resolve_inside(root, item)
    if kind == "pbr":
        from matseg.materials.pbr import read_pbr
        from matseg.tools.show import material_card

        image = material_card(read_pbr(path, max_side=side).maps, path.name, tile=side // 2)
    else:
        image = read_image_rgb(path)
    return encode_image(_shrink(image, side), ".jpg", jpeg_quality=85)


def sample_details(root: Path, item: str) -> dict:
    """Everything the sample page shows, except pixels: size, masks, meta, check findings."""
    from matseg.io.dataset import read_sample
    from matseg.tools.check import check_sample

    path = _sample(root, item)
    sample = read_sample(path)
    check = check_sample(path, name=item or path.name)
    fractions = sample.fractions.reshape(sample.num_materials, -1)
    return {
        "name": item or path.name,
        "source": sample.source,
        "size": list(sample.size),
        "masks": [
            {"index": i, "name": name, "coverage": float(fractions[i].mean())}
            for i, name in enumerate(sample.mask_names)
        ],
        "roi_fraction": float(sample.roi.mean()),
        "meta": json.loads(json.dumps(sample.meta, default=str)),
        "check": {"ok": check.ok, "problems": check.problems, "warnings": check.warnings},
    }


def sample_layer(root: Path, item: str, layer: str) -> bytes:
    """One layer of a sample as an image file's bytes.

    ``layer``: ``image`` (JPEG), ``annotation`` (colour-coded soft annotation, PNG), ``roi``
    (PNG, white inside), or ``mask<i>`` (material ``i``'s soft mask, 8-bit PNG).

    Raises:
        ValueError: unknown layer or mask index (message lists the valid ones).
    """
    from matseg.io.dataset import read_sample
    from matseg.io.images import to_uint8
    from matseg.tools.show import annotation_rgb

    sample = read_sample(_sample(root, item))
    if layer == "image":
        return encode_image(sample.image, ".jpg", jpeg_quality=90)
    if layer == "annotation":
        return encode_image(annotation_rgb(sample), ".png")
    if layer == "roi":
        return encode_image(sample.roi.astype(np.uint8) * 255, ".png")
    if layer.startswith("mask") and layer[4:].isdigit():
        i = int(layer[4:])
        if i < sample.num_materials:
            return encode_image(to_uint8(sample.fractions[i]), ".png")
    raise ValueError(f"unknown layer {layer!r}: image, annotation, roi or mask0..mask{sample.num_materials - 1}")


def pbr_card(root: Path, item: str, tile: int = 256) -> bytes:
    """PNG preview card of one PBR material (colour, lit sphere, property maps)."""
    from matseg.materials.pbr import read_pbr
    from matseg.tools.show import material_card

    path = resolve_inside(root, item)
    return encode_image(material_card(read_pbr(path, max_side=2 * tile).maps, path.name, tile), ".png")
