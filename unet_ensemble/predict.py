"""Foreground (and centerness) maps of one size-normalised image: tiles, flips, ensemble mean."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from unet_ensemble.config import UNetPredictConfig
from workflow.core.modelfiles import device_of
from workflow.core.tensors import image_tensor
from workflow.core.tiling import blend_in_tiles


@torch.inference_mode()
def _probability(model: nn.Module, x: torch.Tensor, flips: bool) -> torch.Tensor:
    if not flips:
        return torch.sigmoid(model(x))
    total = 0
    for dims in ((), (2,), (3,), (2, 3)):
        flipped = x.flip(dims) if dims else x
        out = torch.sigmoid(model(flipped))
        total = total + (out.flip(dims) if dims else out)
    return total / 4


def predict_maps(model: nn.Module, rgb8: np.ndarray, arch_stride: int, mean: tuple, std: tuple, cfg: UNetPredictConfig) -> np.ndarray:
    """(C, H, W) float32 sigmoid outputs (foreground first) of an (H, W, 3) uint8 image, tiles blended by averaging."""
    height, width = rgb8.shape[:2]
    pad_y, pad_x = (-height) % arch_stride, (-width) % arch_stride
    tile = max(arch_stride, cfg.tile_size - cfg.tile_size % arch_stride)
    padded = np.pad(rgb8, ((0, pad_y), (0, pad_x), (0, 0)), mode="reflect") if pad_y or pad_x else rgb8
    device = device_of(model)

    def predict(crops: list[np.ndarray]) -> np.ndarray:  # tiles of one image share a shape
        inputs = image_tensor(np.stack(crops), device, mean, std)
        return _probability(model, inputs, cfg.flip_tta).float().cpu().numpy()

    return blend_in_tiles(predict, padded, tile, cfg.tile_overlap, cfg.batch_size)[:, :height, :width]


@dataclass
class EnsembleMaps:
    """The ensemble's mean foreground probability, and mean centerness of the members that predict it (else None)."""

    foreground: np.ndarray
    centerness: np.ndarray | None


def ensemble_maps(members: list[tuple[nn.Module, dict]], rgb8: np.ndarray, cfg: UNetPredictConfig) -> EnsembleMaps:
    """Mean maps of the ensemble members (model, card) on one image."""
    if not members:
        raise ValueError("the ensemble has no members")
    foreground, centerness = [], []
    for model, card in members:
        arch = card["architecture"]
        maps = predict_maps(model, rgb8, 2 ** arch["depth"], tuple(arch["image_mean"]), tuple(arch["image_std"]), cfg)
        foreground.append(maps[0])
        if arch.get("centerness", False):
            centerness.append(maps[1])
    return EnsembleMaps(np.mean(foreground, axis=0).astype(np.float32), np.mean(centerness, axis=0).astype(np.float32) if centerness else None)
