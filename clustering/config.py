"""Settings of style clustering, without scikit-learn."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ClusterConfig:
    """k None = chosen by silhouette over [k_min, k_max] (capped at the image count - 1)."""

    k: int | None = None
    k_min: int = 2
    k_max: int = 8
    exemplars: int = 5  # the "best N" members nearest each centre
    seed: int = 0
    max_side: int = 512  # descriptors are measured on a copy at most this large
