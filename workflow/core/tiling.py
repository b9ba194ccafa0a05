"""Large images in overlapping tiles, so memory is bounded by the tile, not by the rescaled image.

Every tile is segmented at the whole image's nucleus size. An object belongs to the one tile
whose core holds its centroid (cores meet halfway into each overlap), so a nucleus on a seam
is neither cut nor counted twice, as long as the overlap exceeds twice its radius.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from tqdm import tqdm

from workflow.core.images import tile_cores

TileResult = tuple[np.ndarray, dict[str, np.ndarray]]  # labels, named maps (labels if integer, else values)


@dataclass
class TilingConfig:
    """When and how a large image is split; sizes are in size-normalised pixels (nuclei at the target diameter)."""

    tile_size: int = 3072  # images larger than this after size normalisation are segmented in tiles
    overlap: int = 256  # must exceed the largest nucleus (8x the target diameter by default)

    def original_pixels(self, scale: float) -> tuple[int, int]:
        """Tile size and overlap in the pixels of an image that is rescaled by `scale`."""
        return max(1, math.floor(self.tile_size / scale)), math.ceil(self.overlap / scale)


def needs_tiles(shape: tuple[int, ...], tile: int) -> bool:
    """Whether an image of `shape` is larger than one tile."""
    return max(shape[:2]) > tile


def owned_objects(labels: np.ndarray, core: tuple[float, float, float, float]) -> np.ndarray:
    """`labels` with only the objects whose centroid lies in `core` (y_low, y_high, x_low, x_high), relabelled 1..n."""
    ys, xs = np.nonzero(labels)
    ids = labels[ys, xs]
    size = int(labels.max(initial=0)) + 1
    count = np.bincount(ids, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        cy = np.bincount(ids, ys, minlength=size) / count + 0.5
        cx = np.bincount(ids, xs, minlength=size) / count + 0.5
    y_low, y_high, x_low, x_high = core
    owned = (count > 0) & (cy >= y_low) & (cy < y_high) & (cx >= x_low) & (cx < x_high)
    owned[0] = False
    lookup = np.zeros(size, np.int32)
    lookup[owned] = np.arange(1, int(owned.sum()) + 1)
    return lookup[labels]


def segment_in_tiles(segment: Callable[[np.ndarray], TileResult], rgb8: np.ndarray, tile: int, overlap: int) -> TileResult:
    """Labels (and named maps) of a whole image from `segment` run on overlapping tiles of it,
    with a progress bar over the tiles, since one large image can take an hour.
    """
    height, width = rgb8.shape[:2]
    labels = np.zeros((height, width), np.int32)
    maps: dict[str, np.ndarray] = {}
    used, used_in_maps = 0, {}  # objects pasted so far, in the labels and in each integer map
    tiles = list(itertools.product(tile_cores(height, tile, overlap), tile_cores(width, tile, overlap)))
    for (y, y_low, y_high), (x, x_low, x_high) in tqdm(tiles, desc="tiles", unit="tile", leave=False, disable=len(tiles) < 2):
        window = (slice(y, y + tile), slice(x, x + tile))
        core = (y_low - y, y_high - y, x_low - x, x_high - x)
        part_labels, part_maps = segment(rgb8[window])
        used = _paste_objects(labels[window], owned_objects(part_labels, core), used)
        for name, part in part_maps.items():
            canvas = maps.setdefault(name, np.zeros((height, width), part.dtype if part.dtype.kind == "f" else np.int32))
            if part.dtype.kind == "f":
                rows, cols = slice(math.ceil(core[0]), math.ceil(core[1])), slice(math.ceil(core[2]), math.ceil(core[3]))
                canvas[window][rows, cols] = part[rows, cols]
            else:
                used_in_maps[name] = _paste_objects(canvas[window], owned_objects(part, core), used_in_maps.get(name, 0))
    return labels, maps


def _paste_objects(canvas: np.ndarray, objects: np.ndarray, used: int) -> int:
    """Write `objects` (1..n) into free pixels of `canvas` as used+1..used+n; returns the new count."""
    free = (objects > 0) & (canvas == 0)
    canvas[free] = objects[free] + used
    return used + int(objects.max(initial=0))
