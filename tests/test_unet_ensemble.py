import json

import numpy as np
import pytest
import torch

from tests.synthetic import disks, nucleus_image
from unet_ensemble.config import UNetArchitecture, UNetPredictConfig, UNetTrainConfig
from unet_ensemble.model import build_unet, transfer_weights
from unet_ensemble.predict import ensemble_maps, predict_maps
from unet_ensemble.storage import load_ensemble, load_member, save_member
from unet_ensemble.train import centerness_target, foreground_target, jaccard_bce_loss, train_member
from workflow.core.images import to_rgb8
from workflow.core.views import VIEWS

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


def test_centerness_is_one_at_each_centre_and_falls_where_nuclei_touch():
    labels = disks((40, 60), ((20, 18), (20, 38)), 10)  # two disks touching at x = 28
    target = centerness_target(labels)
    assert target.dtype == np.float32 and target.max() == 1.0 and np.all(target[labels == 0] == 0)
    assert target[20, 18] == 1.0 and target[20, 38] == 1.0
    assert target[20, 28] < 0.2 and target[20, 27] < 0.2  # the seam between them
    cut = centerness_target(labels[:, :24])  # the frame is not an edge: a cut nucleus keeps its peak
    assert cut[20, 18] == 1.0 and cut[20, 23] > 0.3


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
    whole = predict_maps(Threshold(), image, 8, mean, std, UNetPredictConfig(tile_size=512))
    tiled = predict_maps(Threshold(), image, 8, mean, std, UNetPredictConfig(tile_size=64, tile_overlap=16), VIEWS)
    assert whole.shape == (1, *labels.shape) and np.allclose(whole, tiled, atol=1e-5)
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
    maps = ensemble_maps(members, pairs[0][0], UNetPredictConfig())
    single = predict_maps(members[0][0], pairs[0][0], 8, TINY.image_mean, TINY.image_std, UNetPredictConfig())
    assert maps.foreground.shape == labels.shape and np.allclose(maps.foreground, single[0], atol=1e-6) and maps.centerness is None
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no U-Net ensemble members"):
        load_ensemble(tmp_path / "empty")


def test_centerness_member_trains_from_a_foreground_member_and_ensembles(tmp_path):
    labels = disks((96, 96), ((30, 30), (50, 48), (70, 70)), 11)
    pairs = [(to_rgb8(nucleus_image(labels, seed=s)), labels) for s in range(3)]
    plain = build_unet(TINY)
    arch = UNetArchitecture(**{**TINY.__dict__, "centerness": True})
    started = transfer_weights(plain, build_unet(arch)).eval()
    image = pairs[0][0]
    before = predict_maps(started, image, 8, TINY.image_mean, TINY.image_std, UNetPredictConfig())
    reference = predict_maps(plain.eval(), image, 8, TINY.image_mean, TINY.image_std, UNetPredictConfig())
    assert before.shape == (2, *labels.shape) and np.allclose(before[0], reference[0], atol=1e-5) and np.allclose(before[1], reference[0], atol=1e-5)
    cfg = UNetTrainConfig(iterations=2, batch_size=2, crop_size=64, val_every=2, warmup_iterations=1, log_every=1)
    best = train_member(pairs[:2], pairs[2:], arch, cfg, 0.0, 0, tmp_path / "c", {"target_diameter": 20}, initial_model=started)
    assert 0 <= best["centre_iou"] <= 1 and best["score"] == pytest.approx((best["foreground_iou"] + best["centre_iou"]) / 2)
    save_member(tmp_path / "ens" / "a", plain, TINY, {"target_diameter": 20})
    members = load_ensemble(tmp_path / "ens") + [load_member(tmp_path / "c" / "model")]
    assert members[1][1]["architecture"]["centerness"] is True
    maps = ensemble_maps(members, image, UNetPredictConfig())
    own = predict_maps(members[1][0], image, 8, TINY.image_mean, TINY.image_std, UNetPredictConfig())
    assert np.allclose(maps.centerness, own[1], atol=1e-6)  # only the centerness member's own map
    first = predict_maps(members[0][0], image, 8, TINY.image_mean, TINY.image_std, UNetPredictConfig())
    assert np.allclose(maps.foreground, (first[0] + own[0]) / 2, atol=1e-5)
    with pytest.raises(ValueError, match="does not fit"):
        transfer_weights(plain, build_unet(UNetArchitecture(depth=3, decoder_channels=(32, 16, 16))))
