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
