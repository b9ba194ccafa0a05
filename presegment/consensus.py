"""Voting of instances found in several views of one image (test-time augmentation).

Each view's instances are soft masks pasted at image positions. The same nucleus seen in
several views is matched by mask IoU; the consensus instance is the mean of its matches
with absent views counting as zero, so a nucleus found in one view of four keeps a quarter
of its score and mask, and only what the views agree on survives the thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SoftInstance:
    """One instance: its score and mask probabilities, the mask's top-left corner at (top, left)."""

    score: float
    top: int
    left: int
    mask: np.ndarray

    @property
    def window(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.mask.shape[0]), slice(self.left, self.left + self.mask.shape[1])


def _bounds(instances: list[SoftInstance]) -> np.ndarray:
    """(N, 4) array of top, left, bottom, right."""
    return np.array([(i.top, i.left, i.top + i.mask.shape[0], i.left + i.mask.shape[1]) for i in instances], dtype=np.int64).reshape(-1, 4)


def _union_frame(instances: list[SoftInstance]) -> tuple[int, int, int, int]:
    bounds = _bounds(instances)
    return int(bounds[:, 0].min()), int(bounds[:, 1].min()), int(bounds[:, 2].max()), int(bounds[:, 3].max())


def _on_frame(instance: SoftInstance, frame: tuple[int, int, int, int]) -> np.ndarray:
    """The instance's mask placed on the canvas `frame` (top, left, bottom, right)."""
    top, left, bottom, right = frame
    canvas = np.zeros((bottom - top, right - left), np.float32)
    canvas[instance.top - top : instance.top - top + instance.mask.shape[0], instance.left - left : instance.left - left + instance.mask.shape[1]] = (
        instance.mask
    )
    return canvas


def mask_iou(first: SoftInstance, second: SoftInstance, threshold: float = 0.5) -> float:
    """IoU of the two instances' masks binarised at `threshold`."""
    frame = _union_frame([first, second])
    a, b = _on_frame(first, frame) > threshold, _on_frame(second, frame) > threshold
    return float((a & b).sum() / max((a | b).sum(), 1))


def average(instances: list[SoftInstance], views: int) -> SoftInstance:
    """Mean score and mask of matched instances over `views` views (absent views count as zero)."""
    frame = _union_frame(instances)
    mask = sum(_on_frame(instance, frame) for instance in instances) / views
    return SoftInstance(sum(i.score for i in instances) / views, frame[0], frame[1], mask.astype(np.float32))


def vote(views: list[list[SoftInstance]], score_threshold: float, match_iou: float = 0.5) -> list[SoftInstance]:
    """Consensus instances with a mean score of at least `score_threshold`.

    Greedy, best score first: each unmatched instance gathers at most one instance from
    every other view, the best-scoring one whose mask IoU with it exceeds `match_iou`.
    """
    pooled = [(instance, view) for view, instances in enumerate(views) for instance in instances]
    pooled.sort(key=lambda item: -item[0].score)
    bounds = _bounds([instance for instance, _ in pooled])
    free = np.ones(len(pooled), bool)
    consensus = []
    for k, (seed, seed_view) in enumerate(pooled):
        if not free[k]:
            continue
        free[k] = False
        group, seen = [seed], {seed_view}
        overlapping = (bounds[:, 0] < bounds[k, 2]) & (bounds[:, 2] > bounds[k, 0]) & (bounds[:, 1] < bounds[k, 3]) & (bounds[:, 3] > bounds[k, 1])
        for j in np.flatnonzero(overlapping & free):
            candidate, view = pooled[j]
            if view not in seen and mask_iou(seed, candidate) > match_iou:
                group.append(candidate)
                seen.add(view)
                free[j] = False
        merged = average(group, len(views))
        if merged.score >= score_threshold:
            consensus.append(merged)
    return consensus
