import numpy as np
import pytest
from PIL import Image

from matseg.io.images import ImageReadError
from matseg.io.sources import ImageSource, default_photos, default_textures


def test_scan_lists_bad_files_and_keeps_good(tmp_path, photo_folder):
    (photo_folder / "broken.jpg").write_text("not an image")
    source = ImageSource.scan(photo_folder, "natural images")
    assert len(source) == 4
    assert list(source.bad) == [str(photo_folder / "broken.jpg")]


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no usable textures found"):
        ImageSource.scan(tmp_path, "textures")


def test_choose_matches_rejection_loop_distribution(tmp_path):
    # Two images larger than 100x100 and one smaller; the reference's loop accepts the small one
    # with probability 0.05 per draw, i.e. weights 1 : 1 : 0.05.
    for name, size in [("a", 200), ("b", 150), ("c", 50)]:
        Image.fromarray(np.zeros((size, size, 3), np.uint8)).save(tmp_path / f"{name}.png")
    source = ImageSource.scan(tmp_path, "natural images")
    rng = np.random.default_rng(0)
    picks = np.bincount([source.choose(rng, 100, 100, 0.05) for _ in range(40000)], minlength=3) / 40000
    assert picks == pytest.approx(np.array([1, 1, 0.05]) / 2.05, abs=0.01)


def test_cache_returns_same_read_only_array_and_is_bounded(photo_folder):
    source = ImageSource.scan(photo_folder, "natural images", cache_bytes=400 * 420 * 3)
    a = source.get(0)
    assert source.get(0) is a and not a.flags.writeable
    for i in range(len(source)):
        source.get(i)
    assert source._cached_bytes <= 400 * 420 * 3 or len(source._cache) == 1


def test_unreadable_image_raises_every_time(photo_folder):
    data = (photo_folder / "photo1.png").read_bytes()
    (photo_folder / "photo1.png").write_bytes(data[:200])
    source = ImageSource.scan(photo_folder, "natural images")
    for _ in range(2):
        with pytest.raises(ImageReadError, match="photo1.png"):
            source.get(1)


def test_builtin_collections_decode():
    photos, textures = default_photos(), default_textures()
    assert len(photos) >= 10 and len(textures) >= 10
    for source in (photos, textures):
        for i, entry in enumerate(source.entries):
            img = source.get(i)
            assert img.shape == (entry.height, entry.width, 3) and img.dtype == np.uint8
    assert any("@" in e.id for e in textures.entries)  # crops are identified by their box
