"""Inference precision: convolutional parts of the networks in bfloat16 where the processor computes it natively.

On a CPU with AMX tiles (Intel Xeon since Sapphire Rapids) oneDNN runs bfloat16 convolutions several times faster
than float32 (benchmarks/results/precision.md); elsewhere bfloat16 would be emulated, and slower, so "auto" keeps
float32. Only the parts given are run under autocast, and their outputs come back as float32: box decoding,
thresholds and everything downstream stay in float32 (bfloat16 box coordinates would be off by pixels).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


def native_bfloat16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 convolutions natively: a CPU with AMX tiles (CUDA is not measured: no)."""
    return device.type == "cpu" and bool(torch.cpu._is_amx_tile_supported())


def inference_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype the networks' reduced-precision parts compute in under the `precision` setting
    ("auto", "float32" or "bfloat16": the config's PRECISIONS)."""
    if precision == "bfloat16" or (precision == "auto" and native_bfloat16(device)):
        return torch.bfloat16
    if precision in ("auto", "float32"):
        return torch.float32
    raise ValueError(f"unknown precision {precision!r}")


def dtype_name(dtype: torch.dtype) -> str:
    """ "bfloat16" or "float32": a dtype as the `precision` setting names it (for logs and benchmark tables)."""
    return str(dtype).removeprefix("torch.")


def _as_float32(value: Any) -> Any:
    """Tensors (also inside dicts, lists and tuples) back to float32; everything else as it is."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):
        return type(value)((key, _as_float32(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_as_float32(item) for item in value)
    return value


class ReducedPrecision(nn.Module):
    """`inner` run under autocast to `dtype`, its outputs returned as float32 (attributes read through)."""

    def __init__(self, inner: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.inner = inner
        self.dtype = dtype

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        device_type = next(self.inner.parameters()).device.type
        with torch.autocast(device_type, dtype=self.dtype):
            return _as_float32(self.inner(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["inner"], name)


def reduce_precision(model: nn.Module, parts: Iterable[str], dtype: torch.dtype) -> nn.Module:
    """`model` with each named submodule ("" = the model itself, "a.b" = nested) computing in `dtype`; float32: unchanged."""
    if dtype == torch.float32:
        return model
    for name in parts:
        if not name:
            model = ReducedPrecision(model, dtype)
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, ReducedPrecision(getattr(parent, child), dtype))
    return model
