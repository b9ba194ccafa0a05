"""A prediction run's tables and report, built from the per-image files, so that a resumed
run's outputs cover every finished image, not only the ones segmented this time.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path

import numpy as np

from workflow.config import NucflowConfig
from workflow.core.calibration import read_pixel_size
from workflow.core.files import csv_text, label_path, measurement_path, write_text
from workflow.core.images import InputConfig, read_input
from workflow.core.labels import labels_to_rle, read_labels
from workflow.core.measure import MEASUREMENT_COLUMNS, measure_nuclei, measurements_csv
from workflow.report import ImageRow, build_report

log = logging.getLogger(__name__)
DIAMETER = MEASUREMENT_COLUMNS.index("equivalent_diameter")


def image_measurements(out_dir: Path, image_path: Path, norm: InputConfig) -> list[list[str]]:
    """The image's per-nucleus rows (as CSV strings); recomputed from its labels if the table is missing."""
    path = measurement_path(out_dir, image_path.stem)
    if not path.is_file():
        labels_file = label_path(out_dir, image_path.stem)
        nuclei = measure_nuclei(image_path.stem, read_labels(labels_file), read_input(image_path, norm), read_pixel_size(labels_file))
        write_text(path, measurements_csv(nuclei))
    return list(csv.reader(io.StringIO(path.read_text())))[1:]


def sizes_csv(rows: list[ImageRow]) -> str:
    """CSV of image, median nucleus diameter (px), nucleus count and pixel size (um, empty when unknown)."""
    return csv_text(
        ("image", "median_diameter", "count", "pixel_size_um"),
        (
            (r.stem, "" if r.median_diameter is None else f"{r.median_diameter:.2f}", r.count, "" if r.pixel_size is None else f"{r.pixel_size:.6g}")
            for r in rows
        ),
    )


def submission_csv(out_dir: Path, stems: list[str]) -> str:
    """Kaggle DSB submission: ImageId,EncodedPixels, one row per nucleus (an empty code for an empty image)."""
    rows = ((stem, code) for stem in stems for code in labels_to_rle(read_labels(label_path(out_dir, stem))) or [""])
    return csv_text(("ImageId", "EncodedPixels"), rows)


def write_run_outputs(out_dir: Path, images: list[Path], cfg: NucflowConfig, summary: str, truth_dir: str | os.PathLike | None) -> None:
    """`sizes.csv`, `inputs.csv` (where each image was read), `measurements.csv`, optionally `submission.csv`, and `report.html` over all finished images."""
    finished = [p for p in images if label_path(out_dir, p.stem).is_file()]
    rows, all_rows = [], []
    for path in finished:
        nuclei = image_measurements(out_dir, path, cfg.input)
        diameters = np.array([float(r[DIAMETER]) for r in nuclei])
        size = read_pixel_size(label_path(out_dir, path.stem))
        rows.append(ImageRow(path, len(nuclei), float(np.median(diameters)) if nuclei else None, diameters, size))
        all_rows.extend(nuclei)
    write_text(out_dir / "sizes.csv", sizes_csv(rows))
    write_text(out_dir / "inputs.csv", csv_text(("image", "path"), ((p.stem, str(p.resolve())) for p in finished)))  # napari's reader finds the images
    write_text(out_dir / "measurements.csv", measurements_csv([tuple(r) for r in all_rows]))
    if cfg.output.kaggle_csv:
        write_text(out_dir / "submission.csv", submission_csv(out_dir, [p.stem for p in finished]))
    if cfg.output.report:
        write_text(out_dir / "report.html", build_report(out_dir, rows, cfg, summary, truth_dir))
