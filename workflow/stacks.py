"""Z-stacks and time series: segmented plane by plane with the models loaded once and the nucleus
size estimated once (on the middle plane), optionally joined into 3-D objects, written as one label
stack with the input's axes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from workflow.config import NucflowConfig
from workflow.core.images import to_rgb8
from workflow.core.labels import count_objects, stitch_planes
from workflow.core.measure import measure_nuclei
from workflow.predict import Segmenter


def plane_names(stem: str, stack_axes: str, stack_shape: tuple[int, ...]) -> list[str]:
    """The name of each plane in measurements.csv: `stem[Z=3]`, `stem[T=0,Z=3]`, ..."""
    return [f"{stem}[{','.join(f'{a}={i}' for a, i in zip(stack_axes, index))}]" for index in np.ndindex(*stack_shape)]


def label_planes(
    rgb8s: list[np.ndarray], segmenter: Segmenter, diameter: float | None, stitch_threshold: float, desc: str = "planes"
) -> tuple[np.ndarray, float | None]:
    """Labels (N, H, W) of N network-input planes and the nucleus diameter used: `diameter`, or one
    estimate on the middle plane (None when it finds no nucleus: each plane is then estimated on its
    own); with `stitch_threshold` > 0 objects of consecutive planes are joined (`stitch_planes`)."""
    if diameter is None:
        diameter = segmenter.estimate(rgb8s[len(rgb8s) // 2])
    progress = tqdm(rgb8s, desc=desc, unit="plane", leave=False)
    labels = np.stack([segmenter(rgb8, diameter).labels for rgb8 in progress])
    return (stitch_planes(labels, stitch_threshold) if stitch_threshold > 0 else labels), diameter


def segment_stack(path: Path, stack: np.ndarray, stack_axes: str, segmenter: Segmenter, cfg: NucflowConfig, warnings: list[str]) -> np.ndarray:
    """Labels of every plane of `stack` (*stack, H, W[, C]), same leading shape; with
    `stack.stitch_threshold` objects are joined along the last stack axis (Z, or T for a time series)."""
    stack_shape = stack.shape[: len(stack_axes)]
    planes = stack.reshape((-1,) + stack.shape[len(stack_axes) :])
    rgb8s = [to_rgb8(plane, cfg.input) for plane in planes]
    labels, diameter = label_planes(rgb8s, segmenter, cfg.size.diameter, 0.0, f"{path.name} ({len(rgb8s)} planes)")
    if diameter is None:
        warnings.append(f"{path}: no nucleus found on the middle plane by the size estimate; each plane's size estimated on its own")
    labels = labels.reshape(stack_shape + planes.shape[1:3])
    if cfg.stack.stitch_threshold > 0:
        series = labels.reshape((-1, stack_shape[-1]) + labels.shape[-2:])
        labels = np.stack([stitch_planes(planes_in_order, cfg.stack.stitch_threshold) for planes_in_order in series]).reshape(labels.shape)
    return labels


def measure_stack(stem: str, labels: np.ndarray, stack: np.ndarray, stack_axes: str, pixel_size: float | None) -> list[tuple]:
    """measurements.csv rows of every plane, each named by `plane_names`."""
    stack_shape = labels.shape[: len(stack_axes)]
    names = plane_names(stem, stack_axes, stack_shape)
    flat_labels, flat_images = labels.reshape((-1,) + labels.shape[-2:]), stack.reshape((-1,) + stack.shape[len(stack_axes) :])
    return [row for name, plane, image in zip(names, flat_labels, flat_images) for row in measure_nuclei(name, plane, image, pixel_size)]


def count_stack_objects(labels: np.ndarray, stitched: bool) -> int:
    """Objects in a label stack: distinct labels when planes were joined, else the sum over planes."""
    if stitched:
        return count_objects(labels)
    return sum(count_objects(plane) for plane in labels.reshape((-1,) + labels.shape[-2:]))
