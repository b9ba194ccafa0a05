"""Per-nucleus measurements (scikit-image regionprops) and contour overlays of one label image."""

from __future__ import annotations

import os

import cv2
import numpy as np
from skimage.measure import regionprops
from skimage.segmentation import find_boundaries

from workflow.core.files import atomic_path, csv_text

MEASUREMENT_COLUMNS = ("image", "label", "area", "centroid_y", "centroid_x", "equivalent_diameter", "eccentricity", "mean_intensity")
OVERLAY_COLOUR = (255, 255, 0)  # yellow contours show on dark fluorescence and on pink H&E alike


def intensity_plane(image: np.ndarray) -> np.ndarray:
    """The image's own intensities as one float plane: gray as is, colour as the mean of R, G, B (alpha ignored)."""
    if image.ndim == 2:
        return image.astype(np.float64)
    return image[..., :3].astype(np.float64).mean(axis=2)


def measure_nuclei(stem: str, labels: np.ndarray, image: np.ndarray) -> list[tuple]:
    """One row per nucleus (see MEASUREMENT_COLUMNS); intensities in the input file's own units."""
    rows = []
    for region in regionprops(labels, intensity_image=intensity_plane(image)):
        y, x = region.centroid
        rows.append(
            (
                stem,
                region.label,
                int(region.area),
                round(y, 2),
                round(x, 2),
                round(region.equivalent_diameter_area, 3),
                round(region.eccentricity, 4),
                round(float(region.intensity_mean), 3),
            )
        )
    return rows


def measurements_csv(rows: list[tuple]) -> str:
    """CSV text of measurement rows under MEASUREMENT_COLUMNS."""
    return csv_text(MEASUREMENT_COLUMNS, rows)


def overlay(rgb8: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The image with every nucleus outlined (inner boundary pixels), as (H, W, 3) uint8 RGB."""
    drawn = rgb8.copy()
    drawn[find_boundaries(labels, mode="inner")] = OVERLAY_COLOUR
    return drawn


def png_bytes(rgb8: np.ndarray) -> bytes:
    """An RGB uint8 image encoded as PNG."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode an image of shape {rgb8.shape} as PNG")
    return data.tobytes()


def write_png(path: str | os.PathLike, rgb8: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(png_bytes(rgb8))
