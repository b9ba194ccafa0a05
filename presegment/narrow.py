"""Narrowing a trained presegmenter: fewer FPN and mask-head channels, weights carried over.

Half the FPN and mask-head widths run the fast path in 0.58 of the time (benchmarks/results/narrowing.md), but a
model of that architecture trained from random weights needs thousands of iterations. Narrowing starts it close to
the trained model instead: activations of the trained model on a few calibration images decide what each narrower
layer keeps. Narrowed alone, the shipped model loses about 0.005 DSB on the fast path; a fine-tune must win it back.

- The FPN's two channel spaces (the top-down sum and the pyramid outputs) are linear (no activation), so they are
  projected onto the principal components of what their consumers receive; producers and consumers are rotated to
  match.
- The spaces after a ReLU (the RPN's convolution, the mask head's layers) keep a subset of channels, chosen greedily
  to best reconstruct what the next layer receives; the channels dropped are reconstructed from those kept by least
  squares, folded into the next layer's weights and bias.

`nucflow train-presegment --start-from MODEL --set presegment.architecture.fpn_channels=64 ...` narrows and then
fine-tunes (or, with `presegment.train.iterations=0`, keeps the narrowed model as it is).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from presegment.config import Architecture, DetectConfig
from presegment.model import build_model
from presegment.predict import configure, detect

RIDGE = 1e-4  # relative regularisation of the least-squares reconstructions
NARROWABLE = ("fpn_channels", "mask_head_width")


@dataclass
class Moments:
    """Running first and second moments of a channel space, over every pixel (or RoI cell) seen."""

    count: int = 0
    total: torch.Tensor | None = None
    outer: torch.Tensor | None = None

    def add(self, activations: torch.Tensor) -> None:
        """Accumulate an (N, C, ...) activation tensor."""
        flat = activations.detach().transpose(0, 1).reshape(activations.shape[1], -1).double()
        if self.total is None:
            self.total, self.outer = torch.zeros(flat.shape[0], dtype=torch.float64), torch.zeros(flat.shape[0], flat.shape[0], dtype=torch.float64)
        self.count += flat.shape[1]
        self.total += flat.sum(1)
        self.outer += flat @ flat.T

    def mean_and_covariance(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.count:
            raise ValueError("the calibration images reached no nucleus detection: nothing to narrow the mask head by")
        mean = self.total / self.count
        return mean, self.outer / self.count - torch.outer(mean, mean)


@dataclass
class ChannelStatistics:
    """Moments of every channel space narrowing changes, gathered by `channel_statistics`."""

    spaces: dict[str, Moments] = field(default_factory=dict)

    def moments(self, name: str) -> Moments:
        return self.spaces.setdefault(name, Moments())


def channel_statistics(model: nn.Module, run_model: Iterable[object]) -> ChannelStatistics:
    """Moments of the channel spaces of `model` while `run_model` (an iterable that runs the model once per step,
    e.g. over calibration images) is consumed."""
    stats = ChannelStatistics()
    fpn, heads = model.backbone.fpn, model.roi_heads
    hooks = [block.register_forward_pre_hook(lambda _m, args: stats.moments("fpn_inner").add(args[0])) for block in fpn.layer_blocks]
    hooks += [block.register_forward_hook(lambda _m, _a, out: stats.moments("fpn_out").add(out)) for block in fpn.layer_blocks]
    hooks.append(model.rpn.head.conv.register_forward_hook(lambda _m, _a, out: stats.moments("rpn").add(out)))
    for index, layer in enumerate(heads.mask_head):
        hooks.append(layer.register_forward_hook(lambda _m, _a, out, name=f"mask{index}": stats.moments(name).add(out)))
    hooks.append(heads.mask_predictor.relu.register_forward_hook(lambda _m, _a, out: stats.moments("mask_up").add(out)))
    try:
        with torch.no_grad():
            for _ in run_model:
                pass
    finally:
        for hook in hooks:
            hook.remove()
    return stats


def principal_projection(moments: Moments, width: int, consumers: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(P, B, c): keep z = P x (width rows), reconstruct x ~ B z + c. Without `consumers`, the principal components
    (B = P^T); with them (each consumer's weights as a (rows, C) matrix), the components of what the consumers
    receive, each consumer weighted alike."""
    mean, cov = moments.mean_and_covariance()
    if not consumers:
        root = inverse_root = torch.eye(len(mean), dtype=torch.float64)
    else:
        grams = [w.double().T @ w.double() for w in consumers]
        gram = sum(g / g.trace() for g in grams)
        values, vectors = torch.linalg.eigh(gram + RIDGE * gram.diagonal().mean() * torch.eye(len(mean), dtype=torch.float64))
        root, inverse_root = (vectors * values.sqrt()) @ vectors.T, (vectors / values.sqrt()) @ vectors.T
    _, components = torch.linalg.eigh(root @ cov @ root)
    leading = components[:, -width:]  # (C, width)
    keep, back = leading.T @ root, inverse_root @ leading
    return keep, back, mean - back @ (keep @ mean)


