"""Test-time views: the symmetries of the pixel grid a network also sees, its outputs put back on the image.

One vocabulary for every network: "t" transposes (rows become columns), then "h" mirrors left-right
and "v" top-bottom; the seven names of VIEWS with the image itself are all eight symmetries of the
square grid (the four rotations and their mirrors). Settings: the `views` section (ViewsConfig).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

VIEWS = ("h", "v", "hv", "t", "th", "tv", "thv")


def check_views(views: tuple[str, ...], where: str = "views") -> None:
    """Refuse names other than those of VIEWS, and repeats (which would vote twice)."""
    unknown = [view for view in views if view not in VIEWS]
    if unknown or len(set(views)) != len(views):
        raise ValueError(f"{where} {list(views)}: use each of {', '.join(VIEWS)} at most once")


@dataclass
class ViewsConfig:
    """Which views each network sees besides the image itself (any of VIEWS).

    Mask R-CNN's views vote (an instance found in several views keeps its mean score and mask); the
    U-Nets' maps are averaged. Defaults: all eight views at the full path's first scale (chosen on val:
    benchmarks/results/setting_choices.md); the fast path and the U-Nets run on the image alone.
    """

    fast: tuple[str, ...] = ()  # Mask R-CNN on the fast path (the size estimate never uses views)
    full: tuple[str, ...] = VIEWS  # Mask R-CNN at the full path's first scale
    unet: tuple[str, ...] = ()  # the U-Net ensemble's maps

    def __post_init__(self) -> None:
        for name in ("fast", "full", "unet"):
            check_views(getattr(self, name), f"views.{name}")


def view_image(image: np.ndarray, view: str) -> np.ndarray:
    """The (H, W, ...) image as `view` shows it: transposed first ("t"), then mirrored ("h", "v")."""
    shown = image.swapaxes(0, 1) if "t" in view else image
    return np.ascontiguousarray(shown[:: -1 if "v" in view else 1, :: -1 if "h" in view else 1])


def view_tensor(x: "torch.Tensor", view: str) -> "torch.Tensor":
    """A (..., H, W) tensor as `view` shows it (as view_image)."""
    x = x.transpose(-2, -1) if "t" in view else x
    dims = [d for d, name in ((-2, "v"), (-1, "h")) if name in view]
    return x.flip(dims) if dims else x


def unview_tensor(x: "torch.Tensor", view: str) -> "torch.Tensor":
    """Undo view_tensor: the mirrors first, then the transpose."""
    dims = [d for d, name in ((-2, "v"), (-1, "h")) if name in view]
    x = x.flip(dims) if dims else x
    return x.transpose(-2, -1) if "t" in view else x
