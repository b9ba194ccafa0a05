"""`report.html`: one self-contained page per prediction run (images embedded as base64 PNG):
summary, size and count histograms, a thumbnail grid of contour overlays, and a per-image
table with scores when ground truth was given.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from workflow.config import NucflowConfig
from workflow.core.files import label_path
from workflow.core.images import display_rgb8, read_planes, resize_image, scaled_shape
from workflow.core.labels import resize_labels
from workflow.core.measure import overlay, png_bytes
from workflow.core.metrics import ImageScores
from workflow.evaluate import score_folders

log = logging.getLogger(__name__)

MAX_THUMBNAILS = 60  # a report over thousands of images stays small; the tables still list every image
THUMBNAIL_SIDE = 220


@dataclass
class ImageRow:
    """One finished image as the run's tables and report see it."""

    path: Path
    count: int
    median_diameter: float | None
    diameters: np.ndarray
    pixel_size: float | None = None  # um per pixel, when the image (or --pixel-size) gives one

    @property
    def stem(self) -> str:
        return self.path.stem


def data_uri(png: bytes) -> str:
    """PNG bytes as an inline `src` for an <img> tag."""
    return "data:image/png;base64," + base64.b64encode(png).decode()


def middle_plane(planes: np.ndarray, stack_axes: str) -> np.ndarray:
    """A stack's middle plane (its first axes flattened); a 2-D image as it is."""
    if not stack_axes:
        return planes
    flat = planes.reshape((-1,) + planes.shape[len(stack_axes) :])
    return flat[len(flat) // 2]


def thumbnail(row: ImageRow, out_dir: Path, cfg: NucflowConfig) -> str:
    """The image with its nucleus contours, longest side THUMBNAIL_SIDE, as a data URI."""
    rgb8 = display_rgb8(middle_plane(*read_planes(row.path, cfg.input.channel, cfg.input.axes)), cfg.input)
    labels = middle_plane(*read_planes(label_path(out_dir, row.stem))).astype(np.int32)
    shape = scaled_shape(rgb8.shape, min(1.0, THUMBNAIL_SIDE / max(rgb8.shape[:2])))
    return data_uri(png_bytes(overlay(resize_image(rgb8, shape), resize_labels(labels, shape))))


def histograms(rows: list[ImageRow]) -> str:
    """Histograms of nucleus diameter (all nuclei) and of nuclei per image, as a data URI."""
    figure = Figure(figsize=(9, 3.2), dpi=100)
    sizes, counts = figure.subplots(1, 2)
    diameters = np.concatenate([r.diameters for r in rows]) if rows else np.array([])
    sizes.hist(diameters, bins=40, color="#3b7dd8")
    sizes.set(title=f"nucleus size ({diameters.size} nuclei)", xlabel="equivalent diameter (px)", ylabel="nuclei")
    counts.hist([r.count for r in rows], bins=min(40, max(1, len(rows))), color="#d8823b")
    counts.set(title=f"nuclei per image ({len(rows)} images)", xlabel="nuclei", ylabel="images")
    for axis in (sizes.yaxis, counts.xaxis, counts.yaxis):  # counts of nuclei and images are whole numbers
        axis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return data_uri(buffer.getvalue())


def scores_by_image(out_dir: Path, truth_dir: str | os.PathLike, stems: list[str]) -> dict[str, ImageScores]:
    """Scores of this run's images that have a ground-truth mask in `truth_dir`."""
    result = score_folders(out_dir / "labels", truth_dir)
    for line in result.failed:
        log.warning("report: %s", line)
    scores = result.scores
    return {stem: scores[stem] for stem in stems if stem in scores}


def tile(out_dir: Path, row: ImageRow, cfg: NucflowConfig) -> str:
    """One thumbnail with its caption (nuclei found: image), linked to the image's full-size overlay
    (overlays/<stem>.png) when the run wrote one."""
    name = html.escape(row.stem)
    image = f'<img src="{thumbnail(row, out_dir, cfg)}" alt="{name}">'
    if (out_dir / "overlays" / f"{row.stem}.png").is_file():
        image = f'<a href="overlays/{html.escape(row.stem)}.png">{image}</a>'
    return f'<figure>{image}<figcaption title="{name}">{row.count}: {name}</figcaption></figure>'


def _table(rows: list[ImageRow], scores: dict[str, ImageScores]) -> str:
    calibrated = any(r.pixel_size is not None for r in rows)
    head = (
        "<tr><th>image</th><th>nuclei</th><th>median diameter (px)</th>"
        + ("<th>median diameter (µm)</th><th>pixel size (µm)</th>" if calibrated else "")
        + ("<th>DSB score</th><th>AP@0.5</th><th>F1</th><th>true nuclei</th>" if scores else "")
        + "</tr>"
    )
    body = []
    for row in rows:
        cells = [html.escape(row.stem), str(row.count), "" if row.median_diameter is None else f"{row.median_diameter:.1f}"]
        if calibrated:
            known = row.pixel_size is not None
            cells += [
                f"{row.median_diameter * row.pixel_size:.2f}" if known and row.median_diameter is not None else "",
                f"{row.pixel_size:.4g}" if known else "",
            ]
        if scores:
            s = scores.get(row.stem)
            cells += [f"{s.dsb:.3f}", f"{s.ap50:.3f}", f"{s.f1:.3f}", str(s.n_true)] if s else ["", "", "", "no mask"]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def build_report(out_dir: Path, rows: list[ImageRow], cfg: NucflowConfig, summary: str, truth_dir: str | os.PathLike | None) -> str:
    """The whole page as HTML text."""
    scores = scores_by_image(out_dir, truth_dir, [r.stem for r in rows]) if truth_dir else {}
    mean = f"<p><b>Mean DSB score over {len(scores)} images with ground truth: {np.mean([s.dsb for s in scores.values()]):.4f}</b></p>" if scores else ""
    tiles = "".join(tile(out_dir, row, cfg) for row in rows[:MAX_THUMBNAILS])
    shown = f"first {MAX_THUMBNAILS} of {len(rows)}" if len(rows) > MAX_THUMBNAILS else f"all {len(rows)}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>nucflow report: {html.escape(out_dir.name)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 8px; }}
figure {{ margin: 0; width: {THUMBNAIL_SIDE}px; text-align: center; font-size: 12px; }}
figcaption {{ overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }}
img {{ display: block; }}
table {{ border-collapse: collapse; font-size: 13px; }}
td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
</style></head><body>
<h1>nucflow report</h1>
<p>Method: <b>{html.escape(cfg.method)}</b>. {html.escape(summary)}. Outputs: <code>{html.escape(str(out_dir))}</code>
(labels/ as uint16 TIFF, measurements.csv, sizes.csv, config.json).</p>
{mean}
<h2>Nucleus size and count</h2>
<img src="{histograms(rows)}" alt="histograms of nucleus size and nuclei per image">
<h2>Contours ({shown} images; caption: nuclei found, image)</h2>
<div class="grid">{tiles}</div>
<h2>Per image</h2>
{_table(rows, scores)}
</body></html>
"""
