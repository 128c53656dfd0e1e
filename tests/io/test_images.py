import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from matseg.io.images import (
    HEIF_HINT,
    ImageReadError,
    decode_image_rgb,
    encode_image,
    list_images,
    read_gray_u8,
    read_image_info,
    read_image_rgb,
    to_uint8,
    write_image,
)
from tests.conftest import HEIC_PHOTO, needs_heif_plugin


def _rgb(h=20, w=30):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_rgb_png_round_trip_exact(tmp_path):
    img = _rgb()
    Image.fromarray(img).save(tmp_path / "a.png")
    out = read_image_rgb(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
    assert np.array_equal(out, img)


def test_grayscale_rgba_palette_and_16bit(tmp_path):
    gray = np.arange(600, dtype=np.uint32).reshape(20, 30) % 256
    Image.fromarray(gray.astype(np.uint8), "L").save(tmp_path / "g.png")
    out = read_image_rgb(tmp_path / "g.png")
    assert out.shape == (20, 30, 3) and np.array_equal(out[:, :, 0], gray) and np.array_equal(out[:, :, 2], gray)

    rgba = np.dstack([_rgb(), np.zeros((20, 30), np.uint8)])  # fully transparent: colour kept
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert np.array_equal(read_image_rgb(tmp_path / "rgba.png"), rgba[:, :, :3])

    pal = Image.fromarray(_rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.save(tmp_path / "p.png")
    assert np.array_equal(read_image_rgb(tmp_path / "p.png"), np.asarray(pal.convert("RGB")))

    deep = (np.arange(600, dtype=np.uint32).reshape(20, 30) * 100).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "d16.png")
    out = read_image_rgb(tmp_path / "d16.png")
    # Scaled, not clipped: 16-bit 59900 -> 233, not 255.
    assert out[-1, -1, 0] == round(59900 / 257)
    assert out.max() < 255


def test_16bit_rgb_png_is_scaled(tmp_path):
    import cv2

    deep = np.zeros((4, 5, 3), np.uint16)
    deep[..., 0] = 65535
    deep[..., 1] = 32896  # -> 128
    cv2.imwrite(str(tmp_path / "d48.png"), deep)  # BGR order on disk
    out = read_image_rgb(tmp_path / "d48.png")
    assert out.dtype == np.uint8 and out.shape == (4, 5, 3)
    assert out[0, 0].tolist() == [0, 128, 255]


def test_exif_orientation_applied(tmp_path):
    img = np.zeros((10, 40, 3), np.uint8)
    img[:, :5] = 255  # white stripe at the left of the stored image
    pil = Image.fromarray(img)
    exif = pil.getexif()
    exif[0x0112] = 6  # rotate 90 CW for display
    pil.save(tmp_path / "r.jpg", exif=exif, quality=95)
    info = read_image_info(tmp_path / "r.jpg")
    assert (info.width, info.height) == (10, 40) and info.exif_transposed
    out = read_image_rgb(tmp_path / "r.jpg")
    assert out.shape == (40, 10, 3)
    assert out[:5].mean() > 200 and out[-5:].mean() < 50  # the stripe is now at the top


@pytest.mark.parametrize("kind", ["truncated", "garbage", "empty", "text"])
def test_bad_files_name_the_file(tmp_path, kind):
    path = tmp_path / f"bad_{kind}.jpg"
    if kind == "truncated":
        Image.fromarray(_rgb(200, 200)).save(path, quality=95)
        path.write_bytes(path.read_bytes()[:800])
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        path.write_text("this is not an image\n")
    with pytest.raises(ImageReadError, match=str(path.name)):
        read_image_rgb(path)


def test_missing_file():
    with pytest.raises(ImageReadError, match="file not found"):
        read_image_rgb("/nonexistent/x.png")


def test_list_images_filters_and_sorts(tmp_path):
    for name in ["b.JPG", "a.png", "notes.txt", ".hidden.png", "sub/c.jpeg", "phone/d.HEIC", "phone/e.heif", "phone/f.avif", "g.exr"]:
        p = tmp_path / name
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == [
        "a.png", "b.JPG", "phone/d.HEIC", "phone/e.heif", "phone/f.avif", "sub/c.jpeg"]  # fmt: skip
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_images(tmp_path / "missing")


def test_to_uint8_rounds_and_clips():
    assert to_uint8(np.array([0.5, 0.999, 1.2, -0.1, 127.5 / 255])).tolist() == [128, 255, 255, 0, 128]


def test_write_and_read_gray(tmp_path):
    mask = np.arange(256, dtype=np.uint8).reshape(16, 16)
    write_image(tmp_path / "m.png", mask)
    assert np.array_equal(read_gray_u8(tmp_path / "m.png"), mask)
    assert not list(tmp_path.glob(".*tmp"))
    with pytest.raises(TypeError):
        encode_image(mask.astype(np.float32), ".png")


def _bands() -> np.ndarray:
    """(32, 48, 3): three vertical bands, red, green, blue (the pattern of HEIC_PHOTO)."""
    a = np.zeros((32, 48, 3), np.uint8)
    a[:, :16], a[:, 16:32], a[:, 32:] = (220, 30, 30), (30, 200, 40), (40, 50, 210)
    return a


def _read_errors_in_fresh_process(blocked: list[str], paths: list[Path], functions=("read_image_rgb",)) -> list[str]:
    """The ImageReadError messages of ``functions`` on each of ``paths`` (functions outer, paths
    inner) in a new Python process where the ``blocked`` modules cannot be imported (a plugin may
    already be registered in this one)."""
    code = (
        "import sys, importlib\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "images = importlib.import_module('matseg.io.images')\n"
        f"for f in {list(functions)!r}:\n"
        "    for p in sys.argv[1:]:\n"
        "        try: getattr(images, f)(p)\n"
        "        except images.ImageReadError as e: print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, *map(str, paths)], capture_output=True, text=True, check=True)
    return done.stdout.splitlines()


def test_heic_photo_reads_upright_once_under_any_name(tmp_path):
    needs_heif_plugin()
    upright = np.rot90(_bands(), k=-1).astype(int)  # orientation 6: turned 90 degrees clockwise
    out = read_image_rgb(HEIC_PHOTO)
    assert out.dtype == np.uint8 and out.shape == (48, 32, 3)
    assert np.abs(out.astype(int) - upright).max() <= 4  # lossy HEVC; 1 measured
    info = read_image_info(HEIC_PHOTO)
    assert (info.width, info.height) == (32, 48)
    # An upload, and a HEIC file whose name says JPEG: recognised by its header.
    assert np.array_equal(decode_image_rgb(HEIC_PHOTO.read_bytes(), "upload.heic"), out)
    misnamed = tmp_path / "IMG_0001.jpg"
    shutil.copyfile(HEIC_PHOTO, misnamed)
    assert np.array_equal(read_image_rgb(misnamed), out)


def test_heic_without_the_plugin_names_the_file_and_the_extra(tmp_path):
    misnamed = tmp_path / "IMG_0002.jpg"
    shutil.copyfile(HEIC_PHOTO, misnamed)
    lines = _read_errors_in_fresh_process(["pi_heif", "pillow_heif"], [HEIC_PHOTO, misnamed], ("read_image_rgb", "read_image_info"))
    assert len(lines) == 4, lines
    for line, path in zip(lines, [HEIC_PHOTO, misnamed] * 2):
        assert line == f"{path}: a HEIC/HEIF photo; reading it needs the HEIF plugin: {HEIF_HINT}"


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow is built without AVIF")
def test_avif_photo_reads_upright(tmp_path):
    pil = Image.fromarray(_bands())
    exif = pil.getexif()
    exif[0x0112] = 6
    pil.save(tmp_path / "a.avif", quality=90, exif=exif)
    out = read_image_rgb(tmp_path / "a.avif")
    assert out.shape == (48, 32, 3)
    # Band centres, now stacked top to bottom (lossy chroma blurs the edges between bands).
    for row, colour in ((8, (220, 30, 30)), (24, (30, 200, 40)), (40, (40, 50, 210))):
        assert np.abs(out[row, 8:24].astype(int) - colour).max() <= 12


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow cannot write the AVIF to test with")
def test_avif_without_pillow_support_says_what_to_install(tmp_path):
    path = tmp_path / "a.avif"
    Image.fromarray(_bands()).save(path, quality=90)
    # A Pillow whose AVIF plugin cannot load, as in builds without libavif.
    [line] = _read_errors_in_fresh_process(["PIL.AvifImagePlugin"], [path])
    assert line.startswith(f"{path}: an AVIF photo; this Pillow (") and line.endswith("pip install -U 'pillow>=11.3'")
