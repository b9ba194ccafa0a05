"""Model folders: fp16 safetensors weights + `model.json` (architecture, scale, card).

A folder is self-describing: loading needs nothing but the folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from presegment.model import Architecture, build_model

WEIGHTS = "weights.safetensors"
CARD = "model.json"


def save_model(folder: str | os.PathLike, model: nn.Module, arch: Architecture, card: dict) -> Path:
    """Write weights (floating tensors as fp16) and `model.json`; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        name: (tensor.detach().half() if tensor.is_floating_point() else tensor.detach()).cpu().contiguous()
        for name, tensor in model.state_dict().items()
    }
    tmp = folder / f".{WEIGHTS}.part"
    save_file(state, str(tmp))
    os.replace(tmp, folder / WEIGHTS)
    description = {"kind": "nucflow-presegmenter", "backend": "torchvision", "architecture": arch.to_dict(), **card}
    _write_card(folder, description)
    return folder


def read_card(folder: str | os.PathLike) -> dict:
    """The `model.json` of a model folder."""
    path = Path(folder) / CARD
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: not a nucflow model folder (no {CARD})")
    return json.loads(path.read_text())


def load_model(folder: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the network from `model.json`, load fp32 copies of its weights, eval mode."""
    card = read_card(folder)
    model = build_model(Architecture.from_dict(card["architecture"]))
    state = load_file(str(Path(folder) / WEIGHTS))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.to(device).eval(), card


DEFAULT_MODEL = Path(__file__).parent / "models" / "default"


def resolve_model_folder(folder: str | os.PathLike | None) -> Path:
    """The given model folder, or the shipped default when None."""
    return DEFAULT_MODEL if folder is None else Path(folder)


def update_card(folder: str | os.PathLike, **fields) -> dict:
    """Add or replace top-level fields of a model folder's `model.json`."""
    card = {**read_card(folder), **fields}
    _write_card(Path(folder), card)
    return card


def _write_card(folder: Path, card: dict) -> None:
    tmp = folder / f".{CARD}.part"
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, folder / CARD)
