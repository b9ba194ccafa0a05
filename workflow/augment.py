"""Joint augmentation of an image and its label image (they cannot drift apart).

A leaf module shared by every training stage. Images are (H, W, 3) uint8, labels 2-D int.
The photometric steps follow the reference: contrast stretch, histogram equalisation,
inversion, Gaussian blur, Gaussian / speckle / salt-and-pepper noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from workflow.labels import resize_labels


@dataclass
class AugmentConfig:
    """Probabilities and ranges of the random transforms used in training."""

    scale_range: tuple[float, float] = (0.7, 1.4)  # random zoom around the size-normalised scale
    p_flip_rot: float = 1.0
    p_contrast: float = 0.3
    p_equalize: float = 0.1
    p_invert: float = 0.15
    p_blur: float = 0.2
    p_noise: float = 0.2
    p_channel_shuffle: float = 0.2


def random_crop(
    image: np.ndarray, labels: np.ndarray, size: int, rng: np.random.Generator, zoom: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """A size x size crop at a random place, zoomed by `zoom`; reflect-padded when the image is smaller."""
    source = max(1, round(size / zoom))
    pad_y, pad_x = max(0, source - image.shape[0]), max(0, source - image.shape[1])
    if pad_y or pad_x:
        padding = ((pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2))
        image = np.pad(image, padding + ((0, 0),), mode="reflect")
        labels = np.pad(labels, padding, mode="constant")
    y = rng.integers(0, image.shape[0] - source + 1)
    x = rng.integers(0, image.shape[1] - source + 1)
    image, labels = image[y : y + source, x : x + source], labels[y : y + source, x : x + source]
    if source != size:
        interpolation = cv2.INTER_AREA if source > size else cv2.INTER_LINEAR
        image = cv2.resize(image, (size, size), interpolation=interpolation)
        labels = resize_labels(labels, (size, size))
    return image, labels


def flip_rot90(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One of the 8 symmetries of the square, applied to both."""
    k = int(rng.integers(4))
    image, labels = np.rot90(image, k), np.rot90(labels, k)
    if rng.random() < 0.5:
        image, labels = image[:, ::-1], labels[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(labels)


def photometric(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Random intensity changes that leave the objects where they are."""
    if rng.random() < cfg.p_channel_shuffle:
        image = image[:, :, rng.permutation(3)]
    if rng.random() < cfg.p_contrast:
        low, high = np.percentile(image, [rng.uniform(0, 5), rng.uniform(95, 100)])
        if high > low:
            image = np.clip((image.astype(np.float32) - low) * (255.0 / (high - low)), 0, 255).astype(np.uint8)
    if rng.random() < cfg.p_equalize:
        image = np.dstack([cv2.equalizeHist(np.ascontiguousarray(image[:, :, c])) for c in range(3)])
    if rng.random() < cfg.p_invert:
        image = 255 - image
    if rng.random() < cfg.p_blur:
        sigma = rng.uniform(0.5, 1.5)
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    if rng.random() < cfg.p_noise:
        image = _noise(image, rng)
    return np.ascontiguousarray(image)


def _noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian, speckle or salt-and-pepper noise, chosen at random."""
    values = image.astype(np.float32)
    kind = rng.integers(3)
    if kind == 0:
        values += rng.normal(0, rng.uniform(2, 12), values.shape)
    elif kind == 1:
        values *= 1 + rng.normal(0, rng.uniform(0.03, 0.15), values.shape)
    else:
        amount = rng.uniform(0.001, 0.01)
        flips = rng.random(values.shape[:2])
        values[flips < amount / 2] = 0
        values[flips > 1 - amount / 2] = 255
    return np.clip(values, 0, 255).astype(np.uint8)


def augment_pair(
    image: np.ndarray, labels: np.ndarray, size: int, rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Random zoomed crop, symmetry and photometric change of an (image, labels) pair."""
    zoom = float(np.exp(rng.uniform(*np.log(cfg.scale_range))))
    image, labels = random_crop(image, labels, size, rng, zoom)
    if rng.random() < cfg.p_flip_rot:
        image, labels = flip_rot90(image, labels, rng)
    return photometric(image, rng, cfg), labels


class CropSampler:
    """Augmented random crops of (image, labels) pairs; images drawn with probability
    proportional to their area, so large images give more crops (as in the reference).
    """

    def __init__(self, pairs: list[tuple[np.ndarray, np.ndarray]], crop_size: int, rng: np.random.Generator, cfg: AugmentConfig):
        self.pairs, self.crop_size, self.rng, self.cfg = pairs, crop_size, rng, cfg
        areas = np.array([image.shape[0] * image.shape[1] for image, _ in pairs], dtype=np.float64)
        self.weights = areas / areas.sum()

    def sample(self, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """`count` augmented (image, labels) crops."""
        chosen = self.rng.choice(len(self.pairs), size=count, p=self.weights)
        return [augment_pair(*self.pairs[i], self.crop_size, self.rng, self.cfg) for i in chosen]
