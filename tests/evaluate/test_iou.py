import numpy as np
import pytest
from PIL import Image

from matseg.evaluate.iou import (
    MaskDatasetError,
    best_iou,
    load_mask_image,
    read_label_map,
    sample_segment_points,
    scan_mask_dataset,
)
from matseg.io.dataset import read_sample, sample_visible_materials


def _brute_force(sim, target, valid):
    best = (0.0, np.inf)
    for t in np.unique(sim[valid]):
        pred = (sim >= t) & valid
        inter = (pred & target & valid).sum()
        union = ((pred | target) & valid).sum()
        iou = inter / union
        if iou > best[0] or (iou == best[0] and t > best[1]):
            best = (iou, t)
    return best


def test_hand_computed_threshold():
    sim = np.array([[0.9, 0.8], [0.1, 0.7]])
    target = np.array([[True, True], [False, False]])
    assert best_iou(sim, target) == (1.0, 0.8)
    # candidates 0.9 (IoU 1/2) and 0.5 (includes the 0.8 false positive: IoU 2/3)
    assert best_iou(np.array([[0.9, 0.5], [0.8, 0.1]]), target) == pytest.approx((2 / 3, 0.5))


@pytest.mark.parametrize("seed", range(6))
def test_exact_search_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    shape = (17, 23)
    sim = np.round(rng.normal(size=shape), 1)  # many ties
    target = rng.random(shape) < 0.3 + 0.05 * seed
    valid = rng.random(shape) < 0.85 if seed % 2 else np.ones(shape, bool)
    iou, thr = best_iou(sim, target, valid)
    ref_iou, ref_thr = _brute_force(sim, target, valid)
    assert iou == pytest.approx(ref_iou) and thr == ref_thr


def test_degenerate_inputs():
    assert np.isnan(best_iou(np.zeros((3, 3)), np.zeros((3, 3), bool))[0])
    assert best_iou(np.zeros((3, 3)), np.ones((3, 3), bool)) == (1.0, 0.0)
    with pytest.raises(ValueError, match="one shape"):
        best_iou(np.zeros((3, 3)), np.zeros((3, 4), bool))


def test_sampled_points_lie_inside_and_are_reproducible():
    seg = np.zeros((30, 40), bool)
    seg[5:10, 20:35] = True
    region = np.ones_like(seg)
    region[:, 30:] = False
    a = sample_segment_points(seg, 20, np.random.default_rng(3), region)
    b = sample_segment_points(seg, 20, np.random.default_rng(3), region)
    assert np.array_equal(a, b) and len(np.unique(a, axis=0)) == 20
    assert seg[a[:, 1].astype(int), a[:, 0].astype(int)].all() and (a[:, 0] < 30).all()
    assert len(sample_segment_points(seg, 500, np.random.default_rng(0))) == seg.sum()


def _label_dataset(tmp_path, labels, rgb_labels=False):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    h, w = labels.shape
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(tmp_path / "images" / "x.jpg")
    if rgb_labels:
        colours = np.array([(0, 0, 0), (0, 255, 0), (255, 0, 0)], np.uint8)
        Image.fromarray(colours[labels]).save(tmp_path / "labels" / "x.png")
    else:
        Image.fromarray(labels.astype(np.uint8)).save(tmp_path / "labels" / "x.png")
    return tmp_path


def test_label_map_layout_background_ignore_and_small_segments(tmp_path):
    labels = np.zeros((40, 60), np.uint8)
    labels[:, 30:] = 1
    labels[:20, :30] = 2
    labels[0, 0] = 7  # one pixel: too small
    labels[39, :10] = 255  # void border
    (entry,) = scan_mask_dataset(_label_dataset(tmp_path, labels))
    assert entry.layout == "labels"
    # Defaults: 0 is background (no segment, but scored as negative); 255 is just another label.
    image = load_mask_image(entry, max_size=None, min_segment_pixels=10)
    assert image.segment_names == ["1", "2", "255"] and "7" in image.skipped_segments
    assert image.valid.all()
    assert image.segments[0].sum() == 40 * 30 and image.segments[1].sum() == 20 * 30 - 1
    # An explicit ignore value excludes its pixels from scoring; background stays scored.
    voided = load_mask_image(entry, max_size=None, ignore_label=255, min_segment_pixels=10)
    assert voided.segment_names == ["1", "2"]
    assert np.array_equal(voided.valid, labels != 255) and voided.valid[labels == 0].all()
    everything = load_mask_image(entry, max_size=None, background_label=None, min_segment_pixels=10)
    assert everything.segment_names == ["0", "1", "2", "255"] and everything.valid.all()
    # The same value as background and ignore: ignored (the old single-knob behaviour, asked for explicitly).
    old_style = load_mask_image(entry, max_size=None, ignore_label=0, min_segment_pixels=10)
    assert old_style.segment_names == ["1", "2", "255"] and np.array_equal(old_style.valid, labels != 0)
    half = load_mask_image(entry, max_size=30, min_segment_pixels=10)
    assert half.image.shape == (20, 30, 3) and half.segments.shape == (2, 20, 30)  # "255" now too small


