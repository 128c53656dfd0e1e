import itertools

import numpy as np
import pytest

from matseg.evaluate.metrics import (
    AnchorScores,
    aggregate_images,
    cosine_maps,
    descriptor_similarity,
    disc_means,
    disc_windows,
    evaluate_points,
    mode_ground_truth,
    point_descriptors,
    reference_anchor_scores,
    summarize_anchors,
    triplet_anchor_scores,
)

# materials A, B partially similar ([A,B] -> 0.6), C unrelated
MAT_SIM = np.array([[1.0, 0.6, 0.0], [0.6, 1.0, 0.0], [0.0, 0.0, 1.0]])


def _three_level_case():
    """Anchor 0 (A); others: p1 = A (gt 1), p2 = C (gt 0), p3, p4 = B (gt 0.6).
    The prediction ranks them p1 > p2 > p3 > p4, i.e. GT sequence [1, 0, 0.6, 0.6]."""
    labels = np.array([0, 0, 2, 1, 1])
    pred = np.eye(5)
    pred[0] = [1.0, 0.9, 0.8, 0.7, 0.6]
    return pred, mode_ground_truth(MAT_SIM, labels, "all"), labels


def test_three_levels_hand_computed():
    pred, gt, _ = _three_level_case()
    # paper: 5 triplets with different GT: (p1,p2) ok, (p1,p3) ok, (p1,p4) ok, (p3,p2) wrong, (p4,p2) wrong -> 3/5
    assert triplet_anchor_scores(pred, gt).accuracy[0] == pytest.approx(0.6)
    # reference: p=1 (w1): 1; p=0 (w0): 1 - 2/3; p=0.6: 1 - 1/2 each -> mean 7/12
    assert reference_anchor_scores(pred, gt).accuracy[0] == pytest.approx(7 / 12)
    assert triplet_anchor_scores(pred, gt).top1[0] == 1.0
    assert reference_anchor_scores(pred, gt).top1[0] == 1.0


def test_soft_only_counts_partial_triplets():
    pred, gt, _ = _three_level_case()
    # triplets with a partially similar point: (p1,p3) ok, (p1,p4) ok, (p3,p2) wrong, (p4,p2) wrong
    assert triplet_anchor_scores(pred, gt, soft_only=True).accuracy[0] == pytest.approx(0.5)
    assert triplet_anchor_scores(pred, gt, soft_only=True).triplets[0] == 4
    assert reference_anchor_scores(pred, gt, soft_only=True).accuracy[0] == pytest.approx(0.5)


def test_excluded_points_leave_the_anchor_triplets():
    pred, gt, _ = _three_level_case()
    exclude = np.zeros_like(pred, dtype=bool)
    exclude[0, 2] = True  # e.g. a negative prompt point of a SAM-like model
    scores = triplet_anchor_scores(pred, gt, exclude=exclude)
    assert scores.accuracy[0] == 1.0 and scores.triplets[0] == 2


def test_predicted_ties_get_half_credit_and_fractional_top1():
    labels = np.array([0, 0, 1, 1])
    gt = mode_ground_truth(np.eye(2), labels, "all")
    pred = np.zeros((4, 4))
    scores = triplet_anchor_scores(pred, gt)
    assert np.allclose(scores.accuracy, 0.5)
    assert np.allclose(scores.top1, 1 / 3)  # one of the three tied points has the anchor's material
    # the reference variant breaks ties by point order: material 0 comes first, so its anchors
    # look perfect and material 1's look completely wrong, an order artefact
    assert np.allclose(reference_anchor_scores(pred, gt).accuracy, [1.0, 1.0, 0.0, 0.0])


def test_paper_variant_does_not_depend_on_point_order():
    rng = np.random.default_rng(1)
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    pred = np.round(rng.random((8, 8)), 1)  # many ties
    gt = mode_ground_truth(MAT_SIM, labels, "all")
    perm = rng.permutation(8)
    a = triplet_anchor_scores(pred, gt)
    b = triplet_anchor_scores(pred[np.ix_(perm, perm)], gt[np.ix_(perm, perm)])
    assert np.allclose(a.accuracy[perm], b.accuracy) and np.allclose(a.top1[perm], b.top1)


