"""The Python API: segment arrays in memory, measure nuclei, score against ground truth.

A thin facade over the stage packages and `workflow`; the `nucflow` command and the batch
runner do the same steps on files.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Sequence

import numpy as np

from workflow.core.images import InputConfig, to_rgb8
from workflow.core.measure import MEASUREMENT_COLUMNS, MICROMETRE_COLUMNS, measure_nuclei
from workflow.core.metrics import ImageScores, score_image

METHODS = ("classic", "fast", "full")
MAX_CHANNELS = 8  # an axis this short is a channel axis, not a spatial one


def network_input(image: np.ndarray, channel: int | None = None, norm: InputConfig | None = None) -> np.ndarray:
    """Any 2-D image array as the networks' (H, W, 3) uint8 input.

    Accepts (H, W) gray, (H, W, 3|4) RGB(A), channel-first (3|4, H, W) RGB(A), and
    multi-channel arrays with `channel` naming the nuclear channel (on the short axis, first
    or last). A multi-channel array that is not RGB needs `channel`: no channel is guessed.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        if channel not in (None, 0):
            raise ValueError(f"channel {channel} asked of a single-channel (2-D) image")
        return to_rgb8(image, norm)
    if image.ndim != 3:
        raise ValueError(f"expected a 2-D image (H, W) or (H, W, C); got an array of shape {image.shape} (segment stacks plane by plane)")
    axis = channel_axis(image.shape)
    count = image.shape[axis]
    if channel is not None:
        if not -count <= channel < count:
            raise ValueError(f"channel {channel} asked of an image with {count} channels (0..{count - 1})")
        return to_rgb8(np.take(image, channel, axis=axis), norm)
    if count in (3, 4):
        return to_rgb8(np.moveaxis(image, axis, -1), norm)
    if count == 1:
        return to_rgb8(np.take(image, 0, axis=axis), norm)
    raise ValueError(f"an image with {count} channels (shape {image.shape}) is not RGB: pass channel=0..{count - 1} (the nuclear channel)")


def channel_axis(shape: Sequence[int]) -> int:
    """The channel axis of a 3-D image shape: the last when it is short, else the first when that is."""
    if shape[-1] <= MAX_CHANNELS:
        return 2
    if shape[0] <= MAX_CHANNELS:
        return 0
    raise ValueError(f"cannot tell the channel axis of shape {tuple(shape)}: no axis has {MAX_CHANNELS} or fewer entries")


class Segmenter:
    """A segmentation method with its models loaded once.

    method: "fast" (Mask R-CNN), "full" (refined with the U-Net ensemble) or "classic" (no network).
    models: a folder written by `nucflow train` (RUN/models); None for the shipped models.
    config: a YAML/JSON settings file; settings: "section.key=value" overrides, as `--set`.
    """

    def __init__(
        self,
        method: str = "fast",
        models: str | os.PathLike | None = None,
        *,
        config: str | os.PathLike | None = None,
        settings: Sequence[str] = (),
        device: str | None = None,
    ):
        from workflow.config import load_config
        from workflow.predict import build_segmenter, use_models_folder

        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
        cfg = load_config(config, list(settings))
        if models is not None:
            use_models_folder(cfg, models)
        # the full path always keeps its maps (a resize each, small beside its networks), so asking for them loads nothing new
        cfg.output.keep_intermediate = method == "full"
        self.config = replace(cfg, method=method, device=device or cfg.device)
        self._segment = build_segmenter(method, self.config)

    def segment(self, image: np.ndarray, diameter: float | None = None, channel: int | None = None, maps: bool = False):
        """Label image (int array, 0 = background, 1..n one nucleus each) of the nuclei in `image`.

        diameter: median nucleus diameter in pixels (None: estimated). channel: the nuclear
        channel of a multi-channel image. maps=True returns (labels, {name: map}): on the full
        path the U-Net foreground probability and each Mask R-CNN scale's labels (other methods: {}).
        """
        if diameter is not None and not diameter > 0:
            raise ValueError(f"diameter must be a positive number of pixels, not {diameter}")
        prediction = self._segment(network_input(image, channel, self.config.input), diameter)
        return (prediction.labels, prediction.intermediate) if maps else prediction.labels

    def segment_stack(self, stack: np.ndarray, diameter: float | None = None, channel: int | None = None, stitch_threshold: float = 0.0) -> np.ndarray:
        """Labels (N, H, W) of a stack of N planes along its first axis (a Z-stack or a time series;
        reshape a TZYX array to (T*Z, Y, X), or loop over T). The nucleus size is estimated once, on the
        middle plane (or `diameter`); `stitch_threshold` > 0 joins objects of consecutive planes that
        overlap by that IoU into one label (0: each plane numbered on its own)."""
        from workflow.stacks import label_planes

        stack = np.asarray(stack)
        if stack.ndim < 3:
            raise ValueError(f"a stack needs a plane axis first: got shape {stack.shape} (use segment() for one image)")
        if diameter is not None and not diameter > 0:
            raise ValueError(f"diameter must be a positive number of pixels, not {diameter}")
        if not 0 <= stitch_threshold <= 1:
            raise ValueError(f"stitch_threshold is an intersection over union in [0, 1], not {stitch_threshold}")
        rgb8s = [network_input(plane, channel, self.config.input) for plane in stack]
        return label_planes(rgb8s, self._segment, diameter, stitch_threshold)[0]


def measure(labels: np.ndarray, image: np.ndarray | None = None, pixel_size: float | None = None) -> list[dict]:
    """One dict per nucleus: label, area, centroid, equivalent diameter, eccentricity and (with
    `image`) mean intensity in the image's own units; with `pixel_size` (um per pixel) also the
    area in um^2 and the lengths in um."""
    labels = np.asarray(labels)
    if pixel_size is not None and not pixel_size > 0:
        raise ValueError(f"pixel_size must be positive (um per pixel), not {pixel_size}")
    plane = np.zeros(labels.shape, np.float32) if image is None else np.asarray(image)
    rows = [dict(zip(MEASUREMENT_COLUMNS[1:], row[1:])) for row in measure_nuclei("", labels, plane, pixel_size)]
    unused = (() if image is not None else ("mean_intensity",)) + (() if pixel_size is not None else MICROMETRE_COLUMNS)
    for row in rows:
        for key in unused:
            row.pop(key)
    return rows


def evaluate(pred: np.ndarray, truth: np.ndarray) -> ImageScores:
    """DSB 2018 score (mean over IoU thresholds 0.5-0.95), AP@0.5, precision, recall, F1 and counts."""
    return score_image(np.asarray(truth), np.asarray(pred))
