"""Settings of the U-Net ensemble stage (members, architecture, training, prediction), without torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from workflow.core.augment import AugmentConfig


@dataclass
class UNetArchitecture:
    """What is needed to rebuild one ensemble member (no weights)."""

    encoder: str = "resnet18"  # any segmentation-models-pytorch encoder name
    depth: int = 4  # encoder stages used; 4 (stride 16) sees a whole 40 px nucleus
    decoder_channels: tuple[int, ...] = (128, 64, 32, 16)
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    # also predict each nucleus' distance to its own edge, normalised to 1 at its centre (a
    # second output channel): it falls to 0 between touching nuclei, so it can split clumps
    centerness: bool = False

    @property
    def outputs(self) -> int:
        """Output channels: foreground, then centerness when predicted."""
        return 2 if self.centerness else 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "UNetArchitecture":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class UNetPredictConfig:
    """Tiling and test-time augmentation of U-Net prediction."""

    tile_size: int = 512  # on CPU larger tiles are not faster (1024 x 4 per pass: 2x slower, cache-bound)
    tile_overlap: int = 64
    batch_size: int = 1  # tiles per forward pass (a GPU may gain from more)


@dataclass
class UNetTrainConfig:
    """Optimisation settings of one member."""

    iterations: int = 10000
    batch_size: int = 8
    crop_size: int = 256
    optimizer: str = "adamw"
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup_iterations: int = 200
    val_every: int = 500
    patience: int = 6  # stop after this many validations without improvement
    max_minutes: float | None = None
    log_every: int = 50
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class UNetConfig:
    """The ensemble: one member per (target blur sigma, seed) pair; `model` None = shipped default."""

    model: str | None = None
    sigmas: tuple[float, ...] = (0.0, 0.5, 1.0)  # the reference used {0, 0, .5, .5, .5, 1, 2} over 7 members
    seeds: tuple[int, ...] = (0, 1, 2)
    warm_start: bool = False  # each member after the first starts from the previous member's best weights
    start_from: str | None = None  # member folder the first member starts from (fine-tuning; it may gain the centerness output)
    architecture: UNetArchitecture = field(default_factory=UNetArchitecture)
    train: UNetTrainConfig = field(default_factory=UNetTrainConfig)
    predict: UNetPredictConfig = field(default_factory=UNetPredictConfig)
