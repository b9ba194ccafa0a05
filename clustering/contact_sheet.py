"""A contact sheet: a grid of thumbnails, so a person can check a cluster's grouping at a glance."""

from __future__ import annotations

import numpy as np

from workflow.core.images import resize_image, scaled_shape

BORDER = 4
EXEMPLAR_FRAME = (255, 160, 0)  # exemplars are framed in orange


def thumbnail(image: np.ndarray, side: int = 128) -> np.ndarray:
    """`image` shrunk (never enlarged) to fit a `side` square."""
    return resize_image(image, scaled_shape(image.shape, min(1.0, side / max(image.shape[:2]))))


def contact_sheet(images: list[np.ndarray], exemplar: list[bool], side: int = 128, columns: int = 8) -> np.ndarray:
    """(H, W, 3) uint8 grid of the (H, W, 3) uint8 `images`, each fitted into a `side` square."""
    rows = -(-len(images) // columns)
    cell = side + 2 * BORDER
    sheet = np.full((rows * cell, min(columns, len(images)) * cell, 3), 255, np.uint8)
    for index, (image, framed) in enumerate(zip(images, exemplar)):
        top, left = (index // columns) * cell, (index % columns) * cell
        if framed:
            sheet[top : top + cell, left : left + cell] = EXEMPLAR_FRAME
        small = thumbnail(image, side)
        y, x = top + BORDER + (side - small.shape[0]) // 2, left + BORDER + (side - small.shape[1]) // 2
        sheet[y : y + small.shape[0], x : x + small.shape[1]] = small
    return sheet
