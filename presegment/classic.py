"""The classic baseline: Otsu threshold + distance-transform watershed (scikit-image).

It runs on the same size-normalised input as the learned models, so it is the floor
every learned model must beat.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import gaussian, threshold_otsu
from skimage.measure import label as connected_components
from skimage.segmentation import watershed

from presegment.config import ClassicConfig
from workflow.core.images import resize_image, scaled_shape, size_scale
from workflow.core.labels import fill_holes, median_diameter, relabel, remove_small, resize_labels


def foreground(gray: np.ndarray, sigma: float) -> np.ndarray:
    """Otsu foreground of a gray image; inverted when most pixels are 'bright' (dark nuclei on a light background)."""
    smooth = gaussian(gray, sigma=sigma, preserve_range=True) if sigma > 0 else gray
    if smooth.max() <= smooth.min():
        return np.zeros(gray.shape, dtype=bool)
    mask = smooth > threshold_otsu(smooth)
    if mask.mean() > 0.5:
        mask = ~mask
    return ndi.binary_fill_holes(mask)


def estimate_diameter(rgb8: np.ndarray, settings: ClassicConfig) -> float | None:
    """Median equivalent diameter of the Otsu components at the original scale."""
    mask = foreground(rgb8.mean(axis=2), settings.smoothing_sigma)
    components = remove_small(connected_components(mask), 10)
    return median_diameter(components)


def segment(
    rgb8: np.ndarray,
    settings: ClassicConfig,
    target_diameter: float,
    diameter: float | None,
    min_scale: float = 0.1,
    max_scale: float = 8.0,
) -> np.ndarray:
    """Label image of the nuclei in an (H, W, 3) uint8 image, at the image's own size.

    The image is rescaled so its median nucleus (`diameter`: see estimate_diameter; None = unknown,
    left unscaled) is `target_diameter` px, thresholded, split by watershed, and the labels scaled back.
    """
    scale = size_scale(diameter, target_diameter, min_scale, max_scale)
    gray = resize_image(rgb8.mean(axis=2).astype(np.float32), scaled_shape(rgb8.shape, scale))
    mask = foreground(gray, settings.smoothing_sigma)
    target_area = np.pi * (target_diameter / 2) ** 2
    mask = remove_small(connected_components(mask), int(settings.min_size_fraction * target_area)) > 0
    distance = ndi.distance_transform_edt(mask)
    min_distance = max(1, int(settings.peak_distance_fraction * target_diameter))
    peaks = peak_local_max(distance, min_distance=min_distance, labels=connected_components(mask), exclude_border=False)
    markers = np.zeros(mask.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-distance, markers, mask=mask)
    labels = fill_holes(resize_labels(labels, rgb8.shape[:2]))
    return relabel(labels)
