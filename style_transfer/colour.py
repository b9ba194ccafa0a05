"""Colour transfer: an annotated image redrawn in the colours of another image, no GAN needed.

An image's style here is two colours in CIE L*a*b*: the median colour of its nuclei and that of its
background (found with a segmentation of it, e.g. the presegmenter's). An annotated image of any
type is redrawn by placing each pixel on the line between the target's background and nucleus
colours, at the position its own brightness has between its background and nucleus levels. So a
fluorescence image (bright nuclei on black) becomes one with dark purple nuclei on a pale pink
background when the target is H&E, while its nucleus masks stay exact: cheap training pairs in the
user's colours (issue 21: pix2pix takes hours per style on a CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MIN_PIXELS = 50  # fewer nucleus or background pixels than this: no reliable colour
MIN_CONTRAST = 0.02  # a source whose nuclei and background differ less in brightness (0-1) is not redrawn


@dataclass(frozen=True)
class Style:
    """The median L*a*b* colours of an image's nuclei and background."""

    nucleus: tuple[float, float, float]
    background: tuple[float, float, float]


def nucleus_mask(labels: np.ndarray) -> np.ndarray | None:
    """The nucleus pixels, or None when nuclei or background have too few pixels to measure."""
    inside = labels > 0
    return inside if min(int(inside.sum()), int((~inside).sum())) >= MIN_PIXELS else None


def to_lab(image: np.ndarray) -> np.ndarray:
    """An 8-bit RGB image as float L*a*b* (L 0-100)."""
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def style_of(image: np.ndarray, labels: np.ndarray) -> Style | None:
    """The style of an 8-bit RGB image whose nuclei are `labels`; None when it has too few nucleus
    or background pixels to tell."""
    inside = nucleus_mask(labels)
    if inside is None:
        return None
    lab = to_lab(image)
    return Style(tuple(float(v) for v in np.median(lab[inside], axis=0)), tuple(float(v) for v in np.median(lab[~inside], axis=0)))


def recolour(image: np.ndarray, labels: np.ndarray, style: Style) -> np.ndarray | None:
    """`image` (8-bit RGB, nuclei `labels`) redrawn in `style`; None when its nuclei and background
    have the same brightness (nothing to map)."""
    inside = nucleus_mask(labels)
    if inside is None:
        return None
    gray = image.astype(np.float32).mean(axis=2) / 255.0
    nucleus_level, background_level = float(np.median(gray[inside])), float(np.median(gray[~inside]))
    if abs(nucleus_level - background_level) < MIN_CONTRAST:
        return None
    position = np.clip((gray - background_level) / (nucleus_level - background_level), -0.5, 1.5)  # 0 background, 1 nucleus
    background, nucleus = np.asarray(style.background, np.float32), np.asarray(style.nucleus, np.float32)
    lab = background + position[..., None] * (nucleus - background)
    lab[..., 0] = np.clip(lab[..., 0], 0.0, 100.0)
    rgb = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_LAB2RGB)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
