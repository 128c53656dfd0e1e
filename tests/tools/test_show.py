import argparse
from pathlib import Path

import numpy as np
import pytest

from matseg.io.dataset import find_samples, read_sample, write_sample
from matseg.io.images import read_image_rgb
from matseg.tools import show

PUBLISHED = Path("/work/shared/data/matseg_train_sample")


def half_roi_sample(folder: Path, h: int = 64, w: int = 64):
    """ROI = left half exactly, two materials with a mixed column band inside it."""
    weights = np.zeros((2, h, w), np.float32)
    weights[0, :, : w // 4] = 1.0
    weights[1, :, w // 4 : w // 2] = 1.0
    weights[:, :, w // 4 - 2 : w // 4 + 2] = 0.5  # 50/50 mixture
    roi = weights.sum(0)
    image = np.full((h, w, 3), 200, np.uint8)
    return read_sample(write_sample(folder, image, weights, roi, meta={}))


def test_annotation_mixes_palette_and_is_black_outside_roi(tmp_path):
    s = half_roi_sample(tmp_path / "s")
    annot = show.annotation_rgb(s)
    assert annot.shape == (64, 64, 3) and annot.dtype == np.uint8
    assert np.all(annot[~s.roi] == 0) and (~s.roi).sum() == 64 * 32
    np.testing.assert_array_equal(annot[0, 0], show.PALETTE[0])
    np.testing.assert_array_equal(annot[0, 24], show.PALETTE[1])
    mixed = np.rint((show.PALETTE[0].astype(float) + show.PALETTE[1]) / 2)
    assert np.abs(annot[0, 16].astype(float) - mixed).max() <= 1


def test_contact_sheet_layout(tmp_path):
    samples = [half_roi_sample(tmp_path / f"s{i}") for i in range(3)]
    sheet = show.contact_sheet(samples, height=32)
    assert sheet.shape == (3 * 32, 3 * 32, 3) and sheet.dtype == np.uint8
    annot = sheet[:, 32:64]
    assert np.all(annot[:, 16:] == 0)  # right half of each thumbnail is outside the ROI
    assert annot[:, 2:14].min() > 0  # inside: palette colours
    roi_panel = sheet[:, 64:96]
    assert np.all(roi_panel[:, :16] == 255) and np.all(roi_panel[:, 16:] == 0)
    assert np.any(sheet[:32, :32] != 200)  # label drawn on the image panel
    with pytest.raises(ValueError, match="at least one sample"):
        show.contact_sheet([])


def test_choose_samples_is_seeded():
    folders = [Path(str(i)) for i in range(20)]
    a = show.choose_samples(folders, 5, seed=3)
    assert a == show.choose_samples(folders, 5, seed=3) and len(set(a)) == 5
    assert a == sorted(a, key=lambda p: int(p.name))  # kept in dataset order
    assert show.choose_samples(folders, 30) == folders


def test_show_published(tmp_path, capsys):
    if not PUBLISHED.is_dir():
        pytest.skip(f"published sample data not available at {PUBLISHED}")
    parser = argparse.ArgumentParser(prog="matseg")
    show.add_parser(parser.add_subparsers())
    out = tmp_path / "sheet.png"
    args = parser.parse_args(["show", str(PUBLISHED), "-o", str(out), "-n", "2", "--seed", "1", "--height", "64"])
    assert args.handler is show.run
    assert args.handler(args) == 0
    assert capsys.readouterr().out.strip() == str(out)
    sheet = read_image_rgb(out)
    assert sheet.shape == (2 * 64, 3 * 64, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sheet.png"]  # written atomically, no leftovers

    # The annotation panel of each row is black outside that sample's ROI.
    chosen = show.choose_samples(find_samples(PUBLISHED), 2, seed=1)
    for row, folder in enumerate(chosen):
        s = read_sample(folder)
        thumb_roi = show._resize(s.roi.astype(np.uint8), (64, 64), nearest=True).astype(bool)
        annot = sheet[row * 64 : (row + 1) * 64, 64:128]
        assert np.all(annot[~thumb_roi] == 0)
        assert annot[thumb_roi].any()


# ----------------------------------------------------------------------------- PBR materials and textures


def _run_show(*args: str) -> int:
    parser = argparse.ArgumentParser(prog="matseg")
    show.add_parser(parser.add_subparsers())
    parsed = parser.parse_args(["show", *args])
    return parsed.handler(parsed)


def _pbr_folder(root: Path, count: int = 3) -> Path:
    from matseg.materials.pbr import write_pbr

    rng = np.random.default_rng(0)
    for i in range(count):
        maps = {"color": rng.integers(0, 256, (40, 40, 3), dtype=np.uint8),
                "roughness": rng.integers(0, 256, (40, 40), dtype=np.uint8)}  # fmt: skip
        write_pbr(root / f"mat{i}", maps)
    return root


def _texture_folder(root: Path, count: int = 5) -> Path:
    from PIL import Image

    root.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (30 + 10 * i, 50, 3), dtype=np.uint8)).save(root / f"tex{i}.png")
    return root


def test_detect_kind(tmp_path):
    half_roi_sample(tmp_path / "ds" / "s0")
    assert show.detect_kind(tmp_path / "ds") == "dataset"
    assert show.detect_kind(_pbr_folder(tmp_path / "pbr")) == "pbr"
    textures = _texture_folder(tmp_path / "tex")
    assert show.detect_kind(textures) == "textures"
    # One texture whose name says "color" does not turn a texture folder into a material.
    (textures / "tex0.png").rename(textures / "wood_color.png")
    assert show.detect_kind(textures) == "textures"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="nothing to show"):
        show.detect_kind(tmp_path / "empty")


def test_material_card_and_grid():
    rng = np.random.default_rng(0)
    maps = {"color": rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), "height": np.full((40, 40), 200, np.uint8)}
    card = show.material_card(maps, "a very long material name that cannot fit", tile=64)
    thumb = 2 * 64 // 7
    assert card.shape == (64 + thumb + 12, 128, 3) and card.dtype == np.uint8
    np.testing.assert_array_equal(card[:64, :64], show._resize(maps["color"], (64, 64)))
    strip = card[64 : 64 + thumb]
    assert strip[2, 2 * thumb - 3].min() >= 190  # H thumbnail (away from its label): the height map (200)
    missing = strip[:, 3 * thumb : 4 * thumb]  # M: missing, crossed out on dark grey
    assert (missing == show._CARD_BACKGROUND).mean() > 0.5 and (missing == 90).any()
    sheet = show.grid([card] * 5, columns=2)
    assert sheet.shape == (3 * card.shape[0] + 2 * 2, 2 * 128 + 2, 3)
    with pytest.raises(ValueError, match="share one shape"):
        show.grid([card, card[:10]])