def _literal_reference(pred, gt, soft_only):
    """Evaluate.py's soft branch written as loops, straight from the digest (§1.10 step 3)."""
    n = len(pred)
    acc = np.full(n, np.nan)
    for a in range(n):
        order = sorted((j for j in range(n) if j != a), key=lambda j: -pred[a, j])
        w = [1.0] + [gt[a, j] for j in order]
        values = []
        for p2 in range(1, len(w)):
            if soft_only and w[p2] in (0.0, 1.0):
                continue
            errors = sum(w[p2] > w[j] for j in range(p2)) + sum(w[p2] < w[j] for j in range(p2, len(w)))
            possible = sum(w[j] != w[p2] for j in range(1, len(w)))
            if possible:
                values.append(1 - errors / possible)
        if values:
            acc[a] = np.mean(values)
    return acc


def _literal_paper(pred, gt, soft_only):
    n = len(pred)
    acc = np.full(n, np.nan)
    for a in range(n):
        correct = valid = 0.0
        for j, k in itertools.permutations([i for i in range(n) if i != a], 2):
            partial = 0 < gt[a, j] < 1 or 0 < gt[a, k] < 1
            if gt[a, j] > gt[a, k] and (partial or not soft_only):
                valid += 1
                correct += 1.0 if pred[a, j] > pred[a, k] else 0.5 if pred[a, j] == pred[a, k] else 0.0
        if valid:
            acc[a] = correct / valid
    return acc


def _noisy_descriptors(labels, noise, seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 8))
    centres[1] = 0.6 * centres[0] + 0.4 * centres[1]  # B lies between A and C... closer to A
    return centres[labels] + noise * rng.normal(size=(len(labels), 8))


@pytest.mark.parametrize("noise", [0.5, 1.0, 2.0])
def test_vectorised_scores_match_the_literal_definitions(noise):
    labels = np.array([0] * 9 + [1] * 4 + [2] * 6)  # the digest's synthetic 3-level case: 9 + 4 + 6 points
    pred = descriptor_similarity(_noisy_descriptors(labels, noise, 7))
    for mode in ("all", "soft", "hard"):
        gt = mode_ground_truth(MAT_SIM, labels, mode)
        soft = mode == "soft"
        assert np.allclose(reference_anchor_scores(pred, gt, soft).accuracy, _literal_reference(pred, gt, soft), equal_nan=True)
        assert np.allclose(triplet_anchor_scores(pred, gt, soft).accuracy, _literal_paper(pred, gt, soft), equal_nan=True)


def test_variants_agree_with_two_levels_and_differ_slightly_with_three():
    labels = np.array([0] * 9 + [1] * 4 + [2] * 6)
    differences = []
    for seed, noise in itertools.product(range(3), (0.5, 1.0, 2.0)):
        pred = descriptor_similarity(_noisy_descriptors(labels, noise, seed))
        two = mode_ground_truth(MAT_SIM, labels, "hard")
        assert np.allclose(triplet_anchor_scores(pred, two).accuracy, reference_anchor_scores(pred, two).accuracy)
        three = mode_ground_truth(MAT_SIM, labels, "all")
        paper = np.nanmean(triplet_anchor_scores(pred, three).accuracy)
        ref = np.nanmean(reference_anchor_scores(pred, three).accuracy)
        differences.append(abs(paper - ref))
    assert max(differences) > 1e-4  # not the same metric with partial similarities...
    assert max(differences) < 0.02  # ...but close (digest: 0.9536 vs 0.9546 etc.)


def test_two_levels_equal_rank_auc_over_several_anchor_blocks():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 4, size=300)  # 300 points: the anchors are processed in several blocks
    pred = descriptor_similarity(rng.normal(size=(300, 5)) + np.eye(5)[labels % 5] * 1.5)
    gt = mode_ground_truth(np.eye(4), labels, "all")
    scores = triplet_anchor_scores(pred, gt)
    for a in (0, 150, 299):
        same = (labels == labels[a]) & (np.arange(300) != a)
        auc = (pred[a, same][:, None] > pred[a, ~same & (np.arange(300) != a)][None, :]).mean()
        assert scores.accuracy[a] == pytest.approx(auc)
    assert np.allclose(scores.accuracy, reference_anchor_scores(pred, gt).accuracy)


