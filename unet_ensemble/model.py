"""U-Nets from segmentation-models-pytorch, built by name from a small description."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import segmentation_models_pytorch as smp
from torch import nn


@dataclass
class UNetArchitecture:
    """What is needed to rebuild one ensemble member (no weights)."""

    encoder: str = "resnet18"  # any segmentation-models-pytorch encoder name
    depth: int = 4  # encoder stages used; 4 (stride 16) sees a whole 40 px nucleus
    decoder_channels: tuple[int, ...] = (128, 64, 32, 16)
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.25, 0.25, 0.25)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "UNetArchitecture":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in cls.__dataclass_fields__})


def build_unet(arch: UNetArchitecture) -> nn.Module:
    """A randomly initialised 1-class U-Net (logits out). ResNet stages deeper than `depth`,
    which smp keeps but never runs, are removed so the saved model stays small.
    """
    if len(arch.decoder_channels) != arch.depth:
        raise ValueError(f"give {arch.depth} decoder channel counts for depth {arch.depth}, not {len(arch.decoder_channels)}")
    try:
        model = smp.Unet(arch.encoder, encoder_weights=None, encoder_depth=arch.depth, decoder_channels=arch.decoder_channels, classes=1)
    except (KeyError, ValueError) as error:
        raise ValueError(f"unknown U-Net encoder {arch.encoder!r}: {error}") from None
    for stage in range(arch.depth, 5):  # ResNet encoders: layer{k} is stage k + 1
        if hasattr(model.encoder, f"layer{stage}"):
            setattr(model.encoder, f"layer{stage}", nn.Identity())
    return model


def stride(arch: UNetArchitecture) -> int:
    """Input sides must be multiples of this."""
    return 2**arch.depth
