"""Label images: uint16 TIFF I/O, the Kaggle DSB folder importer, run-length codes and
small label-image helpers that scikit-image does not provide as such.

A label image is a 2-D integer array, 0 = background, k > 0 = object k.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import tifffile
from scipy import ndimage as ndi
from skimage.measure import regionprops
from skimage.segmentation import relabel_sequential

from workflow.core.calibration import calibration_tags
from workflow.core.files import InputError, atomic_path
from workflow.core.images import read_image

MAX_LABEL = np.iinfo(np.uint16).max


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Read a label image (any 2-D integer image file) as int32; rejects float or negative labels."""
    path = Path(path)
    labels = read_image(path)
    if labels.ndim != 2:
        raise InputError(path, f"a label image must be 2-D gray, got shape {labels.shape}")
    if np.issubdtype(labels.dtype, np.floating):
        raise InputError(path, f"label image has float pixels ({labels.dtype}); labels must be integers")
    if labels.min() < 0:
        raise InputError(path, "label image has negative labels")
    return labels.astype(np.int32)


def write_labels(path: str | os.PathLike, labels: np.ndarray, pixel_size: float | None = None) -> None:
    """Write a label image as a compressed uint16 TIFF (opens in Fiji and napari), atomically;
    uint32 when it holds more than 65535 objects, which uint16 cannot number. With `pixel_size`
    (um per pixel) the file carries its calibration (Fiji shows micrometres).
    """
    if labels.ndim != 2:
        raise ValueError(f"label image must be 2-D, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > MAX_LABEL):
        labels = relabel(labels)
    dtype = np.uint16 if labels.max(initial=0) <= MAX_LABEL else np.uint32
    with atomic_path(path) as tmp:
        calibration = calibration_tags(pixel_size, imagej=dtype == np.uint16)
        tifffile.imwrite(tmp, labels.astype(dtype), compression="zlib", photometric="minisblack", **calibration)


def write_label_stack(path: str | os.PathLike, labels: np.ndarray, axes: str, pixel_size: float | None = None) -> None:
    """Write a stack of label planes, shape (*stack, H, W) with `axes` naming all of them (e.g. "TZYX"),
    as a compressed uint16 ImageJ hyperstack (uint32 plain TIFF past 65535 objects), atomically."""
    if labels.ndim != len(axes) or not axes.endswith("YX"):
        raise ValueError(f"labels of shape {labels.shape} do not match axes {axes!r}")
    dtype = np.uint16 if labels.max(initial=0) <= MAX_LABEL else np.uint32
    imagej = dtype == np.uint16 and axes in ("ZYX", "TYX", "TZYX")
    options = {"imagej": imagej, **calibration_tags(pixel_size, imagej)}
    metadata = {**options.pop("metadata", {}), "axes": axes}
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, labels.astype(dtype), compression="zlib", photometric="minisblack", metadata=metadata, **options)


def stitch_planes(stack: np.ndarray, threshold: float) -> np.ndarray:
    """Join the 2-D objects of consecutive planes (axis 0) into 3-D objects: an object takes the label
    of the object in the previous plane it overlaps most, when their intersection over union is at
    least `threshold` (Cellpose's --stitch_threshold) and no better match took it; others get new labels."""
    out = np.zeros(stack.shape, np.int32)
    next_label = 1
    for index, plane in enumerate(stack):
        plane = relabel(plane)
        count = int(plane.max())
        mapping = np.zeros(count + 1, np.int32)
        if index > 0 and count and out[index - 1].any():
            previous = out[index - 1]
            pairs = plane.astype(np.int64) * (int(previous.max()) + 1) + previous
            overlap = np.bincount(pairs.ravel(), minlength=(count + 1) * (int(previous.max()) + 1)).reshape(count + 1, -1)
            areas, previous_areas = overlap.sum(axis=1), overlap.sum(axis=0)
            overlap[:, 0] = 0
            best = overlap.argmax(axis=1)
            intersection = overlap[np.arange(count + 1), best]
            union = areas + previous_areas[best] - intersection
            iou = np.where(union > 0, intersection / np.maximum(union, 1), 0.0)
            taken: set[int] = set()
            for label in np.argsort(-iou, kind="stable"):  # best matches first; each object of the previous plane continues once
                if label and intersection[label] > 0 and iou[label] >= threshold and int(best[label]) not in taken:
                    mapping[label] = best[label]
                    taken.add(int(best[label]))
        for label in range(1, count + 1):
            if not mapping[label]:
                mapping[label] = next_label
                next_label += 1
        out[index] = mapping[plane]
    return out


