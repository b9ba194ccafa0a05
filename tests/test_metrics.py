import numpy as np
import pytest

from tests.synthetic import disks
from workflow.core.metrics import iou_matrix, mean_scores, score_image


def squares(*boxes, shape=(40, 40)):
    labels = np.zeros(shape, np.int32)
    for k, (y0, y1, x0, x1) in enumerate(boxes, start=1):
        labels[y0:y1, x0:x1] = k
    return labels


def test_perfect_match_scores_one():
    truth = disks()
    s = score_image(truth, truth * 7)  # label values need not agree
    assert s.dsb == 1.0 and s.ap50 == 1.0 and s.f1 == 1.0 and s.mean_matched_iou == 1.0 and s.n_matched == 3


def test_iou_0_8_counts_below_0_8_only():
    truth = squares((0, 10, 0, 10))
    pred = squares((0, 10, 0, 8))  # IoU 80/100 = 0.8
    s = score_image(truth, pred)
    # matched for t = 0.50 .. 0.75 (6 of 10 thresholds), not for t >= 0.80 (IoU must exceed t)
    assert s.dsb == pytest.approx(0.6)
    assert s.mean_matched_iou == pytest.approx(0.8)


def test_one_split_nucleus():
    truth = squares((0, 10, 0, 10), (20, 30, 20, 30))
    pred = squares((0, 10, 0, 5), (0, 10, 5, 10), (20, 30, 20, 30))  # halves have IoU 0.5: no match
    s = score_image(truth, pred)
    # TP 1, FP 2, FN 1 at every threshold
    assert s.dsb == pytest.approx(0.25) and s.ap50 == pytest.approx(0.25)
    assert s.precision == pytest.approx(1 / 3) and s.recall == pytest.approx(0.5) and s.f1 == pytest.approx(0.4)


def test_one_merged_pair():
    truth = squares((0, 10, 0, 10), (0, 10, 10, 20), (20, 30, 20, 30))
    pred = squares((0, 10, 0, 20), (20, 30, 20, 30))
    s = score_image(truth, pred)
    # TP 1, FP 1, FN 2
    assert s.dsb == pytest.approx(0.25) and s.precision == pytest.approx(0.5) and s.recall == pytest.approx(1 / 3)


def test_empty_cases():
    truth = disks()
    empty = np.zeros_like(truth)
    for s in (score_image(truth, empty), score_image(empty, truth)):
        assert s.dsb == 0.0 and s.f1 == 0.0 and s.precision == 0.0 and s.recall == 0.0
    both = score_image(empty, empty)
    assert both.dsb == 1.0 and both.ap50 == 1.0 and both.n_true == 0


def test_iou_matrix_matches_brute_force_on_many_objects(rng):
    truth = rng.integers(0, 30, (60, 60))
    pred = rng.integers(0, 25, (60, 60))
    iou = iou_matrix(truth, pred)
    for i, g in enumerate(np.unique(truth)[1:][:5]):
        for j, p in enumerate(np.unique(pred)[1:][:5]):
            a, b = truth == g, pred == p
            assert iou[i, j] == pytest.approx((a & b).sum() / (a | b).sum())


def test_shape_mismatch_and_mean():
    with pytest.raises(ValueError):
        iou_matrix(np.zeros((3, 3), int), np.zeros((3, 4), int))
    truth = disks()
    means = mean_scores([score_image(truth, truth), score_image(truth, np.zeros_like(truth))])
    assert means["dsb"] == 0.5
