"""Joint augmentation of an image and its label image (they cannot drift apart).

A leaf module shared by every training stage. Images are (H, W, 3) uint8, labels 2-D int.
The photometric steps follow the reference (contrast stretch, histogram equalisation,
inversion, Gaussian blur, Gaussian / speckle / salt-and-pepper noise) and add what makes a
model meet image types it was not trained on: stain jitter in HED space, hue rotation,
random two-colour renderings of an image (white on black becomes purple on pink, say), gray
conversion, gamma and dimming.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import cv2
import numpy as np
from skimage.color import hed2rgb, rgb2hed

from workflow.core.labels import resize_labels


@dataclass
class AugmentConfig:
    """Probabilities and ranges of the random transforms used in training."""

    scale_range: tuple[float, float] = (0.7, 1.4)  # random zoom around the size-normalised scale
    p_flip_rot: float = 1.0
    p_stretch: float = 0.0  # stretch the crop along a random direction and squeeze it across (elongated nuclei)
    max_aspect: float = 2.5  # ... by at most this length-to-width ratio, the area kept
    p_contrast: float = 0.3
    p_equalize: float = 0.1
    p_invert: float = 0.15
    p_blur: float = 0.2
    p_noise: float = 0.2
    p_channel_shuffle: float = 0.2
    # colour changes that stand in for unseen image types: off by default, since they did not help held-out
    # types and cost val (benchmarks/results/leave_type_out.md, setting_choices.md)
    p_stain_jitter: float = 0.0  # scale and shift the haematoxylin, eosin and DAB densities (HED space)
    p_hue: float = 0.0  # rotate the hue by a random angle
    p_recolour: float = 0.0  # render the image's brightness between two random colours (either way round)
    p_gray: float = 0.0  # colour -> gray (repeated to 3 channels)
    p_gamma: float = 0.0  # gamma between 0.5 and 2
    p_dim: float = 0.0  # scale intensities down to 10-50 % (a dim 8-bit acquisition)
    group_balance: float = 1.0  # sampling of image groups (types): share of a group ~ its size ** this (1 = by size, 0 = equal)

    def __post_init__(self) -> None:
        if not self.max_aspect >= 1:
            raise ValueError(f"max_aspect is a length-to-width ratio and must be >= 1, got {self.max_aspect}")

    @classmethod
    def geometric(cls, scale_range: tuple[float, float] = (0.7, 1.4)) -> AugmentConfig:
        """Zoom, flips and rotations only: every other probability 0 (pix2pix learns the style itself)."""
        off = {f.name: 0.0 for f in fields(cls) if f.name.startswith("p_") and f.name != "p_flip_rot"}
        return cls(scale_range=scale_range, **off)


def random_crop(image: np.ndarray, labels: np.ndarray, size: int, rng: np.random.Generator, zoom: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
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


def stretched_crop(image: np.ndarray, labels: np.ndarray, size: int, rng: np.random.Generator, zoom: float, max_aspect: float) -> tuple[np.ndarray, np.ndarray]:
    """A size x size crop zoomed by `zoom` and stretched along a random direction by sqrt(aspect), squeezed across
    by as much (aspect up to `max_aspect`, area kept): round nuclei become elongated ones at any angle, as the
    spindle-shaped nuclei of tissue sections that fluorescence training images rarely show."""
    aspect = float(np.exp(rng.uniform(0.0, np.log(max_aspect))))
    angle = float(rng.uniform(0.0, np.pi))
    source = int(np.ceil(size * np.sqrt(2.0 * aspect))) + 2  # covers the output square at any angle
    region, region_labels = random_crop(image, labels, source, rng, zoom)
    direction = np.array([np.cos(angle), np.sin(angle)])
    across = np.array([-direction[1], direction[0]])
    # output = A @ (input - source centre) + output centre, with A stretching along `direction`, squeezing across
    matrix = np.sqrt(aspect) * np.outer(direction, direction) + np.outer(across, across) / np.sqrt(aspect)
    offset = (size - 1) / 2.0 - matrix @ np.full(2, (source - 1) / 2.0)
    affine = np.hstack([matrix, offset[:, None]])
    warped = cv2.warpAffine(region, affine, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    warped_labels = cv2.warpAffine(region_labels.astype(np.float32), affine, (size, size), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
    return warped, warped_labels.round().astype(labels.dtype)


def flip_rot90(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One of the 8 symmetries of the square, applied to both."""
    k = int(rng.integers(4))
    image, labels = np.rot90(image, k), np.rot90(labels, k)
    if rng.random() < 0.5:
        image, labels = image[:, ::-1], labels[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(labels)


def photometric(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Random intensity changes that leave the objects where they are."""
    if rng.random() < cfg.p_recolour:
        image = recolour(image, rng)
    if rng.random() < cfg.p_stain_jitter:
        image = stain_jitter(image, rng)
    if rng.random() < cfg.p_hue:
        image = rotate_hue(image, int(rng.integers(1, 180)))
    if rng.random() < cfg.p_gray:
        image = np.repeat(cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
    if rng.random() < cfg.p_channel_shuffle:
        image = image[:, :, rng.permutation(3)]
    if rng.random() < cfg.p_gamma:
        gamma = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
        image = (255.0 * (image / 255.0) ** gamma).round().astype(np.uint8)
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
    if rng.random() < cfg.p_dim:
        image = (image * rng.uniform(0.1, 0.5)).round().astype(np.uint8)
    return np.ascontiguousarray(image)


def stain_jitter(image: np.ndarray, rng: np.random.Generator, scale: float = 0.25, shift: float = 0.05) -> np.ndarray:
    """Each stain density (haematoxylin, eosin, DAB) scaled by 1 +- `scale` and shifted by +- `shift`
    (Tellez et al. 2018): a stained image of another lab's colours."""
    hed = rgb2hed(image)
    hed = hed * rng.uniform(1 - scale, 1 + scale, 3) + rng.uniform(-shift, shift, 3)
    return np.clip(hed2rgb(hed) * 255.0, 0, 255).round().astype(np.uint8)


def rotate_hue(image: np.ndarray, degrees_half: int) -> np.ndarray:
    """Hue turned by `degrees_half` x 2 degrees (OpenCV's 8-bit hue runs 0..179)."""
    hsv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2HSV)
    hsv[:, :, 0] = (hsv[:, :, 0].astype(np.int16) + degrees_half) % 180
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def recolour(image: np.ndarray, rng: np.random.Generator, min_contrast: float = 60.0) -> np.ndarray:
    """The image's brightness rendered from one random colour (dark parts) to another (bright parts),
    the two at least `min_contrast` apart in luminance; either may be the brighter, so bright nuclei on
    black can come out dark purple on pink, as in a stained section."""
    luminance = np.array([0.299, 0.587, 0.114])
    while True:
        low, high = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        if abs(float((high - low) @ luminance)) >= min_contrast:
            break
    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32)[:, :, None] / 255.0
    return np.clip(low + gray * (high - low), 0, 255).round().astype(np.uint8)


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


