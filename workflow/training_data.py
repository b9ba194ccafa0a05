"""Annotated training data: a folder with images/ and masks/ (label images matched by stem),
an optional split.csv (image_id,subset), and size normalisation of each pair.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from workflow.core.files import InputError, list_images
from workflow.core.images import InputConfig, read_input, resize_image, scaled_shape, size_scale, to_rgb8
from workflow.core.labels import median_diameter, read_labels, resize_labels

log = logging.getLogger(__name__)
Pair = tuple[np.ndarray, np.ndarray]


def find_mask(masks_dir: Path, stem: str) -> Path:
    """The label image for image `stem` (any supported suffix)."""
    for suffix in (".tif", ".tiff", ".png"):
        candidate = masks_dir / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    raise InputError(masks_dir, f"no mask for image {stem!r} (looked for {stem}.tif/.tiff/.png)")


def read_split(data_dir: Path) -> dict[str, str]:
    """image_id -> subset from `split.csv`, or {} when there is none."""
    path = data_dir / "split.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        return {row["image_id"]: row["subset"] for row in csv.DictReader(handle)}


def read_types(data_dir: Path, stems: list[str]) -> list[str] | None:
    """The image type of each of `stems` from `data_dir/types.csv` (image_id,type,...), for
    type-balanced sampling; None when the folder has no such file. Images it does not list
    form their own group, 'unlisted'."""
    path = data_dir / "types.csv"
    if not path.is_file():
        return None
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"image_id", "type"} <= set(rows[0]):
        raise InputError(path, "needs the columns image_id,type")
    types = {row["image_id"]: row["type"] for row in rows}
    missing = [stem for stem in stems if stem not in types]
    if missing:
        log.warning("%s: %d training images are not listed (first: %s); they are sampled as one group, 'unlisted'", path, len(missing), missing[0])
    return [types.get(stem, "unlisted") for stem in stems]


def load_pair(image_path: Path, mask_path: Path, norm: InputConfig | None = None) -> Pair:
    """(rgb8 image, labels) at the file's own scale, with a size check."""
    image = to_rgb8(read_input(image_path, norm), norm)
    labels = read_labels(mask_path)
    if labels.shape != image.shape[:2]:
        raise InputError(mask_path, f"mask size {labels.shape} does not match image size {image.shape[:2]} of {image_path.name}")
    return image, labels


def normalise_pair(image: np.ndarray, labels: np.ndarray, target_diameter: float) -> Pair:
    """Rescale a pair so that its median nucleus has `target_diameter` px."""
    scale = size_scale(median_diameter(labels), target_diameter)
    shape = scaled_shape(image.shape, scale)
    return resize_image(image, shape), resize_labels(labels, shape)


def load_annotated(
    data_dir: str | os.PathLike,
    subset: str | None,
    target_diameter: float | None,
    norm: InputConfig | None = None,
    limit: int | None = None,
) -> tuple[list[Pair], list[str]]:
    """Pairs of `data_dir` (all, or one subset of split.csv) and their stems.

    With a `target_diameter` each pair is rescaled so its median nucleus has that size;
    with None the pairs keep the files' own scale.
    """
    data_dir = Path(data_dir)
    split = read_split(data_dir)
    images = list_images(data_dir / "images")
    if subset is not None:
        if not split:
            raise InputError(data_dir, "no split.csv to select the subset from")
        images = [p for p in images if split.get(p.stem) == subset]
    images = images[:limit] if limit else images
    pairs = []
    for path in tqdm(images, desc=f"loading {subset or 'images'}", unit="img"):
        pair = load_pair(path, find_mask(data_dir / "masks", path.stem), norm)
        pairs.append(pair if target_diameter is None else normalise_pair(*pair, target_diameter))
    return pairs, [p.stem for p in images]
