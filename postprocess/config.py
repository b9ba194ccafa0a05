"""Settings of the refined ("full") prediction."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FullConfig:
    """Mask R-CNN scales, as multiples of the size-normalised (U-Net) scale, and the parameter file.

    The reference ran its U-Nets on "2x" images and Mask R-CNN at "2x" and "4x": that is
    1x and 2x of the U-Net scale here (each then enlarged by `presegment.detect.zoom`, as
    on the fast path). `params` None = the shipped default parameters. The first scale's test-time
    views are `views.full`.
    """

    mrcnn_scales: tuple[float, ...] = (1.0, 2.0)
    params: str | None = None


@dataclass
class SearchConfig:
    """The post-processing parameter search (Optuna)."""

    seed: int = 0  # the sampler's seed (worker k uses seed + k), so a search can be repeated
