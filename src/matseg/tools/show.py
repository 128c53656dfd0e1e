"""``matseg show DIR -o sheet.png``: a contact sheet to eyeball a dataset, PBR materials or textures.

What DIR holds is detected (``--kind`` overrides): a MatSeg dataset (folders with
``RGB__RGB.jpg`` + ``Finished.txt``), else PBR material folders (any naming convention, see
``matseg.materials.pbr``), else image files (textures).

- dataset: one row per sample: the image | the soft annotation (``sum_i fraction_i *
  palette_i`` inside the ROI, black outside, so mixtures show as mixed colours) | the ROI
  weight as gray.
- pbr: one card per material: base colour | a lit sphere rendered from the maps, a strip of
  property-map thumbnails (N normal, H height, R roughness, M metallic, AO, S specular,
  O opacity; crossed out when missing) and the material name.
- textures: a grid of thumbnails with their file names.

``-n`` draws a reproducible subset (``--seed``), so a folder of 1,000 materials is previewed
in seconds; JPEG maps are decoded at reduced scale.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from matseg import exit_codes
from matseg.io.dataset import DatasetFormatError, Sample, SampleRef, find_samples, read_sample
from matseg.io.images import to_uint8, write_image

__all__ = [
    "PALETTE", "KINDS", "annotation_rgb", "sample_row", "contact_sheet", "choose_samples", "detect_kind",
    "material_card", "texture_card", "grid", "add_parser", "run",
]  # fmt: skip

#: What ``matseg show`` can display; "auto" detects it.
KINDS = ("auto", "dataset", "pbr", "textures")
#: Default ``-n`` and ``--height`` per kind.
DEFAULT_COUNT = {"dataset": 8, "pbr": 24, "textures": 48}
DEFAULT_HEIGHT = {"dataset": 256, "pbr": 128, "textures": 128}

logger = logging.getLogger(__name__)

#: 20 distinguishable RGB colours (matplotlib's tab20, reordered so the first ten are the
#: strong ones); material i uses PALETTE[i % 20].
PALETTE = np.array(
    [
        (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
        (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
        (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
        (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229),
    ],
    dtype=np.uint8,
)


def annotation_rgb(sample: Sample) -> np.ndarray:
    """Colour-coded soft annotation at full resolution.

    Returns:
        ``(H, W, 3)`` uint8 RGB: ``sum_i fractions[i] * PALETTE[i % 20]``; black wherever
        ``sample.roi`` is False (the fractions are 0 there).
    """
    m = sample.num_materials
    colours = PALETTE[np.arange(m) % len(PALETTE)].astype(np.float32)  # (M, 3)
    h, w = sample.size
    # (H*W, M) @ (M, 3) runs through BLAS; einsum would loop in C without it.
    mixed = sample.fractions.reshape(m, -1).T @ colours
    return to_uint8(mixed.reshape(h, w, 3), scale=1.0)


def _resize(image: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Resize to ``size`` = (W, H): area averaging when shrinking, linear when enlarging."""
    if nearest:
        interp = cv2.INTER_NEAREST
    else:
        interp = cv2.INTER_AREA if size[0] < image.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interp)


