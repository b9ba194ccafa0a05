"""Presegmenter backends chosen by name: torchvision (built in) or detectron2 (optional)."""

from __future__ import annotations

import importlib.util
import os

from torch import nn

from presegment.storage import load_model, read_card, resolve_model_folder
from workflow.core.runtime import resolve_device

BACKENDS = ("torchvision", "detectron2")


def detectron2_available() -> bool:
    """True when the optional detectron2 package can be imported."""
    return importlib.util.find_spec("detectron2") is not None


def reduced_precision_parts(backend: str) -> tuple[str, ...]:
    """The presegmenter's submodules that may compute in reduced precision (detectron2's: none, float32 only)."""
    if backend == "torchvision":
        from presegment.model import REDUCED_PRECISION_PARTS

        return REDUCED_PRECISION_PARTS
    return ()


def load_presegmenter(backend: str, folder: str | os.PathLike | None, device: str = "auto") -> tuple[nn.Module, dict]:
    """Load the presegmenter of `backend` from a model folder (None = shipped default).

    Raises FileNotFoundError for a missing model and ImportError for an absent backend,
    each with a one-line message.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown presegmenter backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "detectron2" and not detectron2_available():
        raise ImportError("the detectron2 backend was selected but detectron2 is not installed; use backend 'torchvision'")
    device = str(resolve_device(device))
    folder = resolve_model_folder(folder)
    card = read_card(folder)
    if card.get("backend", "torchvision") != backend:
        raise ValueError(f"{folder}: is a {card.get('backend')} model, but the {backend} backend was selected")
    if backend == "detectron2":
        from presegment.detectron2_backend import load_detectron2_model

        return load_detectron2_model(folder, card, device), card
    return load_model(folder, device)
