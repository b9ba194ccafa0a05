"""Training one U-Net ensemble member on size-normalised (image, labels) pairs.

Target: the nucleus foreground as float, blurred by the member's `target_sigma` (kept
float: the reference's targets could be zeroed by a dtype conversion), and for members
that predict it each nucleus' normalised distance to its edge ("centerness"). Loss: soft
Jaccard + BCE per channel. Warm-up + cosine schedule that really runs, validation with foreground
IoU, early stopping, best member kept, resumable.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from torch import nn

from unet_ensemble.config import UNetArchitecture, UNetPredictConfig, UNetTrainConfig
from unet_ensemble.model import build_unet, stride
from unet_ensemble.predict import predict_maps
from unet_ensemble.storage import save_member
from workflow.core.augment import CropSampler
from workflow.core.optim import TrainingRun
from workflow.core.precision import compute_in, dtype_name
from workflow.core.runtime import device_name
from workflow.core.tensors import image_tensor

log = logging.getLogger(__name__)
Pair = tuple[np.ndarray, np.ndarray]


def foreground_target(labels: np.ndarray, sigma: float) -> np.ndarray:
    """Float foreground in [0, 1], Gaussian-blurred by `sigma` pixels when sigma > 0."""
    target = (labels > 0).astype(np.float32)
    return cv2.GaussianBlur(target, (0, 0), sigma) if sigma > 0 else target


def centerness_target(labels: np.ndarray) -> np.ndarray:
    """Each object's Euclidean distance to its own edge, divided by its largest such distance:
    1 at its centre, towards 0 at its edge and where it touches a neighbour. The frame is not
    an edge (a nucleus cut by a crop keeps its true distances).
    """
    target = np.zeros(labels.shape, np.float32)
    for index, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        grown = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in box)
        mask = labels[grown] == index
        distance = ndi.distance_transform_edt(mask)
        window = target[grown]
        window[mask] = distance[mask] / distance.max()
    return target


def member_targets(labels: np.ndarray, sigma: float, arch: UNetArchitecture) -> np.ndarray:
    """(C, H, W) targets of one crop: blurred foreground, then centerness when the member predicts it."""
    channels = [foreground_target(labels, sigma)] + ([centerness_target(labels)] if arch.centerness else [])
    return np.stack(channels)


def jaccard_bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft Jaccard (IoU) loss plus binary cross-entropy, both on float targets."""
    probability = torch.sigmoid(logits)
    intersection = (probability * target).sum(dim=(1, 2, 3))
    union = probability.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3)) - intersection
    jaccard = 1 - (intersection + 1) / (union + 1)
    return jaccard.mean() + F.binary_cross_entropy_with_logits(logits, target)


def _iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    union = (predicted | truth).sum()
    return 1.0 if union == 0 else float((predicted & truth).sum() / union)


def validation_scores(model: nn.Module, pairs: list[Pair], arch: UNetArchitecture) -> dict:
    """Mean foreground IoU (probability > 0.5 against labels > 0) on validation pairs; for a
    centerness member also the mean IoU of its centres (centerness > 0.5 against the target's),
    and `score`, the mean of the two (the one early stopping follows).
    """
    model.eval()
    foreground, centres = [], []
    for image, labels in pairs:
        maps = predict_maps(model, image, stride(arch), arch.image_mean, arch.image_std, UNetPredictConfig()) > 0.5
        foreground.append(_iou(maps[0], labels > 0))
        if arch.centerness:
            centres.append(_iou(maps[1], centerness_target(labels) > 0.5))
    model.train()
    scores = {"foreground_iou": float(np.mean(foreground))}
    if centres:
        scores["centre_iou"] = float(np.mean(centres))
    return {**scores, "score": float(np.mean(list(scores.values())))}


def _batch(sampler: CropSampler, cfg: UNetTrainConfig, arch: UNetArchitecture, sigma: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    crops = sampler.sample(cfg.batch_size)
    images = image_tensor(np.stack([c[0] for c in crops]), device, arch.image_mean, arch.image_std)
    targets = torch.from_numpy(np.stack([member_targets(c[1], sigma, arch) for c in crops])).to(device)
    return images, targets


def train_member(
    train_pairs: list[Pair],
    val_pairs: list[Pair],
    arch: UNetArchitecture,
    cfg: UNetTrainConfig,
    target_sigma: float,
    seed: int,
    out_dir: str | Path,
    card: dict,
    device: torch.device | str = "cpu",
    resume: bool = True,
    initial_model: nn.Module | None = None,
    groups: list[str] | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict:
    """Train one member; `out_dir/model/` gets the best one, `out_dir/checkpoint.pt` the latest state.
    `groups` (an image type per training pair) balances the sampling between types; `dtype` bfloat16: the network
    computes in it, as at inference (`workflow.core.precision`; about 2.5x the iterations per minute on a CPU with AMX)."""
    out_dir, device = Path(out_dir), torch.device(device)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = compute_in((initial_model or build_unet(arch)).to(device).train(), dtype)
    run = TrainingRun(model, cfg, out_dir, rng, device, resume)
    sampler = CropSampler(train_pairs, cfg.crop_size, rng, cfg.augment, groups)
    running = 0.0
    while not run.finished:
        images, targets = _batch(sampler, cfg, arch, target_sigma, device)
        with run.autocast():
            logits = model(images).float()
            loss = sum(jaccard_bce_loss(logits[:, c : c + 1], targets[:, c : c + 1]) for c in range(targets.shape[1]))
        run.step(loss)
        running += float(loss.detach())
        if run.iteration % cfg.log_every == 0:
            log.info(
                "member it %d/%d lr %.2e loss %.4f (%.1f min, about %.0f min left)",
                run.iteration,
                cfg.iterations,
                run.learning_rate,
                running / cfg.log_every,
                run.minutes,
                run.minutes_left,
            )
            running = 0.0
        if run.validation_due():
            entry = {"iteration": run.iteration, "minutes": round(run.minutes, 1), **validation_scores(model, val_pairs, arch)}
            log.info(
                "member (sigma %.1f, seed %d) validation at %d: %s",
                target_sigma,
                seed,
                run.iteration,
                ", ".join(f"{k} {v:.4f}" for k, v in entry.items() if k not in ("iteration", "minutes")),
            )
            if run.record(entry, "score"):
                training = {
                    "iterations": run.iteration,
                    "wall_minutes": entry["minutes"],
                    "hardware": device_name(device),
                    "precision": dtype_name(dtype),
                    "train_images": len(train_pairs),
                    "settings": asdict(cfg),
                }
                save_member(
                    out_dir / "model",
                    model,
                    arch,
                    {**card, "target_sigma": target_sigma, "seed": seed, "training": training, "validation": {"images": len(val_pairs), **entry}},
                )
            run.save_checkpoint()
    if run.state["stale"] >= cfg.patience:
        log.info("early stop at iteration %d: no improvement in %d validations", run.iteration, cfg.patience)
    return run.state["best"]