def subset_reconstruction(moments: Moments, consumer: torch.Tensor, width: int, intercept: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(P, B, c) for a ReLU space: P selects `width` channels, x ~ B x_kept + c by least squares.

    Channels are chosen greedily, each the one whose reconstruction most reduces the error of what the consumer
    (its weights as a (rows, C) matrix) receives: column subset selection on the consumer-weighted covariance.
    Without `intercept` c is 0 (second moments instead of covariances), for consumers that cannot take a constant.
    """
    mean, cov = moments.mean_and_covariance()
    if not intercept:
        cov, mean = cov + torch.outer(mean, mean), torch.zeros_like(mean)
    residual, kept = cov.clone(), []
    gram = consumer.double().T @ consumer.double()  # (C, C)
    for _ in range(width):
        diagonal = residual.diagonal().clamp_min(1e-12)
        gain = ((residual @ gram) * residual).sum(1) / diagonal  # || W r_j ||^2 / r_jj with W^T W = gram
        gain[kept] = -1.0
        best = int(gain.argmax())
        kept.append(best)
        column = residual[:, best : best + 1]
        residual = residual - column @ column.T / diagonal[best]
    kept_sorted = sorted(kept)
    inner = cov[kept_sorted][:, kept_sorted]
    ridge = RIDGE * inner.diagonal().mean() * torch.eye(len(kept_sorted), dtype=torch.float64)
    mix = torch.linalg.solve(inner + ridge, cov[kept_sorted, :]).T  # (C, width)
    select = torch.zeros(width, cov.shape[0], dtype=torch.float64)
    select[range(width), kept_sorted] = 1.0
    return select, mix, mean - mix @ mean[kept_sorted]


def as_matrix(weight: torch.Tensor, in_dim: int = 1) -> torch.Tensor:
    """A layer's weights as a (rows, C) matrix over its `in_dim` input channels (kernel positions as rows)."""
    return weight.movedim(in_dim, -1).reshape(-1, weight.shape[in_dim])


def _produce(weight: torch.Tensor, bias: torch.Tensor, keep: torch.Tensor, out_dim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A producer's weights and bias for z = P x (its output channels on axis `out_dim`)."""
    moved = weight.double().movedim(out_dim, -1)
    return (moved @ keep.T).movedim(-1, out_dim), keep @ bias.double()


def _consume(weight: torch.Tensor, bias: torch.Tensor, mix: torch.Tensor, offset: torch.Tensor, in_dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """A consumer's weights and bias when its input x is replaced by z with x ~ B z + c: every kernel position's
    channel mixing becomes W B, and W c (summed over the kernel) joins the bias. A transposed convolution
    (`in_dim` 0) gives each output phase one kernel position, so it takes no c (see `subset_reconstruction`)."""
    moved = weight.double().movedim(in_dim, -1)  # (out, [kh, kw,] C)
    if in_dim == 0 and bool(offset.any()):
        raise ValueError("a transposed convolution's output phases cannot share one constant: reconstruct its input without")
    spatial = tuple(range(1, moved.dim() - 1))
    constant = (moved @ offset).sum(dim=spatial) if spatial else moved @ offset
    return (moved @ mix).movedim(-1, in_dim), bias.double() + constant


def narrowing_problem(source: Architecture, target: Architecture) -> str | None:
    """Why `target` cannot be made from a `source` model by narrowing (None when it can)."""
    differ = sorted(k for k, v in source.to_dict().items() if target.to_dict()[k] != v)
    fixed = [k for k in differ if k not in NARROWABLE]
    if fixed:
        return "narrowing changes only " + " and ".join(NARROWABLE) + ", not " + ", ".join(f"{k} ({getattr(source, k)} -> {getattr(target, k)})" for k in fixed)
    wider = [k for k in differ if getattr(target, k) > getattr(source, k)]
    if wider:
        return "a model cannot be widened: " + ", ".join(f"{k} {getattr(source, k)} -> {getattr(target, k)}" for k in wider)
    return None


def narrow_on_images(model: nn.Module, source: Architecture, target: Architecture, images: Iterable[np.ndarray], cfg: DetectConfig) -> nn.Module:
    """`model` narrowed to `target`, calibrated on RGB uint8 `images` at the network's scale (detected with `cfg`)."""
    model.eval()
    configure(model, cfg)
    stats = channel_statistics(model, (detect(model, image, cfg) for image in images))
    return narrow(model, source, target, stats)


def narrow(model: nn.Module, source: Architecture, target: Architecture, stats: ChannelStatistics) -> nn.Module:
    """A model of `target` (narrower FPN and/or mask head than `source`, all else equal) carrying `model`'s weights."""
    problem = narrowing_problem(source, target)
    if problem:
        raise ValueError(problem)
    sd = {k: v.double() for k, v in model.state_dict().items()}
    levels, fpn = len(model.backbone.fpn.layer_blocks), "backbone.fpn."

    def produce(prefix: str, keep: torch.Tensor, out_dim: int = 0) -> None:
        sd[prefix + "weight"], sd[prefix + "bias"] = _produce(sd[prefix + "weight"], sd[prefix + "bias"], keep, out_dim)

    def consume(prefix: str, mix: torch.Tensor, offset: torch.Tensor, in_dim: int = 1) -> None:
        sd[prefix + "weight"], sd[prefix + "bias"] = _consume(sd[prefix + "weight"], sd[prefix + "bias"], mix, offset, in_dim)

    # FPN top-down sum: produced by the lateral 1x1 convolutions, consumed by the 3x3 output convolutions
    inner_consumers = [as_matrix(sd[f"{fpn}layer_blocks.{level}.0.weight"]) for level in range(levels)]
    keep, mix, offset = principal_projection(stats.spaces["fpn_inner"], target.fpn_channels, inner_consumers)
    for level in range(levels):
        produce(f"{fpn}inner_blocks.{level}.0.", keep)
        consume(f"{fpn}layer_blocks.{level}.0.", mix, offset)
    # FPN outputs: consumed by the RPN's convolution, the mask head and the box head, whose C x 7 x 7 inputs are
    # viewed as C channels x 49 positions while it is rewritten
    fc6 = "roi_heads.box_head.fc6."
    flat_fc6 = sd[fc6 + "weight"].shape
    sd[fc6 + "weight"] = sd[fc6 + "weight"].view(flat_fc6[0], source.fpn_channels, -1)
    out_consumers = ["rpn.head.conv.0.0.", "roi_heads.mask_head.0.0.", fc6]
    keep, mix, offset = principal_projection(stats.spaces["fpn_out"], target.fpn_channels, [as_matrix(sd[c + "weight"]) for c in out_consumers])
    for level in range(levels):
        produce(f"{fpn}layer_blocks.{level}.0.", keep)
    for consumer in out_consumers:
        consume(consumer, mix, offset)
    sd[fc6 + "weight"] = sd[fc6 + "weight"].reshape(flat_fc6[0], -1)
    # RPN convolution (after its ReLU), consumed by the objectness and box-delta 1x1 convolutions
    rpn_consumers = ["rpn.head.cls_logits.", "rpn.head.bbox_pred."]
    keep, mix, offset = subset_reconstruction(stats.spaces["rpn"], torch.cat([as_matrix(sd[c + "weight"]) for c in rpn_consumers]), target.fpn_channels)
    produce("rpn.head.conv.0.0.", keep)
    for consumer in rpn_consumers:
        consume(consumer, mix, offset)
    # mask head: four 3x3 convolutions, then the 2x2 transposed convolution, then the 1x1 logits
    chain = [f"roi_heads.mask_head.{i}.0." for i in range(len(model.roi_heads.mask_head))] + ["roi_heads.mask_predictor.conv5_mask."]
    spaces = [f"mask{i}" for i in range(len(model.roi_heads.mask_head))] + ["mask_up"]
    consumers = chain[1:] + ["roi_heads.mask_predictor.mask_fcn_logits."]
    for producer, space, consumer in zip(chain, spaces, consumers):
        transposed_producer, transposed_consumer = producer.endswith("conv5_mask."), consumer.endswith("conv5_mask.")
        in_dim = 0 if transposed_consumer else 1
        keep, mix, offset = subset_reconstruction(
            stats.spaces[space], as_matrix(sd[consumer + "weight"], in_dim), target.mask_head_width, intercept=not transposed_consumer
        )
        produce(producer, keep, out_dim=1 if transposed_producer else 0)
        consume(consumer, mix, offset, in_dim)
    narrowed = build_model(target)
    narrowed.load_state_dict({k: v.float() for k, v in sd.items()})
    return narrowed.to(next(model.parameters()).device)
