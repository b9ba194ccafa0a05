"""Training the Mask R-CNN presegmenter on size-normalised (image, labels) pairs.

The caller rescales every pair so its median nucleus has the model's target diameter;
this module samples augmented crops, optimises with warm-up + cosine decay, validates
periodically with the DSB score, keeps the best model folder and a resumable checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from presegment.config import Architecture, DetectConfig, TrainConfig
from presegment.distill import distillation_losses, freeze_batch_norm
from presegment.model import REDUCED_PRECISION_PARTS, build_model, count_parameters
from presegment.predict import segment
from presegment.storage import save_model
from workflow.core.augment import CropSampler
from workflow.core.labels import relabel, remove_small
from workflow.core.metrics import mean_scores, score_image
from workflow.core.optim import TrainingRun
from workflow.core.precision import dtype_name, reduce_precision
from workflow.core.runtime import device_name
from workflow.core.tensors import image_tensor

log = logging.getLogger(__name__)


Pair = tuple[np.ndarray, np.ndarray]


def make_target(labels: np.ndarray, min_pixels: int) -> dict[str, torch.Tensor]:
    """torchvision detection target (boxes, labels, masks) from a label image."""
    labels = remove_small(labels, min_pixels)
    count = int(labels.max())
    masks = np.stack([labels == k for k in range(1, count + 1)]) if count else np.zeros((0, *labels.shape), bool)
    boxes = np.zeros((count, 4), np.float32)
    for k, mask in enumerate(masks):
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        boxes[k] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return {
        "boxes": torch.from_numpy(boxes),
        "labels": torch.ones(count, dtype=torch.int64),
        "masks": torch.from_numpy(masks.astype(np.uint8)),
    }


def detection_batch(sampler: CropSampler, cfg: TrainConfig, device: torch.device) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """One batch of augmented crops as torchvision detection inputs and targets."""
    images, targets = [], []
    for image, labels in sampler.sample(cfg.batch_size):
        images.append(image_tensor(image, device))
        targets.append({k: v.to(device) for k, v in make_target(relabel(labels), cfg.min_object_pixels).items()})
    return images, targets


def validate(model: nn.Module, pairs: list[Pair], detect_cfg: DetectConfig) -> dict[str, float]:
    """Mean DSB score, AP@0.5 etc. of the model on size-normalised validation pairs."""
    model.eval()
    scores = [score_image(labels, segment(model, image, detect_cfg)) for image, labels in pairs]
    model.train()
    return mean_scores(scores)


def train(
    train_pairs: list[Pair],
    val_pairs: list[Pair],
    arch: Architecture,
    cfg: TrainConfig,
    out_dir: str | Path,
    card: dict,
    device: torch.device | str = "cpu",
    resume: bool = True,
    initial_model: nn.Module | None = None,
    groups: list[str] | None = None,
    detect_cfg: DetectConfig | None = None,
    teacher: nn.Module | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict:
    """Train, validating every `val_every` iterations; returns the best validation figures.
    `groups` (an image type per training pair) balances the sampling between types.
    Validation detects with `detect_cfg`'s thresholds (the run's own settings; without test-time views, which
    multiply the cost), so the model kept is the best under the settings it will run with.
    With a `teacher` the model learns the teacher's outputs on the crops instead of their masks (`presegment.distill`).
    `dtype` bfloat16: the parts that compute in it at inference (`REDUCED_PRECISION_PARTS`) train in it too
    (`workflow.core.precision`; 1.3-1.6x the iterations per minute on a CPU with AMX).

    `out_dir/checkpoint.pt` lets a rerun resume; `out_dir/model/` holds the best model.
    `card` (training data description etc.) is written into the model's `model.json`.
    """
    out_dir, device = Path(out_dir), torch.device(device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = reduce_precision((initial_model or build_model(arch)).to(device).train(), REDUCED_PRECISION_PARTS, dtype)
    if teacher is not None:
        teacher.to(device).eval().requires_grad_(False)
        freeze_batch_norm(model)
    model.roi_heads.fg_bg_sampler.batch_size_per_image = cfg.box_samples_per_image
    run = TrainingRun(model, cfg, out_dir, rng, device, resume, cfg.grad_clip)
    sampler = CropSampler(train_pairs, cfg.crop_size, rng, cfg.augment, groups)
    val_subset = val_pairs[: cfg.val_limit] if cfg.val_limit else val_pairs
    val_detect = detect_cfg or DetectConfig()
    running: dict[str, float] = {}

    def validate_and_keep() -> None:
        """Validate; save the model when it is the best so far; checkpoint."""
        figures = validate(model, val_subset, val_detect)
        if teacher is not None:
            freeze_batch_norm(model)
        log.info("validation at %d: DSB %.4f AP50 %.4f", run.iteration, figures["dsb"], figures["ap50"])
        if run.record({"iteration": run.iteration, "minutes": round(run.minutes, 1), **figures}, "dsb"):
            save_model(out_dir / "model", model, arch, _card(card, cfg, run.state, device, dtype, model, len(train_pairs), len(val_subset)))
        run.save_checkpoint()

    while not run.finished:
        images, targets = detection_batch(sampler, cfg, device)
        with run.autocast():
            losses = distillation_losses(teacher, model, images) if teacher is not None else model(images, targets)
        run.step(sum(losses.values()))
        for name, value in losses.items():
            running[name] = running.get(name, 0.0) + float(value.detach())
        if run.iteration % cfg.log_every == 0:
            parts = " ".join(f"{k.replace('loss_', '')} {v / cfg.log_every:.3f}" for k, v in running.items())
            log.info(
                "it %d/%d lr %.2e %s (%.1f min, about %.0f min left)", run.iteration, cfg.iterations, run.learning_rate, parts, run.minutes, run.minutes_left
            )
            running = {}
        if run.validation_due():
            validate_and_keep()
    if run.out_of_time:
        log.info("time limit of %.0f minutes reached at iteration %d", cfg.max_minutes, run.iteration)
    if run.state["best"] is None:  # 0 iterations: the starting model as it is (e.g. narrowed), validated and kept
        validate_and_keep()
    return run.state["best"]


def _card(card: dict, cfg: TrainConfig, state: dict, device: torch.device, dtype: torch.dtype, model: nn.Module, n_train: int, n_val: int) -> dict:
    """The training part of `model.json`."""
    return {
        **card,
        "parameters": count_parameters(model),
        "training": {
            "iterations": state["iteration"],
            "wall_minutes": round(state["elapsed"] / 60, 1),
            "hardware": device_name(device),
            "precision": dtype_name(dtype),
            "train_images": n_train,
            "settings": asdict(cfg),
        },
        "validation": {"images": n_val, "scale": "ground-truth median diameter", **state["best"]},
    }
