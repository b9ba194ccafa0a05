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
from workflow.core.views import unview_tensor, view_tensor


@torch.inference_mode()
def _probability(model: nn.Module, x: torch.Tensor, views: tuple[str, ...]) -> torch.Tensor:
    """Sigmoid outputs on `x`, averaged with those on its `views` (each put back on the image)."""
    total = torch.sigmoid(model(x))
    for view in views:
        total = total + unview_tensor(torch.sigmoid(model(view_tensor(x, view))), view)
    return total / (1 + len(views))


def predict_maps(
    model: nn.Module, rgb8: np.ndarray, arch_stride: int, mean: tuple, std: tuple, cfg: UNetPredictConfig, views: tuple[str, ...] = ()
) -> np.ndarray:
    """(C, H, W) float32 sigmoid outputs (foreground first) of an (H, W, 3) uint8 image, tiles blended by averaging,
    each tile's averaged over its test-time `views` (workflow.core.views)."""
    height, width = rgb8.shape[:2]
    pad_y, pad_x = (-height) % arch_stride, (-width) % arch_stride
    tile = max(arch_stride, cfg.tile_size - cfg.tile_size % arch_stride)
    padded = np.pad(rgb8, ((0, pad_y), (0, pad_x), (0, 0)), mode="reflect") if pad_y or pad_x else rgb8
    device = device_of(model)

    def predict(crops: list[np.ndarray]) -> np.ndarray:  # tiles of one image share a shape
        inputs = image_tensor(np.stack(crops), device, mean, std)
        return _probability(model, inputs, views).float().cpu().numpy()

    return blend_in_tiles(predict, padded, tile, cfg.tile_overlap, cfg.batch_size)[:, :height, :width]


@dataclass
class EnsembleMaps:
    """The ensemble's mean foreground probability, and mean centerness of the members that predict it (else None)."""

    foreground: np.ndarray
    centerness: np.ndarray | None


def ensemble_maps(members: list[tuple[nn.Module, dict]], rgb8: np.ndarray, cfg: UNetPredictConfig, views: tuple[str, ...] = ()) -> EnsembleMaps:
    """Mean maps of the ensemble members (model, card) on one image, with test-time `views`."""
    if not members:
        raise ValueError("the ensemble has no members")
    foreground, centerness = [], []
    for model, card in members:
        arch = card["architecture"]
        maps = predict_maps(model, rgb8, 2 ** arch["depth"], tuple(arch["image_mean"]), tuple(arch["image_std"]), cfg, views)
        foreground.append(maps[0])
        if arch.get("centerness", False):
            centerness.append(maps[1])
    return EnsembleMaps(np.mean(foreground, axis=0).astype(np.float32), np.mean(centerness, axis=0).astype(np.float32) if centerness else None)
