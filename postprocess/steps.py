"""The refinement steps of the reference (section 7), each a pure function on label images.

Label images are 2-D int arrays (0 = background); probability maps are float arrays in
[0, 1] of the same shape. Every function returns a new array and renumbers objects 1..n.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import regionprops
from skimage.segmentation import expand_labels, find_boundaries, watershed

from workflow.core.labels import fill_holes, relabel, remove_small


def touching_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    """Pairs (a, b), a < b, of objects that share an edge (4-connectivity)."""
    pairs = set()
    for first, second in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        differ = (first != second) & (first > 0) & (second > 0)
        a, b = first[differ], second[differ]
        pairs |= set(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist()))
    return pairs


def _solidity(mask: np.ndarray) -> float:
    return float(regionprops(mask.astype(np.uint8))[0].solidity)


SOLIDITY_TOLERANCE = 0.05  # pixelated disks have solidity ~0.93, their halves ~0.94


def merge_convex_pairs(labels: np.ndarray) -> np.ndarray:
    """Merge touching objects whose union is as convex (solidity) as its parts, within
    `SOLIDITY_TOLERANCE`.

    A nucleus split in two by the detector gives two halves whose union is a convex blob
    (solidity ~0.93); two real neighbours give a union with a waist (~0.8), so they stay apart.
    """
    labels = relabel(labels)
    merged = labels.copy()
    for a, b in sorted(touching_pairs(labels)):
        a_now, b_now = merged[labels == a][0], merged[labels == b][0]
        if a_now == b_now:
            continue
        union = (merged == a_now) | (merged == b_now)
        rows, cols = np.flatnonzero(union.any(1)), np.flatnonzero(union.any(0))
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        window = merged[box]
        if _solidity(union[box]) >= min(_solidity(window == a_now), _solidity(window == b_now)) - SOLIDITY_TOLERANCE:
            merged[merged == b_now] = a_now
    return relabel(merged)


def clean_scale(labels: np.ndarray, min_size: int) -> np.ndarray:
    """One scale's presegmentation: fill holes, merge split nuclei, drop objects below `min_size`."""
    return remove_small(merge_convex_pairs(fill_holes(labels)), min_size)


def _paint_uncovered(labels: np.ndarray, objects: list[tuple[tuple[slice, slice], np.ndarray]], max_covered: float) -> np.ndarray:
    """Paint each (box, mask) object in turn onto a copy of `labels` when less than
    `max_covered` of it is already labelled; it then takes only its unlabelled pixels.
    """
    painted = labels.astype(np.int32, copy=True)
    next_label = int(painted.max()) + 1
    for box, mask in objects:
        window = painted[box]
        if float((window[mask] > 0).mean()) < max_covered:
            window[mask & (window == 0)] = next_label
            next_label += 1
    return relabel(painted)


def merge_scales(candidates: list[np.ndarray], target_area: float, scale_th: float) -> np.ndarray:
    """Combine several scales' objects greedily, closest to `target_area` first.

    An object is accepted when less than `scale_th` of it is already covered by accepted
    objects; it then takes only its uncovered pixels.
    """
    objects = [(abs(region.area - target_area), region.slice, region.image) for labels in candidates for region in regionprops(labels)]
    objects.sort(key=lambda item: item[0])
    return _paint_uncovered(np.zeros(candidates[0].shape, np.int32), [(box, mask) for _, box, mask in objects], scale_th)


def centre_instances(foreground: np.ndarray, centerness: np.ndarray, seed_th: float) -> np.ndarray:
    """Nuclei of the U-Net alone: each connected region of centerness >= `seed_th` on the
    foreground is a seed, grown by watershed down the centerness to the foreground's edge
    (centerness falls to 0 where nuclei touch, so clumps split there).
    """
    seeds, _ = ndi.label((centerness >= seed_th) & foreground)
    return relabel(watershed(-centerness, seeds, mask=foreground))


def add_uncovered(labels: np.ndarray, extra: np.ndarray, max_covered: float) -> np.ndarray:
    """Add the objects of `extra` of which less than `max_covered` is already in `labels`
    (nuclei the presegmenter missed); each takes only its unlabelled pixels.
    """
    return _paint_uncovered(labels, [(region.slice, region.image) for region in regionprops(extra)], max_covered)


def erode_labels(labels: np.ndarray, radius: int) -> np.ndarray:
    """Shrink every object by `radius` pixels (also away from its neighbours)."""
    eroded = labels.copy()
    for _ in range(radius):
        eroded[find_boundaries(eroded, mode="inner")] = 0
    return eroded


def refine_with_foreground(labels: np.ndarray, foreground: np.ndarray, erode: int, dilate: int) -> np.ndarray:
    """Redraw each contour with the U-Net: keep the core (labels eroded by `erode`) and, of the
    ring out to `dilate` pixels beyond the object (grown towards the nearest object), only
    the pixels the U-Net calls foreground.
    """
    grown = expand_labels(labels, dilate) if dilate > 0 else labels
    core = erode_labels(labels, erode)
    ring = (grown > 0) & (core == 0)
    return relabel(np.where(ring & foreground, grown, core))


def keep_largest_component(labels: np.ndarray, min_area: int) -> np.ndarray:
    """For each object of at least `min_area` pixels, keep only its largest connected piece.

    (The reference kept the first piece found, not the largest.)
    """
    out = labels.copy()
    for region in regionprops(labels):
        if region.area < min_area:
            continue
        pieces, count = ndi.label(region.image)
        if count > 1:
            sizes = np.bincount(pieces.ravel())[1:]
            window = out[region.slice]
            window[region.image & (pieces != np.argmax(sizes) + 1)] = 0
    return relabel(out)


def drop_unsupported(labels: np.ndarray, foreground: np.ndarray, min_overlap: float, min_area: int) -> np.ndarray:
    """Drop objects smaller than `min_area`, and objects with less than `min_overlap` of their
    pixels on U-Net foreground unless they are at least 4 x `min_area` (the reference rule).
    """
    labels = relabel(labels)
    areas = np.bincount(labels.ravel())
    support = np.bincount(labels.ravel(), weights=foreground.ravel().astype(np.float64), minlength=areas.size)
    fraction = support / np.maximum(areas, 1)
    keep = (areas >= min_area) & ((fraction >= min_overlap) | (areas >= 4 * min_area))
    keep[0] = False
    return relabel(np.where(keep[labels], labels, 0))
