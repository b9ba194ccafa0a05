import json

import numpy as np
import pytest
import torch

from tests.synthetic import disks, nucleus_image
from unet_ensemble.model import UNetArchitecture, build_unet
from unet_ensemble.predict import UNetPredictConfig, ensemble_probability, predict_probability
from unet_ensemble.storage import load_ensemble, load_member, save_member
from unet_ensemble.train import UNetTrainConfig, foreground_target, jaccard_bce_loss, train_member
from workflow.images import to_rgb8

TINY = UNetArchitecture(encoder="resnet18", depth=3, decoder_channels=(32, 16, 8))


def test_build_prunes_unused_stages_and_checks_channels():
    full = sum(p.numel() for p in build_unet(UNetArchitecture(depth=4)).parameters())
    pruned = sum(p.numel() for p in build_unet(UNetArchitecture(depth=3, decoder_channels=(64, 32, 16))).parameters())
    assert pruned < full / 2
    with pytest.raises(ValueError, match="decoder channel"):
        build_unet(UNetArchitecture(depth=3))
    with pytest.raises(ValueError, match="unknown U-Net encoder"):
        build_unet(UNetArchitecture(encoder="nonsense"))


def test_targets_are_float_and_blurred():
    labels = disks((32, 32), ((16, 16),), 6)
    sharp, soft = foreground_target(labels, 0), foreground_target(labels, 2.0)
    assert sharp.dtype == np.float32 and set(np.unique(sharp)) == {0.0, 1.0}
    assert 0 < soft[16, 16 + 6] < 1 and soft.dtype == np.float32


def test_loss_is_lower_for_the_right_answer():
    target = torch.zeros(1, 1, 8, 8)
    target[..., 2:6, 2:6] = 1
    right, wrong = (target * 20 - 10), (10 - target * 20)
    assert jaccard_bce_loss(right, target) < 0.05 < jaccard_bce_loss(wrong, target)


class Threshold(torch.nn.Module):
    """Stands in for a U-Net: logits = brightness - 0.5 (after un-normalising)."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        return (x * 0.25 + 0.5).mean(1, keepdim=True) * 40 - 20


def test_tiled_prediction_matches_whole_image_and_tta():
    labels = disks((150, 170), ((40, 40), (100, 120)), 15)
    image = to_rgb8(nucleus_image(labels))
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    whole = predict_probability(Threshold(), image, 8, mean, std, UNetPredictConfig(tile_size=512))
    tiled = predict_probability(Threshold(), image, 8, mean, std, UNetPredictConfig(tile_size=64, tile_overlap=16, flip_tta=True))
    assert whole.shape == labels.shape and np.allclose(whole, tiled, atol=1e-5)
    assert ((whole > 0.5) == (labels > 0)).mean() > 0.98


def test_train_save_load_and_ensemble(tmp_path):
    labels = disks((96, 96), ((30, 30), (60, 70)), 10)
    pairs = [(to_rgb8(nucleus_image(labels, seed=s)), labels) for s in range(3)]
    cfg = UNetTrainConfig(iterations=4, batch_size=2, crop_size=64, val_every=2, warmup_iterations=2, log_every=1)
    best = train_member(pairs[:2], pairs[2:], TINY, cfg, target_sigma=0.5, seed=1, out_dir=tmp_path / "m0", card={"target_diameter": 20})
    assert 0 <= best["foreground_iou"] <= 1
    card = json.loads((tmp_path / "m0" / "model" / "model.json").read_text())
    assert card["target_sigma"] == 0.5 and card["seed"] == 1 and card["architecture"]["depth"] == 3
    cfg6 = UNetTrainConfig(**{**cfg.__dict__, "iterations": 6})
    train_member(pairs[:2], pairs[2:], TINY, cfg6, 0.5, 1, tmp_path / "m0", {"target_diameter": 20})
    assert torch.load(tmp_path / "m0" / "checkpoint.pt", weights_only=False)["state"]["iteration"] == 6
    model, _ = load_member(tmp_path / "m0" / "model")
    save_member(tmp_path / "ens" / "a", model, TINY, {"target_diameter": 20})
    save_member(tmp_path / "ens" / "b", model, TINY, {"target_diameter": 20})
    members = load_ensemble(tmp_path / "ens")
    probability = ensemble_probability(members, pairs[0][0], UNetPredictConfig())
    single = predict_probability(members[0][0], pairs[0][0], 8, TINY.image_mean, TINY.image_std, UNetPredictConfig())
    assert probability.shape == labels.shape and np.allclose(probability, single, atol=1e-6)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no U-Net ensemble members"):
        load_ensemble(tmp_path / "empty")
