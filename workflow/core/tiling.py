"""The one tiler of every stage: large images in overlapping tiles, so memory and network input are
bounded by the tile, not by the image.

Two strategies share the same windows:
- object ownership (label images, detections): an object belongs to the one tile whose core holds
  its centre (cores meet halfway into each overlap), so a nucleus on a seam is neither cut nor
  counted twice, as long as the overlap exceeds its diameter;
- map blending (probability maps): the outputs of overlapping tiles are averaged.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from tqdm import tqdm

TileResult = tuple[np.ndarray, dict[str, np.ndarray]]  # labels, named maps (labels if integer, else values)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size `tile` covering [0, length), neighbours overlapping by at least `overlap`."""
    if length <= tile:
        return [0]
    step = tile - overlap
    count = int(np.ceil((length - tile) / step)) + 1
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def tile_cores(length: int, tile: int, overlap: int) -> list[tuple[int, float, float]]:
    """(start, core low, core high) per tile of `tile_starts`: the cores meet halfway into each
    overlap and cover [0, length) exactly once, so each object belongs to one tile.
    """
    starts = tile_starts(length, tile, overlap)
    cores = []
    for index, start in enumerate(starts):
        low = 0.0 if index == 0 else (start + starts[index - 1] + tile) / 2
        high = float(length) if index == len(starts) - 1 else (start + tile + starts[index + 1]) / 2
        cores.append((start, low, high))
    return cores


@dataclass(frozen=True)
class Window:
    """One tile: its offset `y`, `x` and side `tile` in the image, and its core (y_low, y_high, x_low,
    x_high) in image coordinates: the part of the image it owns."""

    y: int
    x: int
    tile: int
    core: tuple[float, float, float, float]

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y, self.y + self.tile), slice(self.x, self.x + self.tile)

    @property
    def local_core(self) -> tuple[float, float, float, float]:
        """The core in the tile's own coordinates."""
        y_low, y_high, x_low, x_high = self.core
        return y_low - self.y, y_high - self.y, x_low - self.x, x_high - self.x


def windows(shape: tuple[int, ...], tile: int, overlap: int) -> list[Window]:
    """The tiles covering an image of `shape`, row by row; their cores cover each pixel once."""
    return [
        Window(y, x, tile, (y_low, y_high, x_low, x_high))
        for (y, y_low, y_high), (x, x_low, x_high) in itertools.product(tile_cores(shape[0], tile, overlap), tile_cores(shape[1], tile, overlap))
    ]


def in_core(cy: np.ndarray, cx: np.ndarray, core: tuple[float, float, float, float]) -> np.ndarray:
    """Which centres (cy, cx) lie in `core` (y_low, y_high, x_low, x_high): low edges included, high excluded."""
    y_low, y_high, x_low, x_high = core
    return (cy >= y_low) & (cy < y_high) & (cx >= x_low) & (cx < x_high)


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
    owned = (count > 0) & in_core(cy, cx, core)
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
    tiles = windows((height, width), tile, overlap)
    for tile_window in tqdm(tiles, desc="tiles", unit="tile", leave=False, disable=len(tiles) < 2):
        window, core = tile_window.slices, tile_window.local_core
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


def blend_in_tiles(predict: Callable[[list[np.ndarray]], np.ndarray], image: np.ndarray, tile: int, overlap: int, batch_size: int = 1) -> np.ndarray:
    """(C, H, W) maps of `image` from `predict` (a list of equal tiles -> (N, C, tile, tile) array) run on
    overlapping tiles, `batch_size` at a time; where tiles overlap their outputs are averaged."""
    total, weight = None, np.zeros(image.shape[:2], np.float32)
    tiles = [w.slices for w in windows(image.shape, tile, overlap)]
    for first in range(0, len(tiles), max(1, batch_size)):
        batch = tiles[first : first + max(1, batch_size)]
        outputs = predict([image[crop] for crop in batch])
        if total is None:
            total = np.zeros((outputs.shape[1], *image.shape[:2]), np.float32)
        for crop, output in zip(batch, outputs):
            total[(slice(None), *crop)] += output
            weight[crop] += 1
    return total / weight
