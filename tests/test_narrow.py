"""Narrowing a presegmenter: the weight surgery is exact at equal widths and keeps what matters when narrower."""

import numpy as np
import pytest
import torch

from presegment.config import Architecture
from presegment.model import build_model
from presegment.narrow import Moments, _consume, channel_statistics, narrow, narrowing_problem, principal_projection, subset_reconstruction

WIDE = Architecture(fpn_channels=32, box_head_width=32, mask_head_width=16)


def head_outputs(model: torch.nn.Module, image: torch.Tensor, boxes: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the heads compute from the FPN: RPN objectness and deltas, box-head logits and deltas, mask logits,
    for fixed boxes (so that detection's thresholds play no part)."""
    with torch.no_grad():
        images, _ = model.transform([image])
        features = model.backbone(images.tensors)
        objectness, deltas = model.rpn.head(list(features.values()))
        heads = model.roi_heads
        box_features = heads.box_head(heads.box_roi_pool(features, [boxes], images.image_sizes))
        scores, box_deltas = heads.box_predictor(box_features)
        masks = heads.mask_predictor(heads.mask_head(heads.mask_roi_pool(features, [boxes], images.image_sizes)))
    return {
        "objectness": torch.cat([o.flatten() for o in objectness]),
        "deltas": torch.cat([d.flatten() for d in deltas]),
        "scores": scores,
        "box_deltas": box_deltas,
        "masks": masks,
    }


def random_model(arch: Architecture, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(arch).eval()
    model.roi_heads.score_thresh = 0.0  # an untrained model: let every proposal reach the mask head
    return model


def calibration(model: torch.nn.Module, count: int = 3):
    rng = np.random.default_rng(1)
    images = [torch.from_numpy(rng.random((3, 96, 96), dtype=np.float32)) for _ in range(count)]
    return channel_statistics(model, (model(images[k : k + 1]) for k in range(count)))


BOXES = torch.tensor([[10.0, 12.0, 40.0, 38.0], [50.0, 20.0, 70.0, 60.0], [5.0, 60.0, 30.0, 90.0]])


def test_narrowing_to_the_same_widths_computes_what_the_model_computed():
    model = random_model(WIDE)
    same = narrow(model, WIDE, WIDE, calibration(model)).eval()
    image = torch.from_numpy(np.random.default_rng(7).random((3, 96, 96), dtype=np.float32))
    before, after = head_outputs(model, image, BOXES), head_outputs(same, image, BOXES)
    for name in before:
        scale = float(before[name].abs().max())
        assert torch.allclose(after[name], before[name], atol=2e-3 * scale, rtol=0), name


def test_a_narrowed_model_keeps_more_of_the_model_than_dropping_channels():
    model = random_model(WIDE)
    half = Architecture(fpn_channels=16, box_head_width=32, mask_head_width=8)
    narrowed = narrow(model, WIDE, half, calibration(model)).eval()
    dropped = build_model(half).eval()  # the same widths, keeping the first channels of every layer
    dropped.load_state_dict({k: v[tuple(slice(0, n) for n in dropped.state_dict()[k].shape)] for k, v in model.state_dict().items()})
    image = torch.from_numpy(np.random.default_rng(7).random((3, 96, 96), dtype=np.float32))
    truth, ours, naive = head_outputs(model, image, BOXES), head_outputs(narrowed, image, BOXES), head_outputs(dropped, image, BOXES)
    assert ours["masks"].shape == truth["masks"].shape and sum(p.numel() for p in narrowed.parameters()) < sum(p.numel() for p in model.parameters())
    for name in ("objectness", "scores", "masks"):
        error, naive_error = float((ours[name] - truth[name]).norm()), float((naive[name] - truth[name]).norm())
        assert error < 0.5 * naive_error, name


def test_narrowing_refuses_other_changes():
    assert narrowing_problem(WIDE, Architecture(fpn_channels=16, box_head_width=32, mask_head_width=16)) is None
    assert "widened" in narrowing_problem(WIDE, Architecture(fpn_channels=64, box_head_width=32, mask_head_width=16))
    assert "box_head_width" in narrowing_problem(WIDE, Architecture(fpn_channels=16, box_head_width=16, mask_head_width=16))
    with pytest.raises(ValueError, match="backbone"):
        narrow(
            random_model(WIDE),
            WIDE,
            Architecture(backbone="resnet34_fpn", fpn_channels=32, box_head_width=32, mask_head_width=16),
            calibration(random_model(WIDE), 1),
        )


def moments_of(samples: torch.Tensor) -> Moments:
    """Moments of (N, C) samples."""
    moments = Moments()
    moments.add(samples[:, :, None])
    return moments


def test_the_projections_reconstruct_data_of_the_kept_rank_exactly():
    generator = torch.Generator().manual_seed(0)
    low = torch.randn(500, 3, generator=generator, dtype=torch.float64)
    mixing, mean = torch.randn(3, 8, generator=generator, dtype=torch.float64), torch.arange(8, dtype=torch.float64)
    linear = low @ mixing + mean  # rank 3 around a mean: three components hold it all
    keep, back, offset = principal_projection(moments_of(linear), 3)
    assert torch.allclose((linear @ keep.T) @ back.T + offset, linear, atol=1e-8)
    relu = torch.cat([low.clamp_min(0), low.clamp_min(0) @ torch.randn(3, 5, generator=generator, dtype=torch.float64) + 1.0], 1)
    keep, back, offset = subset_reconstruction(moments_of(relu), torch.eye(8, dtype=torch.float64), 3)
    assert torch.allclose((relu @ keep.T) @ back.T + offset, relu, atol=0.01 * float(relu.max()))  # up to the ridge
    keep, back, offset = subset_reconstruction(moments_of(relu), torch.eye(8, dtype=torch.float64), 4, intercept=False)
    assert not offset.any() and torch.allclose((relu @ keep.T) @ back.T, relu, atol=0.01 * float(relu.max()))  # the constant channel kept


LAYERS = {  # a layer of C input channels, and the shape of an input of C channels
    "conv": (lambda c: torch.nn.Conv2d(c, 4, 3, padding=1), lambda c: (2, c, 6, 6)),
    "transposed": (lambda c: torch.nn.ConvTranspose2d(c, 4, 2, stride=2), lambda c: (2, c, 6, 6)),
    "linear": (lambda c: torch.nn.Linear(c, 4), lambda c: (2, c)),
}


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_a_consumer_given_the_kept_channels_computes_what_it_did(kind):
    make, shape = LAYERS[kind]
    generator = torch.Generator().manual_seed(0)
    layer, narrowed, transposed = make(8).double(), make(3).double(), kind == "transposed"
    back, offset = torch.randn(8, 3, generator=generator, dtype=torch.float64), torch.randn(8, generator=generator, dtype=torch.float64)
    if transposed:  # its phases cannot share a constant: refused, and reconstructed without one
        with pytest.raises(ValueError, match="transposed"):
            _consume(layer.weight.detach(), layer.bias.detach(), back, offset, in_dim=0)
        offset = torch.zeros(8, dtype=torch.float64)
    narrowed.weight.data, narrowed.bias.data = _consume(layer.weight.detach(), layer.bias.detach(), back, offset, in_dim=0 if transposed else 1)
    kept = torch.randn(*shape(3), generator=generator, dtype=torch.float64)
    full = torch.einsum("ck,nk...->nc...", back, kept) + offset.view(8, *[1] * (kept.dim() - 2))
    expected, got = layer(full), narrowed(kept)
    if kind == "conv":
        expected, got = expected[..., 1:-1, 1:-1], got[..., 1:-1, 1:-1]  # zero padding breaks the constant at the border
    assert (expected - got).abs().max() < 1e-9 * expected.abs().max()
