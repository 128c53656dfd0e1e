"""Baselines that need no model: random, colour (blurred Lab) and texture (LBP histograms).

They bound what the benchmark numbers mean: ``random`` is the 0.5 floor, ``colour`` shows how
much of a benchmark image is solved by colour alone, ``texture`` by local texture statistics.
"""

from __future__ import annotations

import zlib

import cv2
import numpy as np

from matseg.evaluate.predictors import DescriptorPredictor, check_image, register_predictor

__all__ = ["RandomPredictor", "ColourPredictor", "TexturePredictor", "lab_colour", "lbp_histograms"]


def _odd_kernel(size: int, what: str) -> int:
    if size < 0 or (size and size % 2 == 0):
        raise ValueError(f"{what} must be 0 (off) or an odd number of pixels, got {size}")
    return size


@register_predictor("random")
class RandomPredictor(DescriptorPredictor):
    """Random per-pixel descriptors (i.i.d. Gaussian): the chance level (~0.5 triplet accuracy)."""

    def __init__(self, dims: int = 8, seed: int = 0):
        if dims < 1:
            raise ValueError(f"dims must be >= 1, got {dims}")
        self.dims, self.seed = int(dims), int(seed)

    def params(self) -> dict:
        return {"dims": self.dims, "seed": self.seed}

    def describe(self, image: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 -> ``(H, W, dims)`` float32 standard normal.

        The stream is seeded by ``(seed, crc32 of the image bytes)``: the same image gives the same
        descriptors whichever worker evaluates it and in whatever order.
        """
        check_image(image)
        rng = np.random.default_rng([self.seed, zlib.crc32(image.tobytes())])
        return rng.standard_normal(image.shape[:2] + (self.dims,), dtype=np.float32)


def lab_colour(image: np.ndarray, blur: int = 19, centre: bool = True) -> np.ndarray:
    """Blurred CIE Lab colour per pixel.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        blur: Gaussian kernel side in pixels (odd; 0 = no blur; sigma from the size as OpenCV does).
        centre: subtract the image's mean Lab colour, so that cosine similarity compares
            directions away from the image's average colour (without it every 8-bit Lab vector
            points roughly the same way and cosines are all close to 1).

    Returns:
        ``(H, W, 3)`` float32 OpenCV 8-bit Lab (L, a, b each 0-255 scaled), minus the mean if
        ``centre``.
    """
    check_image(image)
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    if centre:
        lab -= lab.reshape(-1, 3).mean(axis=0)
    if blur:
        lab = cv2.GaussianBlur(lab, (blur, blur), 0)
    return lab


@register_predictor("colour")
class ColourPredictor(DescriptorPredictor):
    """Blurred Lab colour, centred on the image mean (digest §3.6 colour baseline)."""

    def __init__(self, blur: int = 19, centre: bool = True):
        self.blur = _odd_kernel(int(blur), "blur")
        self.centre = bool(centre)

    def params(self) -> dict:
        return {"blur": self.blur, "centre": self.centre}

    def describe(self, image: np.ndarray) -> np.ndarray:
        return lab_colour(image, self.blur, self.centre)


def lbp_histograms(image: np.ndarray, radii: tuple[int, ...] = (1, 2, 4), window: int = 31) -> np.ndarray:
    """Local-binary-pattern histograms in a window around every pixel.

    Rotation-invariant uniform LBP codes (8 neighbours, ``P + 2 = 10`` codes) of the grey image at
    each radius; per pixel the fraction of each code in the ``window x window`` box around it
    (box filter), square-rooted so that the cosine of two descriptors is the Bhattacharyya
    coefficient of their histograms. Brightness and contrast invariant by construction.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        radii: LBP radii in pixels.
        window: odd side of the histogram window in pixels.

    Returns:
        ``(H, W, 10 * len(radii))`` float32 in [0, 1]; each radius' block has unit L2 norm.
    """
    from skimage.feature import local_binary_pattern

    check_image(image)
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    codes = np.arange(10, dtype=np.float64)
    blocks = []
    for radius in radii:
        lbp = local_binary_pattern(gray, 8, radius, method="uniform")
        onehot = (lbp[:, :, None] == codes).astype(np.float32)
        hist = cv2.boxFilter(onehot, -1, (window, window), normalize=True, borderType=cv2.BORDER_REFLECT)
        blocks.append(np.sqrt(np.maximum(hist, 0.0)))
    return np.concatenate(blocks, axis=2)


@register_predictor("texture")
class TexturePredictor(DescriptorPredictor):
    """LBP texture histograms in a window (radii 1, 2, 4; Bhattacharyya similarity)."""

    def __init__(self, window: int = 31, radii: tuple[int, ...] | list[int] = (1, 2, 4)):
        self.window = _odd_kernel(int(window), "window")
        if self.window == 0:
            raise ValueError("window must be a positive odd number of pixels")
        self.radii = tuple(int(r) for r in radii)
        if not self.radii or min(self.radii) < 1:
            raise ValueError(f"radii must be positive integers, got {radii!r}")

    def params(self) -> dict:
        return {"window": self.window, "radii": list(self.radii)}

    def describe(self, image: np.ndarray) -> np.ndarray:
        return lbp_histograms(image, self.radii, self.window)
