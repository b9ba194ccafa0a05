"""Distillation: a (narrowed) presegmenter learns to give its teacher's outputs, not the masks.

Fine-tuning a narrowed model on the masks moves it away from the model whose settings were tuned (the fast path
loses val: benchmarks/results/narrowing.md); learning the teacher's outputs on the same crops moves it towards it.
Both networks see the same batch; the student is scored on what the teacher's heads say at every stage:
- RPN: objectness of every anchor (soft targets) and its box deltas, weighted by the teacher's objectness;
- box head: class probabilities and box deltas on the teacher's proposals, deltas weighted by its nucleus probability;
- mask head: mask probabilities in the teacher's most confident boxes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MASK_MIN_SCORE = 0.3  # boxes whose masks are learned: the teacher's nucleus probability at least this ...
MASK_BOXES = 48  # ... at most this many per crop, the most confident first


def soft_bce(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the student's logits against the teacher's probabilities, minus the teacher's entropy
    (so 0 when they agree)."""
    target = torch.sigmoid(teacher_logits)
    cross = F.binary_cross_entropy_with_logits(student_logits, target)
    return cross - F.binary_cross_entropy_with_logits(teacher_logits, target)


def weighted_l1(student: torch.Tensor, teacher: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Absolute differences summed over each box's 4 deltas (the axis where `weight` has size 1), averaged with
    `weight` over boxes."""
    return ((student - teacher).abs() * weight).sum() / weight.sum().clamp_min(1e-6)


def freeze_batch_norm(model: nn.Module) -> None:
    """Batch-norm layers use their stored statistics, as the teacher's do (a batch of 4 crops would shift them)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def _box_outputs(model: nn.Module, features: dict, proposals: list[torch.Tensor], sizes: list) -> tuple[torch.Tensor, torch.Tensor]:
    heads = model.roi_heads
    return heads.box_predictor(heads.box_head(heads.box_roi_pool(features, proposals, sizes)))


def _mask_logits(model: nn.Module, features: dict, boxes: list[torch.Tensor], sizes: list) -> torch.Tensor:
    heads = model.roi_heads
    return heads.mask_predictor(heads.mask_head(heads.mask_roi_pool(features, boxes, sizes)))[:, 1]


def _confident_boxes(heads: nn.Module, class_logits: torch.Tensor, deltas: torch.Tensor, proposals: list[torch.Tensor], sizes: list) -> list[torch.Tensor]:
    """Per crop, the teacher's refined nucleus boxes of probability >= MASK_MIN_SCORE (at most MASK_BOXES), clipped."""
    probability = torch.softmax(class_logits, 1)[:, 1].split([len(p) for p in proposals])
    refined = heads.box_coder.decode(deltas, proposals)[:, 1].split([len(p) for p in proposals])
    chosen = []
    for score, boxes, (height, width) in zip(probability, refined, sizes):
        order = score.argsort(descending=True)[:MASK_BOXES]
        order = order[score[order] >= MASK_MIN_SCORE]
        boxes = boxes[order].clone()
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        chosen.append(boxes)
    return chosen


def distillation_losses(teacher: nn.Module, student: nn.Module, images: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The student's distance from the teacher's outputs on `images` (both torchvision Mask R-CNNs; the teacher in
    eval mode). Anchors and proposals are the teacher's, so any two widths compare."""
    batch, _ = teacher.transform(images)
    sizes = batch.image_sizes
    with torch.no_grad():
        teacher_features = teacher.backbone(batch.tensors)
        teacher_objectness, teacher_anchor_deltas = teacher.rpn.head(list(teacher_features.values()))
        proposals, _ = teacher.rpn(batch, teacher_features)
        teacher_classes, teacher_deltas = _box_outputs(teacher, teacher_features, proposals, sizes)
        mask_boxes = _confident_boxes(teacher.roi_heads, teacher_classes, teacher_deltas, proposals, sizes)
        teacher_masks = _mask_logits(teacher, teacher_features, mask_boxes, sizes) if sum(map(len, mask_boxes)) else None
    features = student.backbone(batch.tensors)
    objectness, anchor_deltas = student.rpn.head(list(features.values()))
    levels = len(objectness)
    losses = {
        "rpn_objectness": sum(soft_bce(s, t) for s, t in zip(objectness, teacher_objectness)) / levels,
        "rpn_deltas": sum(
            weighted_l1(_per_anchor(s), _per_anchor(t), torch.sigmoid(o).unsqueeze(2))
            for s, t, o in zip(anchor_deltas, teacher_anchor_deltas, teacher_objectness)
        )
        / levels,
    }
    classes, deltas = _box_outputs(student, features, proposals, sizes)
    teacher_probability = torch.softmax(teacher_classes, 1)
    losses["box_classes"] = (teacher_probability * (torch.log_softmax(teacher_classes, 1) - torch.log_softmax(classes, 1))).sum(1).mean()
    losses["box_deltas"] = weighted_l1(deltas[:, 4:], teacher_deltas[:, 4:], teacher_probability[:, 1:])
    if teacher_masks is not None:
        losses["masks"] = soft_bce(_mask_logits(student, features, mask_boxes, sizes), teacher_masks)
    return losses


def _per_anchor(deltas: torch.Tensor) -> torch.Tensor:
    """RPN box deltas N x (A*4) x H x W as N x A x 4 x H x W."""
    n, channels, height, width = deltas.shape
    return deltas.view(n, channels // 4, 4, height, width)
