"""The one conversion of uint8 images to network input tensors, for every stage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch


def image_tensor(
    rgb8: np.ndarray, device: "torch.device | str" = "cpu", mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> "torch.Tensor":
    """(H, W, 3) or (N, H, W, 3) uint8 -> float (3, H, W) or (N, 3, H, W) on `device`, scaled to [0, 1],
    then standardised per channel by `mean` and `std` when given ((x / 255 - mean) / std)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(rgb8)).to(device)
    x = x.permute(2, 0, 1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    x = x.float().div_(255)
    if mean is not None or std is not None:
        shape = (3, 1, 1)
        x = (x - torch.tensor(mean or (0.0, 0.0, 0.0), device=device).view(shape)) / torch.tensor(std or (1.0, 1.0, 1.0), device=device).view(shape)
    return x
