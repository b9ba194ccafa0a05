"""`nucflow evaluate`: score a folder of predicted label images against ground truth."""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from workflow.files import InputError, csv_text, is_image_file, list_images, write_text
from workflow.labels import read_labels
from workflow.metrics import ImageScores, mean_scores, score_image
from workflow.predict import Segmenter

log = logging.getLogger(__name__)
COLUMNS = ("dsb", "ap50", "precision", "recall", "f1", "mean_matched_iou", "n_true", "n_pred", "n_matched")


def score_folders(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike) -> tuple[dict[str, ImageScores], list[str]]:
    """Per-image scores for every ground-truth image, and the stems that had no prediction.

    Files are matched by stem; a missing prediction is scored as an empty one.
    """
    if not Path(pred_dir).is_dir():
        raise InputError(pred_dir, "prediction folder not found")
    pred_files = {p.stem: p for p in Path(pred_dir).iterdir() if is_image_file(p)}
    scores, missing = {}, []
    for gt_path in tqdm(list_images(gt_dir), desc="scoring", unit="img"):
        truth = read_labels(gt_path)
        if gt_path.stem in pred_files:
            pred = read_labels(pred_files[gt_path.stem])
            if pred.shape != truth.shape:
                raise InputError(pred_files[gt_path.stem], f"size {pred.shape} differs from ground truth {truth.shape}")
        else:
            missing.append(gt_path.stem)
            pred = np.zeros_like(truth)
        scores[gt_path.stem] = score_image(truth, pred)
    return scores, missing


def score_segmenter(segmenter: Segmenter, pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[list[ImageScores], float]:
    """Scores of a segmenter on (rgb8 image, ground truth) pairs, and its mean seconds per image."""
    scores, seconds = [], 0.0
    for image, truth in tqdm(pairs, desc="segmenting and scoring", unit="img"):
        started = time.perf_counter()
        labels = segmenter(image).labels
        seconds += time.perf_counter() - started
        scores.append(score_image(truth, labels))
    return scores, seconds / max(1, len(pairs))


def scores_table(scores: dict[str, ImageScores]) -> str:
    """CSV text: one row per image, then a 'mean' row."""
    rows = [(stem, *(_fmt(getattr(s, c)) for c in COLUMNS)) for stem, s in scores.items()]
    means = mean_scores(list(scores.values()))
    totals = {c: sum(getattr(s, c) for s in scores.values()) for c in ("n_true", "n_pred", "n_matched")}
    rows.append(("mean", *(_fmt(means.get(c, totals.get(c))) for c in COLUMNS)))
    return csv_text(("image", *COLUMNS), rows)


def _fmt(value: float | int) -> str:
    return str(value) if isinstance(value, (int, np.integer)) else f"{value:.4f}"


def format_console(table_csv: str) -> str:
    """The CSV table as aligned columns for the terminal."""
    rows = list(csv.reader(io.StringIO(table_csv)))
    rows = [[r[0] if len(r[0]) <= 24 else r[0][:21] + "...", *r[1:]] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths))) for r in rows)


def evaluate_folders(pred_dir: str, gt_dir: str, csv_path: str | None = None) -> int:
    """The `evaluate` command: print the table, write the CSV, report missing predictions."""
    if csv_path and Path(csv_path).is_dir():
        raise InputError(csv_path, "--csv names a folder; give a file name for the table")
    scores, missing = score_folders(pred_dir, gt_dir)
    table = scores_table(scores)
    print(format_console(table))
    if missing:
        log.warning(
            "%d ground-truth image(s) had no prediction and were scored as empty: %s",
            len(missing),
            ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""),
        )
    if csv_path:
        write_text(csv_path, table)
        log.info("wrote %s", csv_path)
    means = mean_scores(list(scores.values()))
    print(f"mean DSB score {means['dsb']:.4f}  AP@0.5 {means['ap50']:.4f}  F1 {means['f1']:.4f} over {len(scores)} images")
    return 0
