"""Image reading and writing shared by every stage.

Reading goes through Pillow so that every file users bring ends up as the same thing: an
upright (EXIF orientation applied), 8-bit, 3-channel RGB array. Writing goes through OpenCV
(faster encoders) and always to a temporary name first, so a crash never leaves half a file.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import PIL
from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

#: Photo files matseg lists and reads (through Pillow). AVIF needs a Pillow built with it (the
#: PyPI wheels of Pillow >= 11.3 are); HEIC/HEIF, what many phone cameras save, needs the
#: ``heif`` extra (``pi-heif``, a decode-only libheif plugin), which is loaded on the first one.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".avif", ".heic", ".heif")
#: The install hint of a HEIF photo without the plugin.
HEIF_HINT = "pip install 'matseg[heif]'"
# Major brands of HEVC-coded HEIF files (ISO/IEC 23008-12), at bytes 8-12 after "ftyp".
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1", b"mif2"}
_heif_registered: bool | None = None

# A decompression bomb is still refused, but real photos of 100+ Mpx (panoramas) are fine.
Image.MAX_IMAGE_PIXELS = 400_000_000


class ImageReadError(ValueError):
    """A file that should be an image could not be read; the message names the file."""


@dataclass(frozen=True)
class ImageInfo:
    """What the header of an image says, in the upright (EXIF-applied) frame."""

    path: Path
    width: int
    height: int
    mode: str
    exif_transposed: bool


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Image files (by extension, case-insensitive) under ``folder``, sorted for determinism.

    Hidden files and everything inside hidden folders below ``folder`` (names starting with
    ".", e.g. ``.rejected/``, ``.incomplete/``, temporary ``.tmp-*`` folders) are skipped;
    symbolic links to files are listed, links to folders are not followed. A sub-folder that
    cannot be read is skipped with a warning. Raises ``FileNotFoundError``/``NotADirectoryError``
    with the folder named.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: folder does not exist")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: not a folder")
    # os.scandir, not Path.glob: a photo library of 10^5 files is listed several times faster.
    found, stack = [], [str(folder)]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        if recursive:
                            stack.append(entry.path)
                    elif entry.name.lower().endswith(IMAGE_EXTENSIONS) and entry.is_file():
                        found.append(entry.path)
        except PermissionError as exc:
            logger.warning("skipping unreadable folder %s (%s)", current, exc.strerror)
    found.sort()
    return [Path(p) for p in found]


def _exif_orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:  # malformed EXIF blocks are common; treat as upright
        return 1


def _register_heif() -> bool:
    """Register the HEIF plugin with Pillow once; False when neither ``pi-heif`` nor
    ``pillow-heif`` is installed."""
    global _heif_registered
    if _heif_registered is None:
        try:
            from pi_heif import register_heif_opener
        except ImportError:
            try:
                from pillow_heif import register_heif_opener
            except ImportError:
                register_heif_opener = None
        if register_heif_opener is not None:
            register_heif_opener()
        _heif_registered = register_heif_opener is not None
    return _heif_registered


def _major_brand(source) -> bytes:
    """The ISO base media file's major brand (``b"heic"``, ``b"avif"``, ...), or ``b""``."""
    try:
        if hasattr(source, "seek"):
            source.seek(0)
            head = source.read(12)
            source.seek(0)
        else:
            with open(source, "rb") as fh:
                head = fh.read(12)
    except OSError:
        return b""
    return head[8:12] if head[4:8] == b"ftyp" else b""


def _open_image(source, path: Path) -> Image.Image:
    """``Image.open`` that loads the HEIF plugin when it meets a HEIC photo (not before: most
    runs never see one) and says what to install when a HEIC or AVIF photo cannot be read."""
    try:
        return Image.open(source)
    except UnidentifiedImageError:
        brand = _major_brand(source)
        if brand in (b"avif", b"avis"):
            raise ImageReadError(f"{path}: an AVIF photo; this Pillow ({PIL.__version__}) cannot read AVIF: pip install -U 'pillow>=11.3'") from None
        if brand not in _HEIF_BRANDS:
            raise
    if not _register_heif():
        raise ImageReadError(f"{path}: a HEIC/HEIF photo; reading it needs the HEIF plugin: {HEIF_HINT}")
    return Image.open(source)


def read_image_info(path: str | os.PathLike, data: bytes | None = None) -> ImageInfo:
    """Read only the header: size in the upright frame and pixel mode. Cheap (no decoding).

    With ``data`` (the file's bytes, e.g. a shard member) nothing is read from disk and
    ``path`` only names it in messages.
    """
    path = Path(path)
    try:
        with _open_image(path if data is None else io.BytesIO(data), path) as img:
            w, h = img.size
            orientation = _exif_orientation(img)
            mode = img.mode
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({exc})") from None
    transposed = orientation in (5, 6, 7, 8)
    if transposed:
        w, h = h, w
    return ImageInfo(path, w, h, mode, orientation != 1)


