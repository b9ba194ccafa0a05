"""Per-nucleus measurements (scikit-image regionprops) and contour overlays of one label image."""

from __future__ import annotations

import os

import cv2
import numpy as np
from skimage.measure import regionprops
from skimage.segmentation import find_boundaries

from workflow.core.files import atomic_path, csv_text

PIXEL_COLUMNS = ("image", "label", "area", "centroid_y", "centroid_x", "equivalent_diameter", "eccentricity", "mean_intensity")
MICROMETRE_COLUMNS = ("area_um2", "centroid_y_um", "centroid_x_um", "equivalent_diameter_um")  # empty when the pixel size is unknown
MEASUREMENT_COLUMNS = PIXEL_COLUMNS + MICROMETRE_COLUMNS
OVERLAY_COLOUR = (255, 255, 0)  # yellow contours show on dark fluorescence and on pink H&E alike


def intensity_plane(image: np.ndarray) -> np.ndarray:
    """The image's own intensities as one float plane: gray as is, colour as the mean of R, G, B (alpha ignored)."""
    if image.ndim == 2:
        return image.astype(np.float64)
    return image[..., :3].astype(np.float64).mean(axis=2)


def measure_nuclei(stem: str, labels: np.ndarray, image: np.ndarray, pixel_size: float | None = None) -> list[tuple]:
    """One row per nucleus (see MEASUREMENT_COLUMNS), unrounded; intensities in the input file's own
    units; the micrometre columns filled when `pixel_size` (um per pixel) is known, else empty."""
    rows = []
    for region in regionprops(labels, intensity_image=intensity_plane(image)):
        y, x = region.centroid
        area, diameter = int(region.area), region.equivalent_diameter_area
        in_pixels = (stem, region.label, area, y, x, diameter, region.eccentricity, float(region.intensity_mean))
        if pixel_size is None:
            rows.append(in_pixels + ("",) * len(MICROMETRE_COLUMNS))
        else:
            rows.append(in_pixels + (area * pixel_size**2, y * pixel_size, x * pixel_size, diameter * pixel_size))
    return rows


DECIMALS = {"centroid_y": 2, "centroid_x": 2, "equivalent_diameter": 3, "eccentricity": 4, "mean_intensity": 3}  # the CSV's; um columns get 4


def measurements_csv(rows: list[tuple]) -> str:
    """CSV text of measurement rows under MEASUREMENT_COLUMNS, floats rounded for reading."""

    def rounded(column: str, value: object) -> object:
        return round(value, DECIMALS.get(column, 4)) if isinstance(value, float) else value  # numpy's float64 is a float

    return csv_text(MEASUREMENT_COLUMNS, (tuple(rounded(c, v) for c, v in zip(MEASUREMENT_COLUMNS, row)) for row in rows))


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
