"""The Kaggle Data Science Bowl 2018 score and the usual matching statistics.

Conventions (pure numpy, vectorised):
- objects are matched one-to-one by IoU; a match at threshold t needs IoU > t. For t >= 0.5
  matches are unique, so counting pairs with IoU > t gives the true positives directly;
- DSB image score = mean over t in 0.50, 0.55, ..., 0.95 of TP / (TP + FP + FN);
- an image with no object in either prediction or ground truth scores 1.0 on every
  statistic; with objects on one side only, 0.0;
- precision, recall, F1, AP@0.5 (= TP/(TP+FP+FN) at t = 0.5) and the mean IoU of matched
  pairs are taken at t = 0.5; a ratio with a zero denominator is 0.0 (but see above).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from skimage.segmentation import relabel_sequential

THRESHOLDS = np.round(np.arange(0.5, 1.0, 0.05), 2)


@dataclass(frozen=True)
class ImageScores:
    """Matching statistics of one predicted label image against its ground truth."""

    dsb: float
    ap50: float
    precision: float
    recall: float
    f1: float
    mean_matched_iou: float
    n_true: int
    n_pred: int
    n_matched: int

    def as_dict(self) -> dict:
        return asdict(self)


def iou_matrix(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU of every ground-truth object (rows) with every predicted object (columns).

    Built from one bincount over pixel pairs, so it costs O(pixels + n_true * n_pred).
    """
    if truth.shape != pred.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {truth.shape}")
    truth = relabel_sequential(np.asarray(truth, dtype=np.int64))[0].ravel()
    pred = relabel_sequential(np.asarray(pred, dtype=np.int64))[0].ravel()
    n_true, n_pred = int(truth.max(initial=0)), int(pred.max(initial=0))
    joint = np.bincount(truth * (n_pred + 1) + pred, minlength=(n_true + 1) * (n_pred + 1))
    joint = joint.reshape(n_true + 1, n_pred + 1)
    area_true = joint.sum(axis=1)[1:, None]
    area_pred = joint.sum(axis=0)[None, 1:]
    intersection = joint[1:, 1:]
    union = area_true + area_pred - intersection
    return intersection / np.maximum(union, 1)


def score_image(truth: np.ndarray, pred: np.ndarray) -> ImageScores:
    """DSB score, AP@0.5, precision, recall, F1 and matched IoU of one image."""
    iou = iou_matrix(truth, pred)
    n_true, n_pred = iou.shape
    if n_true == 0 and n_pred == 0:
        return ImageScores(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0, 0, 0)
    matched_iou = iou[iou > 0.5]  # at most one per row and column, so these are the matches
    tp = np.array([(matched_iou > t).sum() for t in THRESHOLDS])
    fp, fn = n_pred - tp, n_true - tp
    per_threshold = tp / (tp + fp + fn)
    tp50 = int(tp[0])
    precision = tp50 / n_pred if n_pred else 0.0
    recall = tp50 / n_true if n_true else 0.0
    f1 = 2 * tp50 / (n_true + n_pred)
    return ImageScores(
        dsb=float(per_threshold.mean()),
        ap50=float(per_threshold[0]),
        precision=float(precision),
        recall=float(recall),
        f1=float(f1),
        mean_matched_iou=float(matched_iou.mean()) if tp50 else 0.0,
        n_true=n_true,
        n_pred=n_pred,
        n_matched=tp50,
    )


def mean_scores(scores: list[ImageScores]) -> dict[str, float]:
    """Dataset figures: the mean of each statistic over images (the DSB dataset score)."""
    if not scores:
        raise ValueError("no image scores to average")
    keys = ("dsb", "ap50", "precision", "recall", "f1", "mean_matched_iou")
    return {key: float(np.mean([getattr(s, key) for s in scores])) for key in keys}
