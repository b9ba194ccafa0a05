"""The fast path on one image: estimate nucleus size, rescale, presegment, scale back."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from torch import nn

from presegment.predict import DetectConfig, segment
from workflow.images import resize_image, scaled_shape, size_scale
from workflow.labels import median_diameter, resize_labels

log = logging.getLogger(__name__)


@dataclass
class Presegmentation:
    """Labels at the image's own size, the median nucleus diameter used, and how it was found."""

    labels: np.ndarray
    diameter: float | None
    scale: float
    size_source: str  # "given", "estimated" or "unknown" (nothing found: unscaled fallback)


def segment_at_scale(model: nn.Module, rgb8: np.ndarray, scale: float, cfg: DetectConfig, contour_sigma: float = 0.0) -> np.ndarray:
    """Presegment `rgb8` resized by `scale`; labels come back at the original size, with outlines
    smoothed by `contour_sigma` pixels of the resized image when it is > 0 (else nearest-neighbour)."""
    resized = abs(scale - 1.0) >= 1e-3
    labels = segment(model, resize_image(rgb8, scaled_shape(rgb8.shape, scale)) if resized else rgb8, cfg)
    return resize_labels(labels, rgb8.shape[:2], contour_sigma) if resized or contour_sigma > 0 else labels


def estimate_diameter(model: nn.Module, rgb8: np.ndarray, cfg: DetectConfig, probe_scale: float = 1.0) -> float | None:
    """Median nucleus diameter (original pixels) from a first pass at `probe_scale`, or None if nothing is found."""
    return median_diameter(segment_at_scale(model, rgb8, probe_scale, cfg))


def zoom_for(diameter: float | None, cfg: DetectConfig) -> float:
    """The extra enlargement `cfg.zoom`, applied only when the nucleus size is known (an image
    whose size could not be estimated is segmented as it is)."""
    return cfg.zoom if diameter is not None else 1.0


def presegment(
    model: nn.Module,
    rgb8: np.ndarray,
    target_diameter: float,
    cfg: DetectConfig,
    diameter: float | None = None,
    probe_scale: float = 1.0,
    scale_limits: tuple[float, float] = (0.1, 8.0),
    contour_sigma: float = 0.0,
) -> Presegmentation:
    """Segment nuclei so that the network sees them at `target_diameter` x `cfg.zoom` px.

    Without a given `diameter` it is estimated by a first pass; when that finds nothing,
    the image is segmented unscaled and `size_source` says so. `contour_sigma` (pixels at
    `target_diameter`) smooths the outlines as the labels return to the image's size.
    """
    source = "given"
    if diameter is None:
        diameter = estimate_diameter(model, rgb8, cfg, probe_scale)
        source = "estimated" if diameter is not None else "unknown"
    scale = size_scale(diameter, target_diameter, *scale_limits)
    zoom = zoom_for(diameter, cfg)
    return Presegmentation(segment_at_scale(model, rgb8, scale * zoom, cfg, contour_sigma * zoom), diameter, scale, source)
