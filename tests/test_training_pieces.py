import numpy as np
import pytest
import torch
from skimage.measure import regionprops
from torch import nn

from tests.synthetic import disks, nucleus_image
from workflow.core.augment import (
    AugmentConfig,
    CropSampler,
    augment_pair,
    flip_rot90,
    random_crop,
    recolour,
    rotate_hue,
    sampling_weights,
    stain_jitter,
    stretched_crop,
)
from workflow.core.images import to_rgb8
from workflow.core.optim import TrainingRun, make_optimizer, warmup_cosine


def test_learning_rate_warms_up_then_decays():
    assert warmup_cosine(0, 1000, 100) == pytest.approx(0.01)
    assert warmup_cosine(99, 1000, 100) == pytest.approx(1.0)
    assert warmup_cosine(550, 1000, 100) == pytest.approx(0.505, abs=1e-3)
    assert warmup_cosine(1000, 1000, 100) == pytest.approx(0.01)


def test_learning_rate_follows_the_time_limit_when_it_comes_first():
    assert warmup_cosine(550, 1000, 100, time_used=0.5) == pytest.approx(0.505, abs=1e-3)  # iterations lead: no change
    assert warmup_cosine(200, 1000, 100, time_used=0.5) == pytest.approx(0.505, abs=1e-3)  # time leads
    assert warmup_cosine(200, 1000, 100, time_used=1.2) == pytest.approx(0.01)
    assert warmup_cosine(50, 1000, 100, time_used=0.9) == pytest.approx(0.51)  # warm-up is counted in steps


def test_training_run_decays_its_rate_with_the_time_spent(tmp_path, rng):
    cfg = type(
        "Cfg",
        (),
        {"optimizer": "adamw", "learning_rate": 1e-3, "weight_decay": 0.0, "iterations": 10**6, "warmup_iterations": 1, "max_minutes": 1.0, "val_every": 5},
    )()
    run = TrainingRun(nn.Linear(2, 2), cfg, tmp_path, rng, torch.device("cpu"), resume=True)
    run._started -= 30  # half the time limit already spent
    run.step(run.model.weight.sum())
    assert run.time_used == pytest.approx(0.5, abs=0.01)
    assert run.learning_rate == pytest.approx(1e-3 * 0.505, rel=0.02)
    assert run.minutes_left == pytest.approx(0.5, abs=0.01)  # the time limit comes long before 10**6 iterations
    cfg.max_minutes, cfg.iterations = None, 3
    assert run.minutes_left == pytest.approx(2 * 0.5, abs=0.02)  # two iterations left at half a minute each


def test_make_optimizer_by_name():
    model = nn.Linear(2, 2)
    assert type(make_optimizer(model, "sgd", 0.1, 0.0)).__name__ == "SGD"
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer(model, "lion", 0.1, 0.0)


def test_training_run_resumes_and_ranks_by_the_score_even_from_an_older_checkpoint(tmp_path, rng):
    cfg = type(
        "Cfg",
        (),
        {"optimizer": "adamw", "learning_rate": 1e-3, "weight_decay": 0.0, "iterations": 10, "warmup_iterations": 2, "max_minutes": None, "val_every": 5},
    )()
    run = TrainingRun(nn.Linear(2, 2), cfg, tmp_path, rng, torch.device("cpu"), resume=True)
    assert run.record({"iteration": 5, "iou": 0.7}, "iou")  # written before early stopping ranked by "score"
    run.save_checkpoint()
    resumed = TrainingRun(nn.Linear(2, 2), cfg, tmp_path, rng, torch.device("cpu"), resume=True)
    assert resumed.state["best"] == {"iteration": 5, "iou": 0.7}
    assert resumed.record({"iteration": 10, "iou": 0.6, "score": 0.5}, "score")
    assert not resumed.record({"iteration": 15, "iou": 0.9, "score": 0.4}, "score") and resumed.state["stale"] == 1


def test_image_and_labels_stay_aligned_under_augmentation(rng):
    labels = disks((100, 120), ((30, 30), (60, 90)), 10)
    image = to_rgb8(nucleus_image(labels))
    cfg = AugmentConfig.geometric()
    for _ in range(10):
        crop, crop_labels = augment_pair(image, labels, 64, rng, cfg)
        assert crop.shape == (64, 64, 3) and crop_labels.shape == (64, 64)
        if (crop_labels > 0).any() and (crop_labels == 0).any():
            assert crop[crop_labels > 0].mean() > crop[crop_labels == 0].mean() + 80


def test_random_crop_pads_small_images_and_flip_rot90_is_a_symmetry(rng):
    image, labels = np.zeros((20, 30, 3), np.uint8), np.ones((20, 30), np.int32)
    crop, crop_labels = random_crop(image, labels, 64, rng)
    assert crop.shape == (64, 64, 3) and crop_labels.sum() == 600  # padding is background
    square = np.arange(16).reshape(4, 4)
    turned, turned_labels = flip_rot90(np.dstack([square] * 3), square, rng)
    assert sorted(turned_labels.ravel()) == list(range(16)) and (turned[..., 0] == turned_labels).all()


def test_crop_sampler_prefers_large_images(rng):
    small = (np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), np.int32))
    large = (np.full((100, 100, 3), 255, np.uint8), np.zeros((100, 100), np.int32))
    cfg = AugmentConfig.geometric(scale_range=(1, 1))
    crops = CropSampler([small, large], 8, rng, cfg).sample(200)
    assert sum(c[0].mean() > 100 for c in crops) > 180  # 100x the area: ~99% of crops


