"""The refined ("full") path on one image, composed from the stages:
presegment (size) -> rescale -> U-Net ensemble -> Mask R-CNN at several scales -> refine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from postprocess.refine import RefineParams, merges_scales, refine
from presegment.pipeline import segment_at_scale, zoom_for
from unet_ensemble.config import UNetPredictConfig
from unet_ensemble.predict import EnsembleMaps, ensemble_maps
from workflow.config import NucflowConfig
from workflow.core.images import resize_image, scaled_shape, size_scale
from workflow.core.labels import resize_labels


@dataclass
class NetworkOutputs:
    """Everything post-processing needs, at the size-normalised ("common") resolution."""

    scales: list[np.ndarray]
    probability: np.ndarray
    diameter: float | None
    target_diameter: float
    centerness: np.ndarray | None = None  # from ensemble members that predict it


@dataclass
class Models:
    """The loaded networks: the presegmenter, and the U-Net ensemble's members on the full path (else none)."""

    presegmenter: nn.Module
    target_diameter: float  # the presegmenter's nucleus size: the common resolution
    members: list[tuple[nn.Module, dict]]
    unet_target_diameter: float | None = None  # the U-Nets' nucleus size when it differs (None: the same)


def network_outputs(models: Models, rgb8: np.ndarray, cfg: NucflowConfig, diameter: float | None, params: RefineParams | None = None) -> NetworkOutputs:
    """U-Net ensemble map and multi-scale Mask R-CNN labels of one image of median nucleus `diameter` px (views vote at the first scale).

    `diameter` None (no nucleus found by the size estimate) runs the networks on the image as it is.
    Given the refinement `params`, the further scales run only for images whose scales `refine`
    merges (the parameter search, which varies that rule, passes none and gets every scale).
    """
    detect = cfg.presegment.detect
    scale = size_scale(diameter, models.target_diameter, cfg.size.min_scale, cfg.size.max_scale)
    common = resize_image(rgb8, scaled_shape(rgb8.shape, scale))
    maps = ensemble_at_own_scale(models, common, cfg.unet.predict, cfg.views.unet)
    factors = cfg.full.mrcnn_scales if params is None or merges_scales(diameter, params) else cfg.full.mrcnn_scales[:1]
    zoom = zoom_for(diameter, detect)
    views = [cfg.views.full] + [()] * (len(factors) - 1)  # the further scales have 4x the pixels or more: the image alone
    scales = [segment_at_scale(models.presegmenter, common, factor * zoom, detect, views=v) for factor, v in zip(factors, views)]
    return NetworkOutputs(scales, maps.foreground, diameter, models.target_diameter, maps.centerness)


def ensemble_at_own_scale(models: Models, common: np.ndarray, cfg: UNetPredictConfig, views: tuple[str, ...] = ()) -> EnsembleMaps:
    """Ensemble maps of the common-resolution image, computed with nuclei at the U-Nets' own training
    size (a presegmenter and an ensemble trained at different sizes still work together)."""
    ratio = (models.unet_target_diameter or models.target_diameter) / models.target_diameter
    if abs(ratio - 1.0) < 1e-3:
        return ensemble_maps(models.members, common, cfg, views)
    maps = ensemble_maps(models.members, resize_image(common, scaled_shape(common.shape, ratio)), cfg, views)
    shape = common.shape[:2]
    return EnsembleMaps(resize_map(maps.foreground, shape), None if maps.centerness is None else resize_map(maps.centerness, shape))


def resize_map(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A [0, 1] network map resized to `shape` (linear interpolation, kept within [0, 1])."""
    return np.clip(resize_image(values.astype(np.float32), shape), 0, 1)


def refined_labels(outputs: NetworkOutputs, params: RefineParams, shape: tuple[int, int], contour_sigma: float = 0.0) -> np.ndarray:
    """Post-processed labels, brought back to the image's own `shape` with outlines smoothed by
    `contour_sigma` pixels of the common resolution (0: nearest-neighbour)."""
    labels = refine(outputs.scales, outputs.probability, outputs.diameter, outputs.target_diameter, params, outputs.centerness)
    return resize_labels(labels, shape, contour_sigma)


def intermediate_maps(outputs: NetworkOutputs, mrcnn_scales: tuple[float, ...], shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """The ensemble's foreground probability (and centerness) and each computed Mask R-CNN scale's labels, at the image's `shape`."""
    maps = {"probability": resize_map(outputs.probability, shape)}
    if outputs.centerness is not None:
        maps["centerness"] = resize_map(outputs.centerness, shape)
    for factor, labels in zip(mrcnn_scales, outputs.scales):
        maps[f"mrcnn_x{factor:g}"] = resize_labels(labels, shape)
    return maps
