"""Synthetic nucleus masks in the image of real ones: shapes taken from real label images
(a cluster's presegmentation, or given masks), rotated and rescaled to the observed area
distribution, placed without overlap (touching a neighbour only with a small probability),
as many as the observed density predicts. Seeded: the same seed gives the same masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage.measure import regionprops

from style_transfer.config import SyntheticMaskConfig


@dataclass
class ShapeBank:
    """Real nucleus shapes (binary crops), their areas, and the nuclei per pixel of their images."""

    shapes: list[np.ndarray]
    areas: np.ndarray
    density: float


def collect_shapes(label_images: list[np.ndarray], min_area: int = 12) -> ShapeBank:
    """Every whole object (not cut by the image border) of the label images, with the mean density."""
    shapes, areas, counts, pixels = [], [], 0, 0
    for labels in label_images:
        height, width = labels.shape
        regions = [r for r in regionprops(labels) if r.area >= min_area]
        counts, pixels = counts + len(regions), pixels + height * width
        for region in regions:
            y0, x0, y1, x1 = region.bbox
            if y0 > 0 and x0 > 0 and y1 < height and x1 < width:
                shapes.append(region.image.copy())
                areas.append(region.area)
    if not shapes:
        raise ValueError("no whole nucleus found in the given label images to take shapes from")
    return ShapeBank(shapes, np.array(areas, float), counts / max(pixels, 1))


def transformed_shape(shape: np.ndarray, area: float, angle: float) -> np.ndarray:
    """`shape` rotated by `angle` degrees and rescaled to about `area` pixels (binary, tightly cropped)."""
    factor = np.sqrt(area / max(shape.sum(), 1))
    side = int(np.ceil(np.hypot(*shape.shape) * factor)) + 4
    canvas = np.zeros((side, side), np.uint8)
    scaled = cv2.resize(
        shape.astype(np.uint8), (max(1, round(shape.shape[1] * factor)), max(1, round(shape.shape[0] * factor))), interpolation=cv2.INTER_NEAREST
    )
    top, left = (side - scaled.shape[0]) // 2, (side - scaled.shape[1]) // 2
    canvas[top : top + scaled.shape[0], left : left + scaled.shape[1]] = scaled
    rotation = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0)
    rotated = cv2.warpAffine(canvas, rotation, (side, side), flags=cv2.INTER_NEAREST) > 0
    ys, xs = np.nonzero(rotated)
    return rotated[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] if ys.size else shape


def synthesize_mask(bank: ShapeBank, cfg: SyntheticMaskConfig, rng: np.random.Generator) -> np.ndarray:
    """One (size, size) int32 label image of nuclei drawn from `bank`."""
    labels = np.zeros((cfg.size, cfg.size), np.int32)
    for _ in range(rng.poisson(bank.density * cfg.size**2)):
        shape = transformed_shape(bank.shapes[rng.integers(len(bank.shapes))], rng.choice(bank.areas), rng.uniform(0, 360))
        height, width = shape.shape
        if height + 2 >= cfg.size or width + 2 >= cfg.size:
            continue
        padded = np.pad(shape, 1)
        # Checked against the existing nuclei: the shape itself (touching allowed) or grown by 1 px (a gap kept).
        footprint = padded if rng.random() < cfg.touching_probability else cv2.dilate(padded.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        for _ in range(cfg.attempts):
            y, x = rng.integers(0, cfg.size - height - 1), rng.integers(0, cfg.size - width - 1)
            window = labels[y : y + height + 2, x : x + width + 2]
            if not window[footprint].any():
                window[padded] = labels.max() + 1
                break
    return labels
