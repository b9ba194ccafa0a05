"""Distillation: a student equal to its teacher has nothing to learn; a different one is pulled towards it."""

import copy

import numpy as np
import pytest
import torch

from presegment.config import Architecture
from presegment.distill import distillation_losses, freeze_batch_norm
from presegment.model import build_model

TEACHER = Architecture(fpn_channels=32, box_head_width=32, mask_head_width=16)
NARROW = Architecture(fpn_channels=16, box_head_width=32, mask_head_width=8)


def model_of(arch: Architecture, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(arch).eval()


def crops(count: int = 2, seed: int = 3) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    return [torch.from_numpy(rng.random((3, 96, 96), dtype=np.float32)) for _ in range(count)]


def test_a_student_equal_to_its_teacher_has_zero_losses():
    teacher = model_of(TEACHER, 0)
    losses = distillation_losses(teacher, copy.deepcopy(teacher), crops())
    assert set(losses) == {"rpn_objectness", "rpn_deltas", "box_classes", "box_deltas", "masks"}
    for name, value in losses.items():
        assert abs(float(value)) < 1e-5, name


def test_a_different_student_has_positive_losses_that_training_lowers():
    teacher, student = model_of(TEACHER, 0), model_of(NARROW, 1)  # narrower and differently initialised
    images = crops()
    before = {k: float(v) for k, v in distillation_losses(teacher, student, images).items()}
    assert all(value > 0 for value in before.values()), before
    optimiser = torch.optim.Adam(student.parameters(), lr=1e-3)
    for _ in range(15):
        optimiser.zero_grad()
        sum(distillation_losses(teacher, student, images).values()).backward()
        optimiser.step()
    after = {k: float(v) for k, v in distillation_losses(teacher, student, images).items()}
    assert sum(after.values()) < 0.5 * sum(before.values()), (before, after)
    assert all(p.grad is None for p in teacher.parameters())  # the teacher only gives targets


def test_only_the_student_learns_and_every_head_takes_part():
    teacher, student = model_of(TEACHER, 0), model_of(NARROW, 1)
    sum(distillation_losses(teacher, student, crops()).values()).backward()
    for part in ("backbone.fpn", "rpn.head", "roi_heads.box_head", "roi_heads.box_predictor", "roi_heads.mask_head", "roi_heads.mask_predictor"):
        grads = [p.grad for name, p in student.named_parameters() if name.startswith(part)]
        assert grads and all(g is not None and bool(g.abs().sum() > 0) for g in grads), part


@pytest.mark.parametrize("mode", [True, False])
def test_frozen_batch_norm_keeps_its_statistics_in_training_mode(mode):
    model = build_model(NARROW).train(mode)
    freeze_batch_norm(model)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    assert model.training == mode  # everything else as it was