def test_type_balanced_sampling_gives_a_rare_type_its_share(rng):
    common = [(np.zeros((50, 50, 3), np.uint8), np.zeros((50, 50), np.int32))] * 90
    rare = [(np.full((50, 50, 3), 255, np.uint8), np.zeros((50, 50), np.int32))] * 10
    groups = ["fluorescence"] * 90 + ["stained"] * 10
    cfg = AugmentConfig.geometric(scale_range=(1, 1))
    cfg.group_balance = 0.5
    weights = CropSampler(common + rare, 8, rng, cfg, groups).weights
    assert weights[90:].sum() == pytest.approx(10**0.5 / (10**0.5 + 90**0.5))  # balance 0.5: 25 %, not 10 %
    cfg.group_balance = 0.0
    assert CropSampler(common + rare, 8, rng, cfg, groups).weights[90:].sum() == pytest.approx(0.5)
    cfg.group_balance = 1.0
    assert CropSampler(common + rare, 8, rng, cfg, groups).weights[90:].sum() == pytest.approx(0.1)
    with pytest.raises(ValueError, match="2 group names for 100 images"):
        CropSampler(common + rare, 8, rng, cfg, ["a", "b"])


def test_sampling_within_a_type_stays_proportional_to_area():
    weights = sampling_weights([100, 300, 50], ["a", "a", "b"], 0.0)
    np.testing.assert_allclose(weights, [0.125, 0.375, 0.5])


def test_colour_augmentations_keep_the_nuclei_visible(rng):
    labels = disks((64, 64), [(20, 20), (44, 40)], 8)
    image = to_rgb8(nucleus_image(labels))
    inside, outside = labels > 0, labels == 0
    for _ in range(20):
        recoloured = recolour(image, rng).astype(float)
        gap = recoloured[inside].mean(axis=0) - recoloured[outside].mean(axis=0)
        assert np.abs(gap @ [0.299, 0.587, 0.114]) > 25  # two colours 60+ apart in luminance, either way round
    jittered = stain_jitter(image, rng)
    assert jittered.shape == image.shape and jittered.dtype == np.uint8
    assert jittered[inside].mean() != jittered[outside].mean()
    turned = rotate_hue(np.dstack([np.full((4, 4), 200), np.full((4, 4), 40), np.full((4, 4), 40)]).astype(np.uint8), 60)
    assert turned[0, 0, 1] > turned[0, 0, 0]  # red turned 120 degrees is green


def test_geometric_augmentation_turns_every_photometric_step_off():
    cfg = AugmentConfig.geometric((0.9, 1.1))
    probabilities = {k: v for k, v in vars(cfg).items() if k.startswith("p_")}
    assert probabilities.pop("p_flip_rot") == 1.0 and set(probabilities.values()) == {0.0}
    assert cfg.scale_range == (0.9, 1.1)


def test_full_augmentation_changes_images_but_not_labels(rng):
    labels = disks((64, 64), [(32, 32)], 10)
    image = to_rgb8(nucleus_image(labels))
    cfg = AugmentConfig(scale_range=(1, 1), p_flip_rot=0, p_stain_jitter=1, p_hue=1, p_recolour=1, p_gamma=1, p_dim=1)
    crop, crop_labels = augment_pair(image, labels, 64, rng, cfg)
    np.testing.assert_array_equal(crop_labels, labels)
    assert crop.dtype == np.uint8 and not np.array_equal(crop, image)


def test_stretched_crop_makes_round_nuclei_elongated_and_keeps_them_aligned(rng):
    centres = [(y, x) for y in range(25, 400, 50) for x in range(25, 400, 50)]
    labels = disks((400, 400), centres, 12)
    image = to_rgb8(nucleus_image(labels))
    ratios = []
    for _ in range(8):
        crop, crop_labels = stretched_crop(image, labels, 96, rng, zoom=1.0, max_aspect=2.5)
        assert crop.shape == (96, 96, 3) and crop_labels.shape == (96, 96) and crop_labels.dtype == labels.dtype
        inside = [r for r in regionprops(crop_labels) if min(r.bbox[:2]) > 0 and max(r.bbox[2:]) < 96]
        assert inside
        for nucleus in inside:  # stretched one way, squeezed the other: the area stays
            assert nucleus.area == pytest.approx(np.pi * 12**2, rel=0.12)
            ratios.append(nucleus.axis_major_length / nucleus.axis_minor_length)
        assert crop[crop_labels > 0].mean() > crop[crop_labels == 0].mean() + 100  # the image moved with its labels
    assert 1.5 < max(ratios) < 2.5 * 1.15


def test_stretch_probability_zero_leaves_plain_crops(rng):
    labels = disks((64, 64), [(32, 32)], 10)
    image = to_rgb8(nucleus_image(labels))
    cfg = AugmentConfig(scale_range=(1, 1), p_flip_rot=0, p_contrast=0, p_equalize=0, p_invert=0, p_blur=0, p_noise=0, p_channel_shuffle=0)
    crop, crop_labels = augment_pair(image, labels, 64, rng, cfg)
    np.testing.assert_array_equal(crop_labels, labels)
    np.testing.assert_array_equal(crop, image)
