"""`nucflow cluster`: group a folder's images by visual style (see `clustering`), writing
`clusters.csv` (image, cluster, distance, exemplar), `features.csv` and one contact sheet per
cluster (`contact_sheet_<k>.png`, exemplars framed in orange).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from clustering.contact_sheet import contact_sheet, thumbnail
from clustering.features import FEATURE_NAMES, style_features
from clustering.kmeans import Clustering, cluster_styles
from workflow.batch import check_writable
from workflow.config import NucflowConfig
from workflow.core.files import InputError, csv_text, list_images, write_text
from workflow.core.images import read_input, to_rgb8
from workflow.core.measure import write_png

log = logging.getLogger(__name__)
SHEET_LIMIT = 64  # images shown per contact sheet (exemplars first); clusters.csv lists every image


def clusters_csv(stems: list[str], result: Clustering) -> str:
    rows = zip(stems, result.labels, result.distances, result.exemplar)
    return csv_text(("image", "cluster", "distance", "exemplar"), ((s, int(k), f"{d:.4f}", int(e)) for s, k, d, e in rows))


def features_csv(stems: list[str], features: np.ndarray) -> str:
    return csv_text(("image", *FEATURE_NAMES), ((stem, *(f"{v:.6g}" for v in row)) for stem, row in zip(stems, features)))


def cluster_folder(images_dir: str | os.PathLike, out_dir: str | os.PathLike, cfg: NucflowConfig) -> int:
    """Cluster every readable image of `images_dir`; unreadable ones are reported and left out."""
    if cfg.cluster.k is not None and cfg.cluster.k < 1:
        raise InputError(None, f"the number of clusters must be at least 1, not {cfg.cluster.k}")
    out_dir = Path(out_dir)
    check_writable(out_dir)
    cfg.save(out_dir)
    stems, images, features, failed = [], [], [], 0
    for path in tqdm(list_images(images_dir), desc="style descriptors", unit="img"):
        try:
            rgb8 = to_rgb8(read_input(path, cfg.input), cfg.input)
        except InputError as error:
            log.error("%s", error)
            failed += 1
            continue
        stems.append(path.stem)
        features.append(style_features(rgb8, cfg.cluster.max_side))
        images.append(thumbnail(rgb8))  # only thumbnails stay in memory
    if not stems:
        raise InputError(images_dir, "no readable image to cluster")
    result = cluster_styles(np.array(features), cfg.cluster)
    if cfg.cluster.k is not None and result.k < cfg.cluster.k:
        log.warning("k %d asked for, but %d images have only %d distinct styles: k is %d", cfg.cluster.k, len(stems), result.k, result.k)
    write_text(out_dir / "clusters.csv", clusters_csv(stems, result))
    write_text(out_dir / "features.csv", features_csv(stems, np.array(features)))
    for index in range(result.k):
        members = sorted(np.flatnonzero(result.labels == index), key=lambda i: (not result.exemplar[i], result.distances[i]))[:SHEET_LIMIT]
        write_png(out_dir / f"contact_sheet_{index}.png", contact_sheet([images[i] for i in members], [bool(result.exemplar[i]) for i in members]))
    sizes = ", ".join(f"{int((result.labels == i).sum())}" for i in range(result.k))
    how = "given" if cfg.cluster.k is not None else ("by silhouette" if result.silhouettes else "one image style")
    log.info("%d images in %d clusters (k %s; sizes %s); %d unreadable; outputs in %s", len(stems), result.k, how, sizes, failed, out_dir)
    return 1 if failed else 0
