"""Settings of the refined ("full") prediction."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FullConfig:
    """Mask R-CNN scales, as multiples of the size-normalised (U-Net) scale, and the parameter file.

    The reference ran its U-Nets on "2x" images and Mask R-CNN at "2x" and "4x": that is
    1x and 2x of the U-Net scale here (each then enlarged by `presegment.detect.zoom`, as
    on the fast path). `params` None = the shipped default parameters.
    `mrcnn_flips`: views (mirrors "h", "v", "hv", the transpose "t" and its mirrors) whose detections
    vote with the plain one at the first scale (test-time augmentation; the second scale has 4x
    the pixels, so it runs once). All eight views: val 0.6191 against 0.6120 with four (mirrors only).
    """

    mrcnn_scales: tuple[float, ...] = (1.0, 2.0)
    mrcnn_flips: tuple[str, ...] = ("h", "v", "hv", "t", "th", "tv", "thv")
    params: str | None = None


@dataclass
class SearchConfig:
    """The post-processing parameter search (Optuna)."""

    seed: int = 0  # the sampler's seed (worker k uses seed + k), so a search can be repeated
