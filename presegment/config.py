"""Settings of the presegmentation stage (architecture, inference, training)."""

from __future__ import annotations

from dataclasses import dataclass, field

from presegment.model import Architecture
from presegment.pipeline import SizeProbe
from presegment.predict import DetectConfig
from presegment.train import TrainConfig


@dataclass
class PresegmentConfig:
    """Which presegmenter to run and how; `model` None means the shipped default model."""

    backend: str = "torchvision"  # "torchvision", or "detectron2" when it is installed
    model: str | None = None
    probe: SizeProbe = field(default_factory=SizeProbe)  # the passes that estimate the nucleus size
    architecture: Architecture = field(default_factory=Architecture)
    detect: DetectConfig = field(default_factory=DetectConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
