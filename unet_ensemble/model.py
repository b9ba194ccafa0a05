"""U-Nets from segmentation-models-pytorch, built by name from a small description."""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
from torch import nn

from unet_ensemble.config import UNetArchitecture


def build_unet(arch: UNetArchitecture) -> nn.Module:
    """A randomly initialised U-Net with `arch.outputs` logit channels. ResNet stages deeper than `depth`,
    which smp keeps but never runs, are removed so the saved model stays small.
    """
    if len(arch.decoder_channels) != arch.depth:
        raise ValueError(f"give {arch.depth} decoder channel counts for depth {arch.depth}, not {len(arch.decoder_channels)}")
    try:
        model = smp.Unet(arch.encoder, encoder_weights=None, encoder_depth=arch.depth, decoder_channels=arch.decoder_channels, classes=arch.outputs)
    except (KeyError, ValueError) as error:
        raise ValueError(f"unknown U-Net encoder {arch.encoder!r}: {error}") from None
    for stage in range(arch.depth, 5):  # ResNet encoders: layer{k} is stage k + 1
        if hasattr(model.encoder, f"layer{stage}"):
            setattr(model.encoder, f"layer{stage}", nn.Identity())
    return model


def transfer_weights(source: nn.Module, target: nn.Module) -> nn.Module:
    """Copy `source`'s weights into `target`, a U-Net of the same architecture except perhaps
    its output channels: an output head with more channels gets the source's channels
    repeated in turn (a foreground-only member starts a centerness member with its
    foreground head twice).
    """
    state = target.state_dict()
    for name, tensor in source.state_dict().items():
        wanted = state.get(name)
        repeatable = name.startswith("segmentation_head.") and wanted is not None and wanted.shape[1:] == tensor.shape[1:]
        if wanted is None or (wanted.shape != tensor.shape and not repeatable):
            raise ValueError(f"cannot start from this model: its {name} does not fit the new architecture")
        state[name] = tensor[torch.arange(wanted.shape[0]) % tensor.shape[0]] if repeatable else tensor
    target.load_state_dict(state)
    return target


def stride(arch: UNetArchitecture) -> int:
    """Input sides must be multiples of this."""
    return 2**arch.depth
