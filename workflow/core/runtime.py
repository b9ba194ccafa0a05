"""Process-wide setup shared by the commands: logging and the compute device."""

from __future__ import annotations

import logging
import platform
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def setup_logging(verbosity: int) -> None:
    """INFO by default, DEBUG with -v, WARNING with -q; one line per message."""
    level = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def resolve_device(name: str) -> torch.device:
    """'auto' picks the GPU when one is present, else the CPU."""
    import torch  # here, so that commands that need no network start without it

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """Human-readable hardware name for model cards and benchmark tables."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()}, {torch.get_num_threads()} torch threads"


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), or the architecture elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()
