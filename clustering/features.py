"""Style descriptor of one image: colour and intensity statistics in RGB and L*a*b*, texture
(grey-level co-occurrence and local binary patterns) and size, as one vector.
"""

from __future__ import annotations

import numpy as np
from skimage.color import rgb2gray, rgb2lab
from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

from workflow.core.images import resize_image, scaled_shape

GLCM_PROPERTIES = ("contrast", "homogeneity", "energy", "correlation")
GLCM_DISTANCES = (1, 4)
LBP_POINTS = 8  # uniform LBP with 8 neighbours has 10 distinct codes
FEATURE_NAMES = (
    *(f"rgb_{stat}_{c}" for stat in ("mean", "std") for c in "rgb"),
    *(f"lab_{stat}_{c}" for stat in ("mean", "std") for c in "lab"),
    *(f"glcm_{p}_d{d}" for p in GLCM_PROPERTIES for d in GLCM_DISTANCES),
    *(f"lbp_{k}" for k in range(LBP_POINTS + 2)),
    "log_height",
    "log_width",
)


def style_features(rgb8: np.ndarray, max_side: int = 512) -> np.ndarray:
    """The descriptor of an (H, W, 3) uint8 image (texture measured on a copy at most `max_side` px)."""
    height, width = rgb8.shape[:2]
    small = resize_image(rgb8, scaled_shape(rgb8.shape, min(1.0, max_side / max(height, width))))
    rgb = small.reshape(-1, 3).astype(np.float64) / 255
    lab = rgb2lab(small).reshape(-1, 3)
    gray = (rgb2gray(small) * 255).astype(np.uint8)
    glcm = graycomatrix(gray // 8, GLCM_DISTANCES, (0, np.pi / 2), levels=32, symmetric=True, normed=True)
    texture = [graycoprops(glcm, p).mean(axis=1) for p in GLCM_PROPERTIES]  # averaged over the two directions
    codes = local_binary_pattern(gray, LBP_POINTS, 1, method="uniform")
    lbp = np.bincount(codes.astype(int).ravel(), minlength=LBP_POINTS + 2) / codes.size
    vector = np.concatenate([rgb.mean(0), rgb.std(0), lab.mean(0), lab.std(0), np.concatenate(texture), lbp, [np.log(height), np.log(width)]])
    return np.nan_to_num(vector, nan=0.0)  # GLCM correlation is undefined on a constant image