def relabel(labels: np.ndarray) -> np.ndarray:
    """Renumber objects 1..n in order of their old labels (background stays 0)."""
    return relabel_sequential(np.asarray(labels).astype(np.int32, copy=False))[0]


def remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Drop objects with fewer than `min_size` pixels and renumber the rest 1..n."""
    labels = relabel(labels)
    areas = np.bincount(labels.ravel())
    keep = areas >= min_size
    keep[0] = False
    return relabel(np.where(keep[labels], labels, 0))


def fill_holes(labels: np.ndarray) -> np.ndarray:
    """Fill the holes inside each object separately (scikit-image only fills binary masks)."""
    filled = labels.copy()
    for region in regionprops(labels):
        box = region.slice
        inside = ndi.binary_fill_holes(region.image)
        patch = filled[box]
        patch[inside & (patch == 0)] = region.label
    return filled


def labels_from_masks(masks: list[np.ndarray]) -> np.ndarray:
    """Stack binary masks (one per object) into one label image; later masks win overlaps."""
    if not masks:
        raise ValueError("no masks given")
    labels = np.zeros(masks[0].shape, dtype=np.int32)
    for index, mask in enumerate(masks, start=1):
        labels[mask > 0] = index
    return relabel(labels)


def import_kaggle_folder(sample_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one Kaggle DSB sample folder `<id>/images/<id>.png` + `<id>/masks/*.png`.

    Returns (image, label image). Each mask PNG becomes one object, in file-name order.
    """
    sample_dir = Path(sample_dir)
    image_path = sample_dir / "images" / f"{sample_dir.name}.png"
    image = read_image(image_path)
    mask_paths = sorted((sample_dir / "masks").glob("*.png"))
    masks = []
    for mask_path in mask_paths:
        mask = read_image(mask_path)
        if mask.ndim == 3:
            mask = mask[:, :, 0]
        if mask.shape != image.shape[:2]:
            raise InputError(mask_path, f"mask size {mask.shape} does not match image size {image.shape[:2]}")
        masks.append(mask)
    labels = labels_from_masks(masks) if masks else np.zeros(image.shape[:2], dtype=np.int32)
    return image, labels


def rle_encode(mask: np.ndarray) -> str:
    """Kaggle run-length code of a binary mask: 'start length ...', column-major, 1-indexed."""
    pixels = np.concatenate([[0], np.asarray(mask, dtype=bool).ravel(order="F").astype(np.int8), [0]])
    changes = np.flatnonzero(pixels[1:] != pixels[:-1]) + 1
    changes[1::2] -= changes[::2]
    return " ".join(str(value) for value in changes)


def rle_decode(code: str, shape: tuple[int, int]) -> np.ndarray:
    """Binary mask of `shape` from a Kaggle run-length code (inverse of `rle_encode`)."""
    values = np.array(code.split(), dtype=np.int64)
    if values.size % 2:
        raise ValueError("run-length code must have an even number of values")
    starts, lengths = values[0::2] - 1, values[1::2]
    flat = np.zeros(shape[0] * shape[1], dtype=bool)
    if values.size and (starts.min() < 0 or (starts + lengths).max() > flat.size):
        raise ValueError(f"run-length code runs outside an image of shape {shape}")
    for start, length in zip(starts, lengths):
        flat[start : start + length] = True
    return flat.reshape(shape, order="F")


