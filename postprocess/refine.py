"""The 9-parameter contour refinement of the reference, with its defects fixed, plus
nucflow's addition of the nuclei that a centerness U-Net finds and the presegmenter missed.

`refine` takes the Mask R-CNN label images of each scale (already brought to one common
resolution, the first being the "2x" scale), the U-Net ensemble's foreground probability
at that resolution, the image's median nucleus diameter in its own pixels (for the
`median` rule) and the nucleus diameter expected at the common resolution (for merging
scales), optionally the ensemble's centerness map, and returns the final label image at
the common resolution.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from postprocess.steps import (
    add_uncovered,
    centre_instances,
    clean_scale,
    drop_unsupported,
    keep_largest_component,
    merge_scales,
    refine_with_foreground,
)
from workflow.core.labels import remove_small


@dataclass
class RefineParams:
    """The reference's 9 parameters, named and scaled as there (defaults = reference defaults),
    and nucflow's two for centerness (defaults: unused)."""

    scale_th: float = 0.76  # max covered fraction for an object to be accepted when merging scales
    prob_th: int = 32  # U-Net foreground = probability >= prob_th / 32
    erode: int = 0  # erosion radius of the kept core
    dilate: int = 1  # how far beyond the object the U-Net may extend it
    min_size: int = 44  # objects smaller than this are dropped from each scale
    min_overlap: int = 17  # min fraction (x 1e-4) of an object on U-Net foreground
    max_v: int = 32  # objects at least this large keep only their largest component
    c_area: int = 25  # min final area (4x this when U-Net support is too low)
    median: float = 21.0  # median diameter above which only the first ("2x") scale is used
    # nucflow's addition, used when the ensemble predicts centerness (default: off, as in the reference)
    seed_th: float = 0.5  # U-Net nuclei grow from regions of centerness >= seed_th
    add_th: float = 0.0  # a U-Net nucleus is added when less than this fraction of it is already labelled

    def to_dict(self) -> dict:
        return asdict(self)


SEARCH_SPACE: dict[str, tuple[float, float]] = {
    # parameter -> (low, high) searched, from the reference, except that `dilate` may be 0:
    # with erode 0 and dilate 0 the Mask R-CNN contours are kept as they are (nucflow's masks
    # are tight; growing them by 1 px cost the fast path 0.10 val DSB)
    "scale_th": (0.50, 0.80),
    "prob_th": (15, 32),
    "erode": (0, 2),
    "dilate": (0, 2),
    "min_size": (30, 50),
    "min_overlap": (0, 20),
    "max_v": (20, 40),
    "c_area": (10, 30),
    "median": (10, 30),
}
CENTERNESS_SEARCH_SPACE: dict[str, tuple[float, float]] = {"seed_th": (0.3, 0.8), "add_th": (0.0, 0.6)}


def merges_scales(diameter: float | None, params: RefineParams) -> bool:
    """Whether `refine` combines the scales for an image of this median nucleus `diameter`
    (otherwise it uses the first scale only, and the others need not be computed).
    """
    return diameter is None or diameter <= params.median


def refine(
    scales: list[np.ndarray],
    probability: np.ndarray,
    diameter: float | None,
    target_diameter: float,
    params: RefineParams,
    centerness: np.ndarray | None = None,
) -> np.ndarray:
    """Final labels from per-scale presegmentations and the U-Net foreground probability (and centerness)."""
    if not scales:
        raise ValueError("refine needs at least one scale's labels")
    shapes = {s.shape for s in scales} | {probability.shape} | ({centerness.shape} if centerness is not None else set())
    if len(shapes) != 1:
        raise ValueError(f"all inputs must share one resolution, got shapes {sorted(shapes)}")
    cleaned = [clean_scale(labels, params.min_size) for labels in scales]
    if len(cleaned) == 1 or not merges_scales(diameter, params):
        labels = cleaned[0]
    else:
        labels = merge_scales(cleaned, np.pi * (target_diameter / 2) ** 2, params.scale_th)
    foreground = probability >= params.prob_th / 32.0
    labels = refine_with_foreground(labels, foreground, params.erode, params.dilate)
    if centerness is not None and params.add_th > 0:
        labels = add_uncovered(labels, remove_small(centre_instances(foreground, centerness, params.seed_th), params.min_size), params.add_th)
    labels = keep_largest_component(labels, params.max_v)
    return drop_unsupported(labels, foreground, params.min_overlap * 1e-4, params.c_area)
