"""Compute precision: convolutional parts of the networks in bfloat16 where the processor computes it natively.

On a CPU with AMX tiles (Intel Xeon since Sapphire Rapids) oneDNN runs bfloat16 convolutions several times faster
than float32 (benchmarks/results/precision.md); elsewhere bfloat16 would be emulated, and slower, so "auto" keeps
float32. Only the parts given are run under autocast, and their outputs come back as float32: box decoding,
thresholds, losses and everything downstream stay in float32 (bfloat16 box coordinates would be off by pixels).
The same parts compute in bfloat16 when a network is trained on such a CPU (weights and optimiser stay float32);
training on a GPU keeps its own float16 mixed precision (`workflow.core.optim.TrainingRun`).
The parts are marked by forward hooks, so a network keeps its modules, names and state dict (it can be saved,
copied and trained as it is).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


def native_bfloat16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 convolutions natively: a CPU with AMX tiles (CUDA is not measured: no)."""
    return device.type == "cpu" and bool(torch.cpu._is_amx_tile_supported())


def precision_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype the networks' reduced-precision parts compute in on `device` under the `precision` setting
    ("auto", "float32" or "bfloat16": the config's PRECISIONS), in inference and in training."""
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


def _enter_autocast(dtype: torch.dtype, stack: list):
    def hook(module: nn.Module, args: Any) -> None:
        context = torch.autocast(next(module.parameters()).device.type, dtype=dtype)
        context.__enter__()
        stack.append(context)

    return hook


def _leave_autocast(stack: list):
    def hook(module: nn.Module, args: Any, output: Any) -> Any:
        stack.pop().__exit__(None, None, None)
        return _as_float32(output)

    return hook


def compute_in(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """`module` (the same object) with its forward run under autocast to `dtype` and its outputs returned as
    float32; float32, or a module already marked: unchanged. The autocast is left even when the forward raises."""
    if dtype == torch.float32 or getattr(module, "compute_dtype", None) is not None:
        return module
    stack: list = []
    module.register_forward_pre_hook(_enter_autocast(dtype, stack))
    module.register_forward_hook(_leave_autocast(stack), always_call=True)
    module.compute_dtype = dtype
    return module


def reduce_precision(model: nn.Module, parts: Iterable[str], dtype: torch.dtype) -> nn.Module:
    """`model` (the same object) with each named submodule ("" = the model itself, "a.b" = nested) computing in `dtype`."""
    for name in parts:
        compute_in(model.get_submodule(name) if name else model, dtype)
    return model
