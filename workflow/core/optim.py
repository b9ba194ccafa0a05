"""Optimisation pieces shared by the stages' training loops (a leaf module)."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"  # a training run's resumable state, in its output folder


def warmup_cosine(iteration: int, total: int, warmup: int, time_used: float = 0.0) -> float:
    """Learning-rate factor: linear warm-up over `warmup` steps, then cosine decay to 1% at `total`
    steps, or sooner when `time_used` (the share of a time limit spent) is further along: a run
    stopped by its time limit then still ends its schedule instead of stopping at a high rate."""
    if iteration < warmup:
        return (iteration + 1) / warmup
    progress = max((iteration - warmup) / max(1, total - warmup), time_used)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: nn.Module, name: str, learning_rate: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW or SGD (momentum 0.9) over the trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "adamw":
        return torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=learning_rate, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; use 'adamw' or 'sgd'")


class TrainingRun:
    """The bookkeeping every training loop shares: optimizer, warm-up cosine schedule (ending at the
    iteration count or the time limit, whichever comes first), mixed precision on GPU, gradient
    clipping, time limit and a resumable checkpoint
    (`out_dir/checkpoint.pt`: model, optimizer, scheduler, random state and `state`).
    """

    def __init__(self, model: nn.Module, cfg, out_dir, rng, device: torch.device, resume: bool, grad_clip: float | None = None):
        self.model, self.cfg, self.rng, self.device, self.grad_clip = model, cfg, rng, device, grad_clip
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.optimizer = make_optimizer(model, cfg.optimizer, cfg.learning_rate, cfg.weight_decay)
        self.state = {"iteration": 0, "best": None, "stale": 0, "elapsed": 0.0, "history": []}
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda it: warmup_cosine(it, cfg.iterations, cfg.warmup_iterations, self.time_used))
        self.scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
        self.path = self.out_dir / CHECKPOINT
        if resume and self.path.exists():
            saved = torch.load(self.path, map_location=device, weights_only=False)
            model.load_state_dict(saved["model"])
            self.optimizer.load_state_dict(saved["optimizer"])
            self.scheduler.load_state_dict(saved["scheduler"])
            rng.bit_generator.state = saved["rng"]
            self.state = {"stale": 0, **saved["state"]}
            log.info("resumed from %s at iteration %d", self.path, self.state["iteration"])
        self._started = time.monotonic() - self.state["elapsed"]

    @property
    def iteration(self) -> int:
        return self.state["iteration"]

    @property
    def minutes(self) -> float:
        return self.state["elapsed"] / 60

    def autocast(self):
        """Mixed precision on GPU, plain float on CPU."""
        return torch.autocast(self.device.type, enabled=self.device.type == "cuda")

    def step(self, loss: torch.Tensor) -> None:
        """Backward, clip, optimizer and schedule step."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.state["iteration"] += 1
        self.state["elapsed"] = time.monotonic() - self._started
        self.scheduler.step()

    @property
    def learning_rate(self) -> float:
        return self.scheduler.get_last_lr()[0]

    @property
    def time_used(self) -> float:
        """The share of `max_minutes` spent (0 without a time limit)."""
        return self.state["elapsed"] / (self.cfg.max_minutes * 60) if self.cfg.max_minutes else 0.0

    @property
    def minutes_left(self) -> float:
        """Estimated minutes to the end: the iterations left at the pace so far, or the time limit when that comes first."""
        by_pace = (self.cfg.iterations - self.iteration) * self.minutes / max(self.iteration, 1)
        return min(by_pace, max(0.0, self.cfg.max_minutes - self.minutes)) if self.cfg.max_minutes else by_pace

    @property
    def out_of_time(self) -> bool:
        return self.cfg.max_minutes is not None and self.state["elapsed"] > self.cfg.max_minutes * 60

    @property
    def finished(self) -> bool:
        return self.iteration >= self.cfg.iterations or self.out_of_time or self.state["stale"] >= getattr(self.cfg, "patience", float("inf"))

    def validation_due(self) -> bool:
        return self.iteration % self.cfg.val_every == 0 or self.iteration >= self.cfg.iterations or self.out_of_time

    def record(self, entry: dict, score_key: str) -> bool:
        """Add a validation entry; True when it is the best so far (then save the model). A best
        entry without `score_key` (a checkpoint from a version that ranked by another figure) counts as beaten."""
        self.state["history"].append(entry)
        best = self.state["best"]
        improved = best is None or score_key not in best or entry[score_key] > best[score_key]
        if improved:
            self.state["best"], self.state["stale"] = entry, 0
        else:
            self.state["stale"] += 1
        return improved

    def save_checkpoint(self) -> None:
        part = self.out_dir / ".checkpoint.part"
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": self.rng.bit_generator.state,
                "state": self.state,
            },
            part,
        )
        part.replace(self.path)
