"""Model folders shared by every stage: fp16 safetensors weights + a JSON model card.

A folder is self-describing: `model.json` says what to build, `weights.safetensors`
holds the parameters. A leaf module (imports no stage).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from workflow.core.files import InputError, atomic_path, write_json

WEIGHTS = "weights.safetensors"
CARD = "model.json"


def save_weights(folder: str | os.PathLike, model: nn.Module, card: dict) -> Path:
    """Write the model's floating tensors as fp16 (others as they are) and `card` as `model.json`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        name: (tensor.detach().half() if tensor.is_floating_point() else tensor.detach()).cpu().contiguous() for name, tensor in model.state_dict().items()
    }
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    write_card(folder, card)
    return folder


def load_weights(model: nn.Module, folder: str | os.PathLike) -> nn.Module:
    """Load a folder's weights into `model` as fp32."""
    state = load_file(str(Path(folder) / WEIGHTS))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model


def read_card(folder: str | os.PathLike) -> dict:
    """The `model.json` of a model folder."""
    path = Path(folder) / CARD
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: not a nucflow model folder (no {CARD})")
    return json.loads(path.read_text())


def write_card(folder: str | os.PathLike, card: dict) -> None:
    """Write `model.json` atomically."""
    write_json(Path(folder) / CARD, card)


def update_card(folder: str | os.PathLike, **fields) -> dict:
    """Add or replace top-level fields of a model folder's `model.json`."""
    card = {**read_card(folder), **fields}
    write_card(folder, card)
    return card


def trained_models(folder: str | os.PathLike) -> tuple[str | None, str | None, str | None]:
    """Presegmenter folder, U-Net ensemble folder and params file in a `nucflow train` models folder
    (RUN/models: presegment/, unet/, params.json); None for each one it lacks (the shipped one is used).
    """
    folder = Path(folder)
    found = [folder / "presegment", folder / "unet", folder / "params.json"]
    if not folder.is_dir() or not any(path.exists() for path in found):
        raise InputError(folder, "not a models folder of 'nucflow train' (no presegment/, unet/ or params.json)")
    return tuple(str(path) if path.exists() else None for path in found)  # type: ignore[return-value]


def for_inference(model: nn.Module, channels_last: bool) -> nn.Module:
    """Eval mode, with convolution weights in channels-last order when asked (faster convolutions on CPU)."""
    model.eval()
    return model.to(memory_format=torch.channels_last) if channels_last else model


def device_of(model: nn.Module) -> torch.device:
    """The device a model's parameters live on."""
    return next(model.parameters()).device
