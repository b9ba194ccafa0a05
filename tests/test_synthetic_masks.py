"""Synthetic masks follow the real shapes' sizes and density, never overlap, and are seeded."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from style_transfer.config import SyntheticMaskConfig
from style_transfer.synthetic_masks import ShapeBank, collect_shapes, synthesize_mask, transformed_shape
from tests.synthetic import disks


def ellipses(seed, shape=(200, 200), count=12):
    """Label image of non-overlapping ellipses of about 150-300 px."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.int32)
    for k in range(1, count + 1):
        cy, cx = rng.integers(15, shape[0] - 15, 2)
        a, b = rng.uniform(6, 11), rng.uniform(5, 8)
        region = ((yy - cy) / a) ** 2 + ((xx - cx) / b) ** 2 <= 1
        if not labels[region].any():
            labels[region] = k
    return labels


@pytest.fixture
def bank():
    return collect_shapes([ellipses(seed) for seed in range(4)])


def test_bank_keeps_whole_objects_and_density(bank):
    cut = disks((100, 100), ((5, 50), (50, 50)), 10)  # the first disk is cut by the border
    small_bank = collect_shapes([cut])
    assert len(small_bank.shapes) == 1 and small_bank.density == pytest.approx(2 / 100**2)
    assert 150 <= np.median(bank.areas) <= 300
    with pytest.raises(ValueError, match="no whole nucleus"):
        collect_shapes([np.zeros((50, 50), np.int32)])


def test_transform_keeps_area_and_rotates():
    bar = np.zeros((10, 40), bool)
    bar[2:8, 2:38] = True
    turned = transformed_shape(bar, area=bar.sum() * 4, angle=90)
    assert turned.shape[0] > turned.shape[1]  # a horizontal bar turned upright
    assert turned.sum() == pytest.approx(bar.sum() * 4, rel=0.1)


def test_masks_follow_the_bank_and_never_overlap(bank):
    cfg = SyntheticMaskConfig(size=256, touching_probability=0.0)
    rng = np.random.default_rng(3)
    masks = [synthesize_mask(bank, cfg, rng) for _ in range(8)]
    expected = bank.density * 256**2
    assert 0.8 * expected <= np.mean([m.max() for m in masks]) <= 1.2 * expected  # object count from the density
    labels = masks[0]
    count = labels.max()
    areas = np.bincount(labels.ravel())[1:]
    assert np.all(areas > 0) and 0.6 * np.median(bank.areas) <= np.median(areas) <= 1.4 * np.median(bank.areas)
    _, pieces = ndi.label(labels > 0)
    assert pieces == count  # no touching at probability 0: every nucleus is its own connected blob
    for k in range(1, count + 1):
        assert ndi.label(labels == k)[1] == 1


def test_touching_probability_lets_nuclei_touch(bank):
    crowded = ShapeBank(bank.shapes, bank.areas, density=bank.density * 4)
    labels = synthesize_mask(crowded, SyntheticMaskConfig(size=256, touching_probability=1.0), np.random.default_rng(0))
    assert ndi.label(labels > 0)[1] < labels.max()  # some nuclei merged into one blob: they touch


def test_same_seed_same_mask(bank):
    cfg = SyntheticMaskConfig(size=128)
    first = synthesize_mask(bank, cfg, np.random.default_rng(7))
    np.testing.assert_array_equal(first, synthesize_mask(bank, cfg, np.random.default_rng(7)))
    assert not np.array_equal(first, synthesize_mask(bank, cfg, np.random.default_rng(8)))
