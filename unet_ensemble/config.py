"""Settings of the U-Net ensemble stage."""

from __future__ import annotations

from dataclasses import dataclass, field

from unet_ensemble.model import UNetArchitecture
from unet_ensemble.predict import UNetPredictConfig
from unet_ensemble.train import UNetTrainConfig


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
