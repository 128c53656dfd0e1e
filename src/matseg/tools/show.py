"""``matseg show DIR -o sheet.png``: a contact sheet to eyeball a dataset.

One row per sample: the image | the soft annotation (``sum_i fraction_i * palette_i`` inside
the ROI, black outside, so mixtures show as mixed colours) | the ROI weight as gray.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from matseg.io.dataset import DatasetFormatError, Sample, find_samples, read_sample
from matseg.io.images import to_uint8, write_image

__all__ = ["PALETTE", "annotation_rgb", "sample_row", "contact_sheet", "choose_samples", "add_parser", "run"]

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
        help="contact sheet of dataset samples (image | annotation | ROI)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dir", type=Path, help="dataset folder (or one sample folder)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
    parser.add_argument("-n", type=int, default=8, help="number of samples (default: 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed for choosing samples (default: 0)")
    parser.add_argument("--height", type=int, default=256, help="row height in pixels (default: 256)")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Handler of ``matseg show``: 0 on success, 1 if nothing could be shown, 2 on bad arguments."""
    if Path(args.output).suffix.lower() != ".png":
        print(f"matseg show: the output must be a .png file, got {args.output}")
        return 2
    try:
        folders = choose_samples(find_samples(args.dir), args.n, args.seed)
    except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
        print(f"matseg show: {exc}")
        return 2
    samples, labels = [], []
    for folder in folders:
        try:
            samples.append(read_sample(folder))
        except DatasetFormatError as exc:
            logger.warning("skipping unreadable sample: %s", exc)
            continue
        rel = folder.relative_to(args.dir).as_posix()
        labels.append(rel if rel != "." else folder.name)
    if not samples:
        print(f"matseg show: no readable samples under {args.dir}")
        return 1
    try:
        sheet = contact_sheet(samples, args.height, labels)
    except ValueError as exc:
        print(f"matseg show: {exc}")
        return 2
    output = Path(args.output)
    write_image(output, sheet)
    print(output)
    return 0
