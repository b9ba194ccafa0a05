import numpy as np
import pytest
from scipy import ndimage as ndi

from postprocess.refine import RefineParams, refine
from postprocess.steps import (
    add_uncovered,
    centre_instances,
    clean_scale,
    drop_unsupported,
    erode_labels,
    keep_largest_component,
    merge_convex_pairs,
    merge_scales,
    refine_with_foreground,
    touching_pairs,
)
from tests.synthetic import disks
from unet_ensemble.train import centerness_target  # what a perfect centerness U-Net would give


def test_touching_pairs():
    labels = np.array([[1, 1, 2], [0, 0, 2], [3, 0, 0]])
    assert touching_pairs(labels) == {(1, 2)}


def test_split_disk_is_merged_but_two_touching_disks_are_not():
    disk = disks((40, 40), ((20, 20),), 10)
    halves = disk.copy()
    halves[:, 20:][disk[:, 20:] > 0] = 2
    assert merge_convex_pairs(halves).max() == 1
    pair = disks((40, 70), ((20, 20), (20, 41)), 10)  # neighbours touching at a waist
    pair[(pair == 0) & (np.roll(pair, 1, axis=1) == 1) & (np.roll(pair, -1, axis=1) == 2)] = 1
    assert len(touching_pairs(pair)) == 1 and merge_convex_pairs(pair).max() == 2


def test_clean_scale_fills_holes_and_drops_small():
    labels = disks((40, 40), ((15, 15),), 8)
    labels[15, 15] = 0  # a hole
    labels[35, 35] = 2  # a speck
    cleaned = clean_scale(labels, min_size=10)
    assert cleaned.max() == 1 and cleaned[15, 15] == 1 and cleaned[35, 35] == 0


def test_merge_scales_prefers_target_size_and_skips_covered_objects():
    small = disks((60, 60), ((20, 20), (20, 32)), 5)  # the object split in two at one scale
    whole = np.zeros((60, 60), np.int32)
    whole[12:29, 12:41] = 1  # the same object whole at the other scale
    merged = merge_scales([small, whole], target_area=whole.sum(), scale_th=0.5)
    assert merged.max() == 1 and (merged > 0).sum() == whole.sum()
    # small pieces are closer to this target; the big one is then a third covered
    assert merge_scales([small, whole], target_area=np.pi * 25, scale_th=0.3).max() == 2  # rejected
    assert merge_scales([small, whole], target_area=np.pi * 25, scale_th=0.5).max() == 3  # takes its uncovered rest


def test_erode_and_refine_with_foreground():
    labels = np.zeros((20, 20), np.int32)
    labels[5:15, 5:15] = 1
    assert (erode_labels(labels, 1) > 0).sum() == 64
    foreground = np.zeros((20, 20), bool)
    foreground[4:16, 5:15] = True  # U-Net extends the object up and down by one pixel, not sideways
    refined = refine_with_foreground(labels, foreground, erode=1, dilate=1)
    assert (refined > 0).sum() == 120  # 8x8 core + ring pixels on foreground: 12x10 - (none outside)
    assert refined[4, 10] == 1 and refined[10, 4] == 0 and refined[10, 5] == 1


def test_keep_largest_component_keeps_the_largest_not_the_first():
    labels = np.zeros((20, 20), np.int32)
    labels[0:2, 0:2] = 1  # small piece, found first
    labels[10:18, 10:18] = 1  # large piece
    kept = keep_largest_component(labels, min_area=1)
    assert kept[0, 0] == 0 and kept[12, 12] == 1
    assert keep_largest_component(labels, min_area=1000)[0, 0] == 1  # below max_v: untouched


def test_drop_unsupported():
    labels = np.zeros((30, 30), np.int32)
    labels[0:5, 0:5] = 1  # 25 px, supported
    labels[10:15, 10:15] = 2  # 25 px, unsupported
    labels[20:30, 20:30] = 3  # 100 px, unsupported but >= 4 x c_area
    labels[0:2, 20:22] = 4  # 4 px: too small
    foreground = np.zeros((30, 30), bool)
    foreground[0:5, 0:5] = True
    foreground[0:2, 20:22] = True
    kept = drop_unsupported(labels, foreground, min_overlap=0.5, min_area=25)
    assert kept[0, 0] > 0 and kept[12, 12] == 0 and kept[25, 25] > 0 and kept[0, 20] == 0


def test_refine_end_to_end_and_median_rule():
    truth = disks((80, 80), ((25, 25), (55, 55)), 9)
    probability = (truth > 0).astype(np.float32)
    split = truth.copy()
    split[:, 25:][truth[:, 25:] == 1] = 3
    params = RefineParams(prob_th=16, min_size=20, c_area=20)
    result = refine([split, truth], probability, diameter=10.0, target_diameter=19.0, params=params)
    assert result.max() == 2
    only_first = refine([split, np.zeros_like(truth)], probability, diameter=40.0, target_diameter=19.0, params=params)
    assert only_first.max() == 2  # first scale cleaned: the split nucleus merged back
    with pytest.raises(ValueError, match="one resolution"):
        refine([truth], probability[:10], 10.0, 19.0, params)


def test_centre_instances_split_a_clump_the_foreground_merges():
    truth = disks((50, 70), ((25, 22), (25, 40)), 10)  # two overlapping nuclei: one foreground blob
    foreground = truth > 0
    assert ndi.label(foreground)[1] == 1
    found = centre_instances(foreground, centerness_target(truth), seed_th=0.5)
    assert found.max() == 2 and np.array_equal(found > 0, foreground)
    assert found[25, 22] != found[25, 40] and (found[truth == 1] == found[25, 22]).mean() > 0.95
    assert centre_instances(foreground, centerness_target(truth), seed_th=1.01).max() == 0


def test_add_uncovered_adds_only_what_is_missing():
    labels = disks((40, 80), ((20, 20),), 8)
    extra = disks((40, 80), ((20, 22), (20, 60)), 8)  # the first one overlaps the existing object
    added = add_uncovered(labels, extra, max_covered=0.3)
    assert added.max() == 2 and added[20, 20] == 1 and added[20, 60] == 2
    assert np.array_equal(added == 1, labels == 1)  # the existing object is untouched
    assert add_uncovered(labels, extra, max_covered=0.0).max() == 1  # 0: nothing is ever added


def test_refine_adds_the_nuclei_the_presegmenter_missed_when_asked():
    truth = disks((60, 90), ((30, 20), (30, 50), (30, 68)), 9)
    found = np.where(truth == 1, 1, 0)  # the presegmenter found one of three
    probability = (truth > 0).astype(np.float32)
    params = RefineParams(prob_th=16, min_size=20, c_area=20, dilate=0, add_th=0.5, seed_th=0.5)
    result = refine([found], probability, 10.0, 19.0, params, centerness=centerness_target(truth))
    assert result.max() == 3 and result[30, 50] != result[30, 68]
    assert refine([found], probability, 10.0, 19.0, RefineParams(prob_th=16, min_size=20, c_area=20, dilate=0), centerness_target(truth)).max() == 1
    assert refine([found], probability, 10.0, 19.0, params).max() == 1  # no centerness map: the reference refinement