def test_summarize_point_and_material_means():
    scores = AnchorScores(np.array([1.0, 0.5, 0.0, np.nan]), np.array([1.0, 0.0, 0.0, np.nan]), np.array([3, 3, 3, 0]))
    out = summarize_anchors(scores, np.array([0, 0, 1, 1]))
    assert out["triplet_point"] == pytest.approx(0.5)
    assert out["triplet_material"] == pytest.approx((0.75 + 0.0) / 2)
    assert out["top1_point"] == pytest.approx(1 / 3) and out["top1_material"] == pytest.approx(0.25)
    assert out["anchors"] == 3 and out["materials"] == 2 and out["triplets"] == 9


def test_single_material_image_is_skipped_with_a_reason():
    labels = np.zeros(5, dtype=int)
    results = evaluate_points(np.random.default_rng(0).random((5, 5)), np.eye(1), labels, has_relations=True)
    for mode in ("all", "soft", "hard"):
        for variant in ("paper", "reference"):
            assert "one material" in results[mode][variant]["skipped"]
    agg = aggregate_images([results])
    assert agg["all"]["paper"]["images"] == 0 and np.isnan(agg["all"]["paper"]["triplet_point"])


def test_image_without_relations_has_no_soft_score_and_all_equals_hard():
    labels = np.array([0, 0, 0, 1, 1, 2])
    pred = descriptor_similarity(np.random.default_rng(4).normal(size=(6, 3)))
    results = evaluate_points(pred, np.eye(3), labels, has_relations=False)
    assert results["soft"]["paper"] == {"skipped": "no group_relations.txt"}
    assert results["all"]["paper"] == results["hard"]["paper"]


def test_aggregate_is_the_mean_over_images():
    labels = np.array([0, 0, 1, 1])
    good = evaluate_points(np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], float), np.eye(2), labels, False)
    flat = evaluate_points(np.zeros((4, 4)), np.eye(2), labels, False)
    agg = aggregate_images([good, flat])
    assert agg["hard"]["paper"]["triplet_point"] == pytest.approx((1.0 + 0.5) / 2)
    assert agg["hard"]["paper"]["images"] == 2 and agg["soft"]["paper"]["images"] == 0


def test_disc_pixels_and_point_descriptors():
    (rows, cols, mask), = disc_windows(np.array([[5.0, 5.0, 2.0]]), (12, 12))
    assert mask.sum() == 13  # pixels with dx^2 + dy^2 <= 4
    # left half points along +x, right half along +y; a disc centred on the border mixes them equally
    desc = np.zeros((20, 20, 2), dtype=np.float32)
    desc[:, :10, 0] = 3.0
    desc[:, 10:, 1] = 0.5  # scale does not matter: pixel descriptors are normalised first
    vectors = point_descriptors(desc, np.array([[4.0, 10.0, 2.0], [9.5, 10.0, 3.0]]))
    assert np.allclose(vectors[0], [1.0, 0.0])
    assert np.allclose(vectors[1], [np.sqrt(0.5), np.sqrt(0.5)])
    # a disc smaller than a pixel is the nearest pixel; a disc at the border is clipped
    (_, _, tiny), (_, _, edge) = disc_windows(np.array([[3.2, 3.9, 0.1], [0.0, 0.0, 2.0]]), (8, 8))
    assert tiny.sum() == 1 and edge.sum() == 6


def test_disc_means_and_cosine_maps():
    maps = np.stack([np.tile(np.arange(10, dtype=np.float32), (10, 1)), np.ones((10, 10), np.float32)])
    means = disc_means(maps, np.array([[4.0, 4.0, 1.0], [0.0, 9.0, 0.0]]))
    assert np.allclose(means, [[4.0, 0.0], [1.0, 1.0]])
    desc = np.zeros((4, 5, 2), np.float32)
    desc[..., 0] = 1.0
    desc[:, 3:, :] = (0.0, 2.0)
    sim = cosine_maps(desc, np.array([1.0, 0.0]))
    assert sim.shape == (4, 5) and np.allclose(sim[:, :3], 1.0) and np.allclose(sim[:, 3:], 0.0)


def test_points_outside_the_map_are_refused():
    with pytest.raises(ValueError, match="outside"):
        point_descriptors(np.ones((10, 10, 2), np.float32), np.array([[12.0, 3.0, 2.0]]))
    with pytest.raises(ValueError, match="square"):
        triplet_anchor_scores(np.zeros((3, 3)), np.zeros((3, 4)))
