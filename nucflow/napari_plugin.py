"""napari plugin (manifest `nucflow/napari.yaml`; install with `uv sync --extra napari`).

`segment_nuclei` is the widget (napari builds its form from the signature): the selected image
layer in, a labels layer out, through the Python API. `get_reader` opens a nucflow output folder:
each input image with its labels over it, scaled in micrometres when the labels carry a pixel size.
Neither imports napari, so both run (and are tested) without it.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from workflow.core.calibration import read_pixel_size
from workflow.core.images import read_planes

RGB_CHANNELS = (3, 4)


@lru_cache(maxsize=3)
def _segmenter(method: str):
    from nucflow.api import Segmenter

    return Segmenter(method)  # models load once per method and napari session


def segment_nuclei(
    image: "napari.types.ImageData",  # noqa: F821 - resolved by napari
    method: str = "fast",
    diameter: float = 0.0,
    stitch_threshold: float = 0.0,
) -> "napari.types.LabelsData":  # noqa: F821
    """Nuclei of a gray or RGB image layer, or of each plane of a stack (planes on the first axes).

    method: fast, full or classic. diameter: median nucleus diameter in pixels (0: estimated).
    stitch_threshold: stacks only, join objects of consecutive planes overlapping by this IoU (0: off).
    """
    if method not in ("fast", "full", "classic"):
        raise ValueError(f"method must be fast, full or classic, not {method!r}")
    image = np.asarray(image)
    size = diameter if diameter > 0 else None
    segmenter = _segmenter(method)
    rgb = image.ndim >= 3 and image.shape[-1] in RGB_CHANNELS
    planar_ndim = 3 if rgb else 2
    if image.ndim == planar_ndim:
        return segmenter.segment(image, diameter=size)
    leading = image.shape[: image.ndim - planar_ndim]
    planes = image.reshape((-1,) + image.shape[len(leading) :])
    return segmenter.segment_stack(planes, diameter=size, stitch_threshold=stitch_threshold).reshape(leading + planes.shape[1:3])


def _folder(path: str | list[str]) -> Path:
    """napari passes a path or a list of paths; a folder comes as one."""
    return Path(path[0] if isinstance(path, list) else path)


def get_reader(path: str | list[str]) -> Callable | None:
    """napari reader hook: a function that reads `path` when it is a nucflow output folder, else None."""
    folder = _folder(path)
    if not (folder / "labels").is_dir() or not (folder / "config.json").is_file():
        return None
    return read_output_folder


def read_output_folder(path: str | list[str]) -> list[tuple]:
    """Layer data: each image (when its file is still where it was) and its labels over it."""
    folder = _folder(path)
    sources = {}
    if (folder / "inputs.csv").is_file():
        sources = {row["image"]: Path(row["path"]) for row in csv.DictReader((folder / "inputs.csv").open())}
    layers = []
    for labels_file in sorted((folder / "labels").glob("*.tif")):
        stem = labels_file.stem
        labels, _ = read_planes(labels_file)
        pixel_size = read_pixel_size(labels_file)
        scale = {"scale": (1.0,) * (labels.ndim - 2) + (pixel_size,) * 2} if pixel_size else {}
        source = sources.get(stem)
        if source is not None and source.is_file():
            image, _ = read_planes(source)
            layers.append((image, {"name": stem, "rgb": image.ndim == labels.ndim + 1, **scale}, "image"))
        layers.append((labels.astype(np.int32), {"name": f"{stem} nuclei", **scale}, "labels"))
    return layers