def _to_uint8_rgb(img: Image.Image, path: Path) -> np.ndarray:
    """Convert any Pillow mode to HxWx3 uint8 RGB, scaling (not clipping) high bit depths."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img)
        if mode == "F":
            arr = np.nan_to_num(arr.astype(np.float64))
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        else:
            # 16-bit data: 0..65535 maps to 0..255 (÷257 keeps 65535 -> 255 exactly).
            arr = arr.astype(np.float64) / 257.0
        gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode in ("P", "PA"):
        img = img.convert("RGBA" if "transparency" in img.info or mode == "PA" else "RGB")
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        # Alpha is dropped: the colour under a transparent pixel is still the photo's colour.
        img = img.convert("RGBA").convert("RGB")
    elif img.mode != "RGB":
        img = img.convert("RGB")
    arr = np.asarray(img)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageReadError(f"{path}: unsupported pixel layout {arr.dtype} {arr.shape}")
    return np.ascontiguousarray(arr)


def read_image_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to an upright RGB array.

    Returns:
        ``(H, W, 3)`` uint8 array in RGB order, values 0-255, EXIF orientation applied.
        Grayscale is replicated to 3 channels, alpha is dropped, palettes are expanded and
        16-bit data is scaled to 8 bits.

    Raises:
        ImageReadError: the file is missing, not an image, truncated or corrupt (message
        names the file).
    """
    path = Path(path)
    return _decode_rgb(path, path)


def decode_image_rgb(data: bytes, name: str, max_pixels: int | None = None) -> np.ndarray:
    """Decode image bytes (an upload) exactly as :func:`read_image_rgb` decodes a file.

    Args:
        data: the encoded file (JPEG, PNG, WebP, ...).
        name: what messages call it (the uploaded file's name).
        max_pixels: refuse larger images from their header, before decoding.

    Returns:
        ``(H, W, 3)`` uint8 RGB, EXIF orientation applied.

    Raises:
        ImageReadError: not an image, truncated, corrupt or above ``max_pixels`` (message names
        ``name``).
    """
    return _decode_rgb(io.BytesIO(data), Path(name), max_pixels)


def _decode_rgb(source, path: Path, max_pixels: int | None = None) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. PIL's "possibly corrupt EXIF" noise
            with _open_image(source, path) as img:
                w, h = img.size
                if max_pixels is not None and w * h > max_pixels:
                    raise ImageReadError(
                        f"{path}: {w}x{h} pixels ({w * h / 1e6:.1f} Mpx) is above the limit of {max_pixels / 1e6:.1f} Mpx"
                    )
                img.load()  # truncated files raise here rather than decoding to grey
                if _exif_orientation(img) != 1:  # exif_transpose copies the image even when upright
                    img = ImageOps.exif_transpose(img)
                return _to_uint8_rgb(img, path)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        detail = str(exc).replace(repr(source), "the data")  # PIL names a BytesIO by its repr
        raise ImageReadError(f"{path}: not a readable image ({detail})") from None


def read_gray_u8(path: str | os.PathLike) -> np.ndarray:
    """Read an 8-bit single-channel mask exactly as stored (no EXIF, no colour conversion).

    Returns ``(H, W)`` uint8. Colour files are converted with ITU-R 601 luma; 16-bit files are
    scaled to 8 bits.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found")
    return decode_gray_u8(np.fromfile(path, dtype=np.uint8), path)


def decode_gray_u8(data: bytes | np.ndarray, name: str | os.PathLike) -> np.ndarray:
    """:func:`read_gray_u8` of file bytes (a member of a shard); ``name`` is what messages say."""
    path = Path(name)
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ImageReadError(f"{path}: not a readable image")
    if arr.dtype == np.uint16:
        arr = np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise ImageReadError(f"{path}: unsupported mask dtype {arr.dtype}")
    if arr.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if arr.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        arr = cv2.cvtColor(arr, code)
    return arr


def encode_image(image: np.ndarray, ext: str, jpeg_quality: int = 95, png_compression: int = 1) -> bytes:
    """Encode an RGB ``(H, W, 3)`` or gray ``(H, W)`` uint8 array to file bytes (``.jpg``/``.png``)."""
    if image.dtype != np.uint8:
        raise TypeError(f"encode_image expects uint8, got {image.dtype}")
    if image.ndim == 3:
        if image.shape[2] != 3:
            raise ValueError(f"encode_image expects (H, W, 3) RGB, got shape {image.shape}")
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim != 2:
        raise ValueError(f"encode_image expects (H, W) or (H, W, 3), got shape {image.shape}")
    ext = ext.lower()
    if ext in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    elif ext == ".png":
        # Masks are flat regions with soft borders: run-length zlib on unfiltered rows is ~3x
        # faster than libpng's defaults for 10 % larger files (measured on synth2d masks:
        # 1.4 vs 4.9 ms and 71 vs 63 KiB per 0.6 Mpx mask; docs/benchmarks.md).
        params = [cv2.IMWRITE_PNG_COMPRESSION, int(png_compression), cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
        if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.10
            params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]
    else:
        params = []
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"could not encode image as {ext}")
    return buf.tobytes()


def write_image(path: str | os.PathLike, image: np.ndarray, **encode_kwargs) -> None:
    """Write an RGB or gray uint8 image atomically (temporary file, then rename)."""
    path = Path(path)
    from matseg.io.atomic import write_bytes_atomic

    write_bytes_atomic(path, encode_image(image, path.suffix, **encode_kwargs))


def to_uint8(values: np.ndarray, scale: float = 255.0) -> np.ndarray:
    """Map float values in [0, 1] to uint8 by rounding and clipping (never truncating)."""
    return np.clip(np.rint(np.asarray(values, dtype=np.float32) * scale), 0, 255).astype(np.uint8)
