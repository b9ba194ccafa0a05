"""U-Net member and ensemble folders: an ensemble folder holds one model folder per member."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from unet_ensemble.config import UNetArchitecture
from unet_ensemble.model import build_unet
from workflow.core.modelfiles import CARD, load_weights, read_card, save_weights

DEFAULT_ENSEMBLE = Path(__file__).parent / "models" / "default"


def save_member(folder: str | os.PathLike, model: nn.Module, arch: UNetArchitecture, card: dict) -> Path:
    """Write one member: fp16 weights and `model.json` with its architecture."""
    return save_weights(folder, model, {"kind": "nucflow-unet", "architecture": arch.to_dict(), **card})


def load_member(folder: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild one member from its folder, eval mode."""
    card = read_card(folder)
    model = load_weights(build_unet(UNetArchitecture.from_dict(card["architecture"])), folder)
    return model.to(device).eval(), card


def load_ensemble(folder: str | os.PathLike | None, device: torch.device | str = "cpu") -> list[tuple[nn.Module, dict]]:
    """Every member folder directly inside `folder` (None = shipped default), in name order."""
    folder = DEFAULT_ENSEMBLE if folder is None else Path(folder)
    members = sorted(p for p in Path(folder).iterdir() if (p / CARD).is_file()) if Path(folder).is_dir() else []
    if not members:
        hint = "; the shipped default ensemble is missing from this installation: reinstall, or pass --ensemble" if folder == DEFAULT_ENSEMBLE else ""
        raise FileNotFoundError(f"{folder}: no U-Net ensemble members (folders with {CARD}) found{hint}")
    return [load_member(member, device) for member in members]