def augment_pair(image: np.ndarray, labels: np.ndarray, size: int, rng: np.random.Generator, cfg: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """Random zoomed (and with `cfg.p_stretch` stretched) crop, symmetry and photometric change of an (image, labels) pair."""
    zoom = float(np.exp(rng.uniform(*np.log(cfg.scale_range))))
    if cfg.p_stretch > 0 and rng.random() < cfg.p_stretch:  # no draw at 0: other stages' crops stay as they were
        image, labels = stretched_crop(image, labels, size, rng, zoom, cfg.max_aspect)
    else:
        image, labels = random_crop(image, labels, size, rng, zoom)
    if rng.random() < cfg.p_flip_rot:
        image, labels = flip_rot90(image, labels, rng)
    return photometric(image, rng, cfg), labels


def sampling_weights(areas: list[float], groups: list[str] | None, balance: float) -> np.ndarray:
    """Probability of drawing each image: within a group proportional to its area (large images
    give more crops, as in the reference); a group's share proportional to its image count ** `balance`,
    so the few images of a rare type are not drowned by a common one."""
    areas = np.asarray(areas, dtype=np.float64)
    if groups is None:
        return areas / areas.sum()
    names, index = np.unique(np.asarray(groups), return_inverse=True)
    counts = np.bincount(index, minlength=len(names)).astype(np.float64)
    shares = counts**balance / (counts**balance).sum()
    group_area = np.bincount(index, weights=areas, minlength=len(names))
    return shares[index] * areas / group_area[index]


class CropSampler:
    """Augmented random crops of (image, labels) pairs, drawn by `sampling_weights` (area within a
    group, optional `groups` balanced by `cfg.group_balance`)."""

    def __init__(
        self,
        pairs: list[tuple[np.ndarray, np.ndarray]],
        crop_size: int,
        rng: np.random.Generator,
        cfg: AugmentConfig,
        groups: list[str] | None = None,
    ):
        self.pairs, self.crop_size, self.rng, self.cfg = pairs, crop_size, rng, cfg
        if groups is not None and len(groups) != len(pairs):
            raise ValueError(f"{len(groups)} group names for {len(pairs)} images")
        self.weights = sampling_weights([image.shape[0] * image.shape[1] for image, _ in pairs], groups, cfg.group_balance)

    def sample(self, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """`count` augmented (image, labels) crops."""
        chosen = self.rng.choice(len(self.pairs), size=count, p=self.weights)
        return [augment_pair(*self.pairs[i], self.crop_size, self.rng, self.cfg) for i in chosen]
