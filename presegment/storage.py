"""Presegmenter model folders (see `workflow.core.modelfiles`) and the shipped default."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from presegment.config import Architecture
from presegment.model import build_model
from workflow.core.modelfiles import load_weights, read_card, save_weights, update_card

__all__ = ["DEFAULT_MODEL", "load_model", "read_card", "resolve_model_folder", "save_model", "update_card"]

DEFAULT_MODEL = Path(__file__).parent / "models" / "default"


def save_model(folder: str | os.PathLike, model: nn.Module, arch: Architecture, card: dict) -> Path:
    """Write a presegmenter folder: fp16 weights and `model.json` with its architecture."""
    description = {"kind": "nucflow-presegmenter", "backend": "torchvision", "architecture": arch.to_dict(), **card}
    return save_weights(folder, model, description)


def load_model(folder: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the network from `model.json`, load fp32 copies of its weights, eval mode."""
    card = read_card(folder)
    model = load_weights(build_model(Architecture.from_dict(card["architecture"])), folder)
    return model.to(device).eval(), card


def resolve_model_folder(folder: str | os.PathLike | None) -> Path:
    """The given model folder, or the shipped default when None."""
    return DEFAULT_MODEL if folder is None else Path(folder)
