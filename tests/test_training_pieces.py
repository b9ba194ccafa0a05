import numpy as np
import pytest
import torch
from torch import nn

from tests.synthetic import disks, nucleus_image
from workflow.augment import AugmentConfig, CropSampler, augment_pair, flip_rot90, random_crop
from workflow.images import to_rgb8
from workflow.optim import TrainingRun, make_optimizer, warmup_cosine


def test_learning_rate_warms_up_then_decays():
    assert warmup_cosine(0, 1000, 100) == pytest.approx(0.01)
    assert warmup_cosine(99, 1000, 100) == pytest.approx(1.0)
    assert warmup_cosine(550, 1000, 100) == pytest.approx(0.505, abs=1e-3)
    assert warmup_cosine(1000, 1000, 100) == pytest.approx(0.01)


def test_make_optimizer_by_name():
    model = nn.Linear(2, 2)
    assert type(make_optimizer(model, "sgd", 0.1, 0.0)).__name__ == "SGD"
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer(model, "lion", 0.1, 0.0)


def test_training_run_resumes_and_ranks_by_the_score_even_from_an_older_checkpoint(tmp_path, rng):
    cfg = type("Cfg", (), {"optimizer": "adamw", "learning_rate": 1e-3, "weight_decay": 0.0, "iterations": 10,
                           "warmup_iterations": 2, "max_minutes": None, "val_every": 5})()
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
    cfg = AugmentConfig(p_contrast=0, p_equalize=0, p_invert=0, p_blur=0, p_noise=0, p_channel_shuffle=0)
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
    cfg = AugmentConfig(p_contrast=0, p_equalize=0, p_invert=0, p_blur=0, p_noise=0, p_channel_shuffle=0, scale_range=(1, 1))
    crops = CropSampler([small, large], 8, rng, cfg).sample(200)
    assert sum(c[0].mean() > 100 for c in crops) > 180  # 100x the area: ~99% of crops