def test_show_pbr_and_texture_folders(tmp_path, capsys):
    pbrs = _pbr_folder(tmp_path / "pbr", 3)
    out = tmp_path / "pbr.png"
    assert _run_show(str(pbrs), "-o", str(out), "--height", "64", "--columns", "3") == 0
    card_h = 64 + 2 * 64 // 7 + 12
    assert read_image_rgb(out).shape == (card_h, 3 * 128 + 2 * 2, 3)
    textures = _texture_folder(tmp_path / "tex", 4)
    (textures / "broken.jpg").write_bytes(b"\xff\xd8\xff not an image")
    out = tmp_path / "tex.png"
    assert _run_show(str(textures), "-o", str(out), "--height", "48", "--columns", "10") == 0
    assert read_image_rgb(out).shape == (48 + 12, 4 * 48 + 3 * 2, 3)  # the broken file is skipped
    assert _run_show(str(pbrs), "-o", str(tmp_path / "t.png"), "--kind", "textures", "-n", "2") == 0
    assert _run_show(str(textures), "-o", str(tmp_path / "x.png"), "--kind", "pbr") == 2
    assert "no PBR material folders" in capsys.readouterr().out


def test_show_published_pbrs_subset_is_seeded(tmp_path):
    pbrs = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "pbr"
    if not pbrs.is_dir():
        pytest.skip(f"reference data {pbrs} not available")
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert _run_show(str(pbrs), "-o", str(a), "-n", "3", "--seed", "2", "--height", "64") == 0
    assert _run_show(str(pbrs), "-o", str(b), "-n", "3", "--seed", "2", "--height", "64") == 0
    assert a.read_bytes() == b.read_bytes()
    assert read_image_rgb(a).shape[1] in (128, 2 * 128 + 2, 3 * 128 + 4)
