"""`nucflow evaluate`: score a folder of predicted label images against ground truth."""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from workflow.core.files import InputError, csv_text, is_image_file, list_images, write_text
from workflow.core.labels import read_labels
from workflow.core.metrics import ImageScores, mean_scores, score_image

if TYPE_CHECKING:
    from workflow.predict import Segmenter

log = logging.getLogger(__name__)
COLUMNS = ("dsb", "ap50", "precision", "recall", "f1", "mean_matched_iou", "n_true", "n_pred", "n_matched")


@dataclass
class FolderScores:
    """Scores of a prediction folder against a ground-truth folder, and what could not be scored."""

    scores: dict[str, ImageScores] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # ground truth without a prediction: scored as empty
    failed: list[str] = field(default_factory=list)  # one line per pair that could not be scored (skipped)
    unmatched: list[str] = field(default_factory=list)  # predictions without ground truth (ignored)


def score_folders(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike) -> FolderScores:
    """Per-image scores for every ground-truth image, matched by stem; a missing prediction is scored
    as an empty one, a pair that cannot be scored (unreadable, sizes differ) is skipped and named."""
    if not Path(pred_dir).is_dir():
        raise InputError(pred_dir, "prediction folder not found")
    pred_files = {p.stem: p for p in Path(pred_dir).iterdir() if is_image_file(p)}
    result = FolderScores()
    truths = list_images(gt_dir)
    result.unmatched = sorted(set(pred_files) - {p.stem for p in truths})
    for gt_path in tqdm(truths, desc="scoring", unit="img"):
        try:
            truth = read_labels(gt_path)
            if gt_path.stem in pred_files:
                pred = read_labels(pred_files[gt_path.stem])
                if pred.shape != truth.shape:
                    raise InputError(pred_files[gt_path.stem], f"size {pred.shape} differs from ground truth {truth.shape}; not scored")
            else:
                result.missing.append(gt_path.stem)
                pred = np.zeros_like(truth)
        except InputError as error:
            result.failed.append(str(error))
            continue
        result.scores[gt_path.stem] = score_image(truth, pred)
    return result


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
    result = score_folders(pred_dir, gt_dir)
    scores, missing = result.scores, result.missing
    for line in result.failed:
        log.error("%s", line)
    if result.unmatched:
        log.warning("%d prediction(s) have no ground truth and were not scored: %s", len(result.unmatched), ", ".join(result.unmatched[:10]))
    if not scores:
        log.error("%s: no image could be scored against %s", pred_dir, gt_dir)
        return 1
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
    return 1 if result.failed else 0