def _put_label(panel: np.ndarray, text: str) -> None:
    scale = max(0.35, panel.shape[0] / 512)
    origin = (4, 4 + int(22 * scale))
    # Dark outline under white text stays legible on any background.
    cv2.putText(panel, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(panel, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def sample_row(sample: Sample, height: int = 256, label: str | None = None) -> np.ndarray:
    """One contact-sheet row: image | annotation | ROI weight, each ``height`` pixels high.

    Returns:
        ``(height, 3 * w, 3)`` uint8 RGB with ``w = round(W * height / H)``.
    """
    if height < 8:
        raise ValueError(f"height must be >= 8 pixels, got {height}")
    h, w = sample.size
    size = (max(1, round(w * height / h)), height)
    image = np.ascontiguousarray(_resize(sample.image, size))
    roi_small = _resize(sample.roi.astype(np.uint8), size, nearest=True).astype(bool)
    # Area averaging bleeds colour over the ROI border; keep outside-ROI pixels black.
    annot = _resize(annotation_rgb(sample), size) * roi_small[:, :, None]
    roi = np.repeat(_resize(to_uint8(sample.roi_weight), size)[:, :, None], 3, axis=2)
    _put_label(image, label if label is not None else sample.path.name)
    return np.hstack([image, annot, roi])


def contact_sheet(samples: Sequence[Sample], height: int = 256, labels: Sequence[str] | None = None) -> np.ndarray:
    """Stack :func:`sample_row` of each sample vertically.

    Args:
        samples: samples to show (one row each).
        height: row height in pixels.
        labels: text drawn on each row's image (default: the sample folder names).

    Returns:
        ``(len(samples) * height, max_row_width, 3)`` uint8 RGB; narrower rows (other aspect
        ratios) are padded with black on the right.
    """
    if not samples:
        raise ValueError("contact_sheet needs at least one sample, got none")
    if labels is not None and len(labels) != len(samples):
        raise ValueError(f"got {len(labels)} labels for {len(samples)} samples")
    rows = [sample_row(s, height, None if labels is None else labels[i]) for i, s in enumerate(samples)]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    return np.vstack(rows)


def choose_samples(folders: Sequence[Path], n: int, seed: int = 0) -> list[Path]:
    """Up to ``n`` of ``folders``, drawn reproducibly from ``seed``, kept in their given order."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if len(folders) <= n:
        return list(folders)
    picked = np.random.default_rng(seed).choice(len(folders), size=n, replace=False)
    return [folders[i] for i in sorted(picked)]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``show`` on an argparse subparsers object."""
    parser = subparsers.add_parser(
        "show",
        help="contact sheet of a dataset, PBR materials (lit spheres) or textures",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dir", type=Path, help="dataset folder (or one sample folder), folder of PBR materials, or folder of textures")
    parser.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--kind", choices=KINDS, default="auto", help="what DIR holds (default: auto = detect)")
    parser.add_argument("-n", type=int, default=None, help="number of samples / materials / textures (default: 8 / 24 / 48)")
    parser.add_argument("--seed", type=int, default=0, help="seed for choosing them (default: 0)")
    parser.add_argument("--height", type=int, default=None, help="row height (dataset, default 256) or tile size (pbr, textures: default 128), pixels")
    parser.add_argument("--columns", type=int, default=None, help="cards per row for pbr/textures (default: about square)")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Handler of ``matseg show``: 0 on success, 1 if nothing could be shown, 2 on bad arguments."""
    if Path(args.output).suffix.lower() != ".png":
        print(f"matseg show: the output must be a .png file, got {args.output}")
        return exit_codes.USAGE
    try:
        kind = detect_kind(args.dir) if args.kind == "auto" else args.kind
        n = DEFAULT_COUNT[kind] if args.n is None else args.n
        height = DEFAULT_HEIGHT[kind] if args.height is None else args.height
        if args.columns is not None and args.columns < 1:
            raise ValueError(f"--columns must be >= 1, got {args.columns}")
        shown = {"dataset": _dataset_sheet, "pbr": _pbr_sheet, "textures": _textures_sheet}[kind]
        sheet = shown(Path(args.dir), n, args.seed, height, args.columns)
    except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
        print(f"matseg show: {exc}")
        return exit_codes.USAGE
    if sheet is None:
        print(f"matseg show: nothing readable to show under {args.dir} (kind: {kind})")
        return exit_codes.FAILED
    output = Path(args.output)
    write_image(output, sheet)
    print(output)
    return exit_codes.OK


def _label_of(folder, root: Path) -> str:
    if isinstance(folder, SampleRef):
        return folder.relative_name()
    rel = folder.relative_to(root).as_posix()
    return rel if rel != "." else folder.name


def _dataset_sheet(root: Path, n: int, seed: int, height: int, columns: int | None) -> np.ndarray | None:
    folders = choose_samples(find_samples(root), n, seed)
    samples, labels = [], []
    for folder in folders:
        try:
            samples.append(read_sample(folder))
        except DatasetFormatError as exc:
            logger.warning("skipping unreadable sample: %s", exc)
            continue
        labels.append(_label_of(folder, root))
    return contact_sheet(samples, height, labels) if samples else None


def _pbr_sheet(root: Path, n: int, seed: int, tile: int, columns: int | None) -> np.ndarray | None:
    from matseg.materials.pbr import PBRReadError, find_materials, read_pbr

    materials, bad = find_materials(root)
    if not materials:
        raise ValueError(f"{root}: no PBR material folders found" + (f" ({len(bad)} without a colour map)" if bad else ""))
    cards = []
    for folder in choose_samples(materials, n, seed):
        try:
            # Decoding at about twice the sphere size is all a preview needs (JPEG: reduced DCT).
            material = read_pbr(folder, max_side=2 * tile)
        except PBRReadError as exc:
            logger.warning("skipping unreadable material: %s", exc)
            continue
        cards.append(material_card(material.maps, _label_of(folder, root), tile))
    return grid(cards, columns) if cards else None


def _textures_sheet(root: Path, n: int, seed: int, tile: int, columns: int | None) -> np.ndarray | None:
    from matseg.io.images import list_images
    from matseg.materials.pbr import read_map_file

    paths = list_images(root)
    if not paths:
        raise ValueError(f"{root}: no image files found")
    cards = []
    for path in choose_samples(paths, n, seed):
        try:
            image = read_map_file(path, max_side=tile)
        except ValueError as exc:
            logger.warning("skipping unreadable image: %s", exc)
            continue
        cards.append(texture_card(image, _label_of(path, root), tile))
    return grid(cards, columns) if cards else None


def detect_kind(root: str | Path) -> str:
    """``"dataset"``, ``"pbr"`` or ``"textures"``: what a folder holds (file names only, no decoding).

    A dataset has finished MatSeg samples; a PBR folder has material folders of which at least
    one holds a colour map and another map (so a texture folder with one ``*_color.jpg`` stays
    a texture folder); else any image file makes it a texture folder.

    Raises:
        FileNotFoundError / NotADirectoryError: bad folder; ValueError: nothing to show.
    """
    from matseg.io.images import list_images
    from matseg.materials.pbr import find_materials, scan_material

    root = Path(root)
    if find_samples(root):
        return "dataset"
    materials, _ = find_materials(root)
    if any(len(scan_material(m).candidates) >= 2 for m in materials[:20]):
        return "pbr"
    if list_images(root):
        return "textures"
    raise ValueError(f"{root}: nothing to show (no MatSeg samples, PBR material folders or images)")


# ----------------------------------------------------------------------------- cards and grids

#: Thumbnail strip of a material card: property, short label.
THUMB_PROPERTIES = (("normal", "N"), ("height", "H"), ("roughness", "R"), ("metallic", "M"),
                    ("ao", "AO"), ("specular", "S"), ("opacity", "O"))  # fmt: skip
_CARD_BACKGROUND = 24


def _caption(width: int, text: str, height: int) -> np.ndarray:
    """A ``(height, width, 3)`` dark strip with ``text`` (shortened with ".." to fit)."""
    strip = np.full((height, width, 3), _CARD_BACKGROUND, np.uint8)
    scale = height / 40.0
    fitted = text
    while fitted and cv2.getTextSize(fitted, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > width - 6:
        fitted = fitted[:-3] + ".." if len(fitted) > 3 else ""
    cv2.putText(strip, fitted, (3, int(height * 0.72)), cv2.FONT_HERSHEY_SIMPLEX, scale, (235, 235, 235), 1, cv2.LINE_AA)
    return strip


def material_card(maps: dict[str, np.ndarray], name: str, tile: int = 128) -> np.ndarray:
    """One material: base colour | lit sphere, property thumbnails, name.

    Args:
        maps: a :class:`~matseg.materials.pbr.PBRMaterial`'s maps (``color`` required).
        name: caption.
        tile: side of the colour and sphere panels (>= 32).

    Returns:
        ``(tile + thumb + caption, 2 * tile, 3)`` uint8 RGB with ``thumb = 2 * tile // 7`` and
        ``caption = max(12, tile // 7)``.
    """
    from matseg.materials.preview import map_thumbnail, render_sphere

    if tile < 32:
        raise ValueError(f"tile must be >= 32 pixels, got {tile}")
    top = np.hstack([map_thumbnail(maps["color"], tile), render_sphere(maps, tile)])
    thumb = 2 * tile // len(THUMB_PROPERTIES)
    strip = np.full((thumb, 2 * tile, 3), _CARD_BACKGROUND, np.uint8)
    for i, (prop, short) in enumerate(THUMB_PROPERTIES):
        x = i * thumb
        if prop in maps:
            strip[:, x : x + thumb] = map_thumbnail(maps[prop], thumb)
        else:  # crossed out: the property is missing
            cv2.line(strip, (x + 4, 4), (x + thumb - 5, thumb - 5), (90, 90, 90), 1, cv2.LINE_AA)
            cv2.line(strip, (x + 4, thumb - 5), (x + thumb - 5, 4), (90, 90, 90), 1, cv2.LINE_AA)
        _put_small(strip, short, (x + 2, thumb - 3), thumb / 90.0)
    return np.vstack([top, strip, _caption(2 * tile, name, max(12, tile // 7))])


def texture_card(image: np.ndarray, name: str, tile: int = 128) -> np.ndarray:
    """A texture thumbnail fitted in ``tile x tile`` (aspect kept, dark margins) above its name.

    Returns ``(tile + caption, tile, 3)`` uint8 RGB, ``caption = max(12, tile // 7)``.
    """
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    h, w = image.shape[:2]
    s = tile / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    small = _resize(image, size)
    panel = np.full((tile, tile, 3), _CARD_BACKGROUND, np.uint8)
    y0, x0 = (tile - size[1]) // 2, (tile - size[0]) // 2
    panel[y0 : y0 + size[1], x0 : x0 + size[0]] = small
    return np.vstack([panel, _caption(tile, name, max(12, tile // 7))])


def _put_small(image: np.ndarray, text: str, origin: tuple[int, int], scale: float) -> None:
    scale = max(0.25, scale)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 2, cv2.LINE_AA)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def grid(cards: Sequence[np.ndarray], columns: int | None = None, gap: int = 2) -> np.ndarray:
    """Cards (same-size ``(h, w, 3)`` uint8) in rows of ``columns`` (default: about a square sheet).

    Returns ``(rows * (h + gap) - gap, columns * (w + gap) - gap, 3)`` uint8; empty cells black.
    """
    if not cards:
        raise ValueError("grid needs at least one card, got none")
    h, w = cards[0].shape[:2]
    if any(c.shape != cards[0].shape for c in cards):
        raise ValueError(f"cards must share one shape, got {sorted({c.shape for c in cards})}")
    if columns is None:
        columns = max(1, round(np.sqrt(len(cards) * h / w)))
    columns = min(columns, len(cards))
    rows = -(-len(cards) // columns)
    sheet = np.zeros((rows * (h + gap) - gap, columns * (w + gap) - gap, 3), np.uint8)
    for i, card in enumerate(cards):
        r, c = divmod(i, columns)
        sheet[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = card
    return sheet