def labels_to_rle(labels: np.ndarray) -> list[str]:
    """One run-length code per object, in label order (a Kaggle submission's rows)."""
    return [rle_encode(labels == region.label) for region in regionprops(labels)]


def resize_labels(labels: np.ndarray, shape: tuple[int, int], contour_sigma: float = 0.0) -> np.ndarray:
    """Resize a label image to (H, W): nearest-neighbour sampling (labels are not blended), or
    with `contour_sigma` > 0 sub-pixel outlines smoothed by that many source pixels (see
    `_resize_smoothly`), for network outputs brought back to their image.

    Nearest-neighbour is pixel-centre aligned like the image resizing (cv2's plain INTER_NEAREST
    samples each pixel's top-left corner, which moved objects by up to half a pixel).
    """
    if contour_sigma > 0:
        return _resize_smoothly(labels, shape, contour_sigma)
    return cv2.resize(labels.astype(np.int32), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST_EXACT)


def _resize_smoothly(labels: np.ndarray, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Resize a label image to (H, W) with sub-pixel outlines: each object's indicator is blurred
    by a Gaussian of `sigma` source pixels and sampled linearly at the target pixel centres; a
    pixel is foreground where the objects' values sum to >= 0.5 (so touching objects leave no gap)
    and goes to the object with the highest value there. An object too small to reach 0.5 keeps
    its highest pixels, as many as its scaled area. Smooths the staircase outlines of networks
    working at a coarser scale than the image; labels keep their numbers.
    """
    labels = np.asarray(labels).astype(np.int32, copy=False)
    (height, width), (h, w) = shape, labels.shape
    fy, fx = height / h, width / w
    margin = int(np.ceil(3 * sigma)) + 2
    owner = np.zeros(shape, np.int32)
    best = np.zeros(shape, np.float32)
    total = np.zeros(shape, np.float32)
    small = np.zeros(shape, bool)
    for index, box in enumerate(ndi.find_objects(labels), 1):
        if box is None:
            continue
        y0, y1 = max(box[0].start - margin, 0), min(box[0].stop + margin, h)
        x0, x1 = max(box[1].start - margin, 0), min(box[1].stop + margin, w)
        indicator = (labels[y0:y1, x0:x1] == index).astype(np.float32)
        area = float(indicator.sum())
        indicator = cv2.GaussianBlur(indicator, (0, 0), sigma)
        top, bottom = int(np.floor(y0 * fy)), min(int(np.ceil(y1 * fy)), height)
        left, right = int(np.floor(x0 * fx)), min(int(np.ceil(x1 * fx)), width)
        rows = ((np.arange(top, bottom) + 0.5) / fy - 0.5 - y0).astype(np.float32)
        cols = ((np.arange(left, right) + 0.5) / fx - 0.5 - x0).astype(np.float32)
        map_x, map_y = np.meshgrid(cols, rows)
        value = cv2.remap(indicator, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if value.size == 0 or value.max() <= 0:
            continue
        window = (slice(top, bottom), slice(left, right))
        total[window] += value
        wins = value > best[window]
        best[window][wins], owner[window][wins] = value[wins], index
        if value.max() < 0.5:
            keep = min(value.size, max(1, round(area * fy * fx)))
            small[window] |= value >= np.partition(value.ravel(), -keep)[-keep]
    owner[(total < 0.5) & ~small] = 0
    return owner


def count_objects(labels: np.ndarray) -> int:
    """Number of objects present (distinct non-zero labels; gaps in the numbering do not count)."""
    return int(np.count_nonzero(np.unique(labels)))


def median_diameter(labels: np.ndarray) -> float | None:
    """Median equivalent diameter sqrt(4A/pi) of the objects, or None when there are none."""
    areas = np.bincount(np.asarray(labels, dtype=np.int64).ravel())[1:]
    areas = areas[areas > 0]
    if areas.size == 0:
        return None
    return float(np.median(np.sqrt(4.0 * areas / np.pi)))