def test_background_false_positives_lower_the_iou_on_a_binary_dataset(tmp_path):
    """Background + one class: a map that also fires on the background must not score 1."""
    labels = np.zeros((20, 20), np.uint8)
    labels[:, :5] = 1
    (entry,) = scan_mask_dataset(_label_dataset(tmp_path, labels))
    image = load_mask_image(entry, max_size=None, min_segment_pixels=1)
    (segment,) = image.segments
    flat = np.ones((20, 20))  # cannot tell the segment from the background
    assert best_iou(flat, segment, image.valid)[0] == pytest.approx(100 / 400)
    noisy = np.random.default_rng(0).random((20, 20))
    assert best_iou(noisy, segment, image.valid)[0] < 0.5


def test_rgb_label_maps_map_colours_to_labels(tmp_path):
    labels = np.zeros((10, 12), np.uint8)
    labels[:, 6:] = 2
    labels[:3, :3] = 1
    _label_dataset(tmp_path, labels, rgb_labels=True)
    read = read_label_map(tmp_path / "labels" / "x.png")
    assert np.array_equal(read, labels)  # black -> 0, then colours numbered by packed RGB value (0x00ff00 < 0xff0000)


def test_label_map_size_mismatch_names_the_file(tmp_path):
    _label_dataset(tmp_path, np.ones((10, 12), np.uint8))
    Image.fromarray(np.ones((12, 10), np.uint8)).save(tmp_path / "labels" / "x.png")
    (entry,) = scan_mask_dataset(tmp_path)
    with pytest.raises(MaskDatasetError, match=r"x\.png: size 10x12 .* EXIF"):
        load_mask_image(entry)


def test_folders_of_image_and_binary_masks(tmp_path):
    folder = tmp_path / "scene_a"
    folder.mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(folder / "image.png")
    m1 = np.zeros((20, 30), np.uint8)
    m1[:, :10] = 255
    m2 = np.zeros((20, 30), np.uint8)
    m2[:, 5:] = 200  # overlaps mask1: allowed
    Image.fromarray(m1).save(folder / "mask1.png")
    Image.fromarray(m2).save(folder / "mask2.png")
    bad = tmp_path / "scene_b"
    bad.mkdir()
    Image.fromarray(m1).save(bad / "mask1.png")
    entries = scan_mask_dataset(tmp_path)
    assert [(e.name, e.layout) for e in entries] == [("scene_a", "masks"), ("scene_b", "masks")]
    image = load_mask_image(entries[0], min_segment_pixels=1)
    assert image.segment_names == ["mask1", "mask2"] and image.valid.all()
    assert image.segments[0].sum() == 200 and image.segments[1].sum() == 500
    with pytest.raises(MaskDatasetError, match="no image next to the mask files"):
        load_mask_image(entries[1])
    with pytest.raises(MaskDatasetError, match="no mask dataset found"):
        (tmp_path / "empty").mkdir()
        scan_mask_dataset(tmp_path / "empty")


def test_matseg_samples_made_by_synth2d(synth_masks):
    entries = scan_mask_dataset(synth_masks)
    assert [e.layout for e in entries] == ["matseg"] * 3
    sample = read_sample(entries[0].annotation)
    image = load_mask_image(entries[0], max_size=None, min_segment_pixels=1)
    assert np.array_equal(image.valid, sample.roi)
    dominant = sample.fractions.argmax(axis=0)
    for name, seg in zip(image.segment_names, image.segments):
        index = sample.mask_names.index(f"{name}.png")
        assert np.array_equal(seg, sample.roi & (dominant == index))
    assert len(image.segments) >= len(sample_visible_materials(sample))
