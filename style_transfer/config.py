"""Settings of style transfer (pix2pix training, synthetic masks), without torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from workflow.core.augment import AugmentConfig


@dataclass
class GeneratorArchitecture:
    """What is needed to rebuild a generator (no weights)."""

    encoder: str = "resnet18"
    depth: int = 5
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)


@dataclass
class Pix2PixConfig:
    """Training settings (the reference trained about 5000 iterations per style)."""

    iterations: int = 5000
    batch_size: int = 4
    crop_size: int = 256
    learning_rate: float = 2e-4
    beta1: float = 0.5
    l1_weight: float = 100.0
    discriminator_width: int = 64
    max_minutes: float | None = None
    log_every: int = 100
    checkpoint_every: int = 250  # iterations between resumable checkpoints (when a checkpoint path is given)
    seed: int = 0
    generator: GeneratorArchitecture = field(default_factory=GeneratorArchitecture)
    # Style is what is learned: only geometric augmentation, never photometric.
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig.geometric(scale_range=(0.9, 1.1)))


@dataclass
class SyntheticMaskConfig:
    """Size of the masks made and how their nuclei are placed."""

    size: int = 512
    touching_probability: float = 0.05  # chance that a nucleus may touch (not overlap) another
    attempts: int = 30  # placement tries per nucleus before it is left out
    min_area: int = 12  # smaller real objects are noise, not shapes
