import numpy as np

from presegment.consensus import SoftInstance, mask_iou, vote


def square(score, top, left, size=10, value=1.0):
    return SoftInstance(score, top, left, np.full((size, size), value, np.float32))


def test_mask_iou_of_shifted_squares():
    assert mask_iou(square(1, 0, 0), square(1, 0, 0)) == 1.0
    assert mask_iou(square(1, 0, 0), square(1, 0, 5)) == 50 / 150
    assert mask_iou(square(1, 0, 0), square(1, 20, 20)) == 0.0


def test_vote_keeps_what_the_views_agree_on_and_averages_it():
    views = [
        [square(0.9, 0, 0), square(0.95, 40, 40)],
        [square(0.8, 1, 0), square(0.9, 40, 41)],
        [square(0.7, 0, 1)],  # the second nucleus is missed in this view
    ]
    found = sorted(vote(views, score_threshold=0.7), key=lambda i: i.top)
    assert len(found) == 1  # the second: (0.95 + 0.9 + 0) / 3 = 0.62 < 0.7
    first = found[0]
    assert np.isclose(first.score, 0.8)
    assert (first.top, first.left, first.mask.shape) == (0, 0, (11, 11))
    assert np.isclose(first.mask[5, 5], 1.0) and np.isclose(first.mask[0, 10], 1 / 3) and first.mask[10, 10] == 0
    assert len(vote(views, score_threshold=0.6)) == 2


def test_vote_takes_at_most_one_instance_per_view():
    # two overlapping instances of one view never join the same group
    views = [[square(0.9, 0, 0), square(0.85, 0, 1)], [square(0.9, 0, 0)]]
    found = vote(views, score_threshold=0.0)
    assert len(found) == 2
    assert sorted(round(i.score, 3) for i in found) == [0.425, 0.9]
