"""Small synthetic nucleus images whose right answers are obvious."""

from __future__ import annotations

import numpy as np


def disks(shape=(128, 128), centres=((30, 30), (30, 90), (90, 60)), radius=12) -> np.ndarray:
    """Label image of non-touching disks, label k at centres[k-1]."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, dtype=np.int32)
    for k, (cy, cx) in enumerate(centres, start=1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = k
    return labels


def nucleus_image(labels: np.ndarray, seed: int = 0, bright: bool = True) -> np.ndarray:
    """A noisy 8-bit gray fluorescence-like image of the labels (dark background)."""
    rng = np.random.default_rng(seed)
    image = np.where(labels > 0, 180.0, 20.0) + rng.normal(0, 8, labels.shape)
    if not bright:
        image = 255 - image
    return np.clip(image, 0, 255).astype(np.uint8)


# settings that make a presegmenter train in seconds (tests only)
TINY_PRESEGMENTER = [
    "presegment.architecture.fpn_channels=32",
    "presegment.architecture.box_head_width=32",
    "presegment.architecture.mask_head_width=16",
    "presegment.train.iterations=2",
    "presegment.train.batch_size=1",
    "presegment.train.crop_size=64",
    "presegment.train.val_every=2",
    "size.target_diameter=20",
    "size.max_scale=2",  # an untrained model's size estimate can ask for x8 (the nuclei here need x1.1): bounds the tests' time
    "device=cpu",
]
