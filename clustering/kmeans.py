"""Grouping images by style: standardised descriptors, k-means with k chosen by silhouette
(or given), and the members nearest each centre marked as the cluster's style exemplars.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

from clustering.config import ClusterConfig


@dataclass
class Clustering:
    """Per image: cluster index, distance to its centre (standardised units), exemplar flag."""

    labels: np.ndarray
    distances: np.ndarray
    exemplar: np.ndarray
    silhouettes: dict[int, float] = field(default_factory=dict)  # k -> mean silhouette, for the k tried

    @property
    def k(self) -> int:
        return int(self.labels.max()) + 1 if self.labels.size else 0


def _kmeans(features: np.ndarray, k: int, seed: int) -> KMeans:
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit(features)


def cluster_styles(features: np.ndarray, cfg: ClusterConfig) -> Clustering:
    """Cluster the rows of `features` (one image each); one image, or identical images, make one cluster."""
    count = len(features)
    scaled = StandardScaler().fit_transform(features) if count > 1 else np.zeros_like(features)
    distinct = len(np.unique(scaled.round(9), axis=0))
    silhouettes: dict[int, float] = {}
    if cfg.k is not None:
        k = max(1, min(cfg.k, distinct))
    else:
        for candidate in range(cfg.k_min, min(cfg.k_max, count - 1, distinct) + 1):
            silhouettes[candidate] = float(silhouette_score(scaled, _kmeans(scaled, candidate, cfg.seed).labels_))
        k = max(silhouettes, key=silhouettes.get) if silhouettes else 1
    model = _kmeans(scaled, k, cfg.seed)
    distances = np.linalg.norm(scaled - model.cluster_centers_[model.labels_], axis=1)
    exemplar = np.zeros(count, bool)
    for index in range(k):
        members = np.flatnonzero(model.labels_ == index)
        exemplar[members[np.argsort(distances[members], kind="stable")[: cfg.exemplars]]] = True
    return Clustering(model.labels_.astype(int), distances, exemplar, silhouettes)
