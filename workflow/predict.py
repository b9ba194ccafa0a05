"""`nucflow predict`: segment every image of a folder, resumably, with a summary at the end."""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from tqdm import tqdm

from workflow.config import NucflowConfig
from workflow.files import InputError, label_path, list_images, write_text
from workflow.images import read_image, to_rgb8, write_probability
from workflow.labels import median_diameter, read_labels, write_labels

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """One image's labels, plus named intermediate maps of the same size when they were asked for."""

    labels: np.ndarray
    intermediate: dict[str, np.ndarray] = field(default_factory=dict)


Segmenter = Callable[[np.ndarray], Prediction]  # (H, W, 3) uint8 -> labels of the same size


@dataclass
class RunSummary:
    """What a prediction run did, for the closing message and the exit status."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    nuclei: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        return (
            f"{len(self.done)} segmented, {len(self.skipped)} skipped (already done), {len(self.failed)} failed; "
            f"{self.nuclei} nuclei in the new outputs; {self.seconds:.1f} s"
        )


def classic_segmenter(cfg: NucflowConfig, diameter: float | None) -> Segmenter:
    """Otsu + watershed baseline on the size-normalised image."""
    from presegment.classic import segment

    def run(rgb8: np.ndarray) -> Prediction:
        return Prediction(segment(rgb8, cfg.classic, cfg.size.target_diameter, diameter, cfg.size.min_scale, cfg.size.max_scale))

    return run


@contextlib.contextmanager
def model_errors() -> Iterator[None]:
    """Turn a missing or mismatched model, parameter file or backend into a one-line user error."""
    try:
        yield
    except (FileNotFoundError, ImportError, ValueError) as error:
        raise InputError(None, str(error)) from None


def fast_segmenter(cfg: NucflowConfig, diameter: float | None, model_folder: str | None) -> Segmenter:
    """Mask R-CNN presegmentation at the model's nucleus scale; the model is loaded once."""
    from presegment.backends import load_presegmenter
    from presegment.pipeline import presegment

    with model_errors():
        model, card = load_presegmenter(cfg.presegment.backend, model_folder or cfg.presegment.model, cfg.device)
    target = float(card["target_diameter"])

    def run(rgb8: np.ndarray) -> Prediction:
        result = presegment(model, rgb8, target, cfg.presegment.detect, diameter, cfg.presegment.probe_scale, (cfg.size.min_scale, cfg.size.max_scale))
        if result.size_source == "unknown":
            log.warning("no nucleus found at the probe scale; segmented the image unscaled")
        return Prediction(result.labels)

    return run


def load_full_models(cfg: NucflowConfig, model_folder: str | None, ensemble_folder: str | None):
    """Presegmenter and U-Net ensemble for the full path, or a one-line error naming what is missing."""
    from presegment.backends import load_presegmenter
    from unet_ensemble.storage import load_ensemble
    from workflow.full import Models
    from workflow.modelfiles import device_of

    with model_errors():
        model, card = load_presegmenter(cfg.presegment.backend, model_folder or cfg.presegment.model, cfg.device)
        members = load_ensemble(ensemble_folder or cfg.unet.model, device_of(model))
    return Models(model, float(card["target_diameter"]), members)


def full_segmenter(cfg: NucflowConfig, diameter: float | None, model_folder: str | None, ensemble_folder: str | None) -> Segmenter:
    """Presegment, U-Net ensemble, multi-scale Mask R-CNN and the tuned refinement; with
    `output.keep_intermediate` also the ensemble map and each scale's Mask R-CNN labels.
    """
    from postprocess.params import load_params
    from workflow.full import intermediate_maps, network_outputs, refined_labels

    models = load_full_models(cfg, model_folder, ensemble_folder)
    with model_errors():
        params = load_params(cfg.full.params)

    def run(rgb8: np.ndarray) -> Prediction:
        outputs = network_outputs(models, rgb8, cfg, diameter)
        shape = rgb8.shape[:2]
        kept = intermediate_maps(outputs, cfg.full.mrcnn_scales, shape) if cfg.output.keep_intermediate else {}
        return Prediction(refined_labels(outputs, params, shape), kept)

    return run


def build_segmenter(
    method: str, cfg: NucflowConfig, diameter: float | None, model_folder: str | None, ensemble_folder: str | None = None
) -> Segmenter:
    if method == "classic":
        return classic_segmenter(cfg, diameter)
    if method == "fast":
        return fast_segmenter(cfg, diameter, model_folder)
    if method == "full":
        return full_segmenter(cfg, diameter, model_folder, ensemble_folder)
    raise InputError(None, f"unknown prediction method {method!r}; use classic, fast or full")


def sizes_table(stems: list[str], out_dir: Path) -> str:
    """CSV of image, median nucleus diameter (px) and nucleus count, from the label files written."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("image", "median_diameter", "count"))
    for stem in stems:
        path = label_path(out_dir, stem)
        if path.is_file():
            labels = read_labels(path)
            diameter = median_diameter(labels)
            writer.writerow((stem, "" if diameter is None else f"{diameter:.2f}", int(np.unique(labels[labels > 0]).size)))
    return buffer.getvalue()


def write_intermediate(out_dir: Path, stem: str, maps: dict[str, np.ndarray]) -> None:
    """`OUT/intermediate/<stem>_<name>.tif`: probability maps scaled to uint16 0..65535, label maps as labels."""
    for name, array in maps.items():
        path = out_dir / "intermediate" / f"{stem}_{name}.tif"
        if np.issubdtype(array.dtype, np.floating):
            write_probability(path, array)
        else:
            write_labels(path, array)


def check_writable(out_dir: Path) -> None:
    """Create the output folder, or fail early with a clear message."""
    try:
        (out_dir / "labels").mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".nucflow-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise InputError(out_dir, f"output folder is not writable ({error.strerror})") from None


def predict_folder(
    images_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: NucflowConfig,
    method: str = "fast",
    diameter: float | None = None,
    model_folder: str | None = None,
    overwrite: bool = False,
    ensemble_folder: str | None = None,
) -> int:
    """Segment every image of `images_dir` into `out_dir/labels/<stem>.tif`; returns the exit status.

    Finished images are skipped unless `overwrite`; one bad image is reported and the
    others still run; `sizes.csv` and `config.json` are written beside the labels.
    """
    started = time.monotonic()
    images, out_dir = list_images(images_dir), Path(out_dir)
    check_writable(out_dir)
    cfg.save(out_dir)
    summary = RunSummary()
    todo = [p for p in images if overwrite or not label_path(out_dir, p.stem).is_file()]
    summary.skipped = [p.stem for p in images if p not in todo]
    if todo:
        segmenter = build_segmenter(method, cfg, diameter, model_folder, ensemble_folder)
    for path in tqdm(todo, desc=f"segmenting ({method})", unit="img"):
        try:
            prediction = segmenter(to_rgb8(read_image(path), cfg.input.stretch_percentiles))
        except InputError as error:
            log.error("%s", error)
            summary.failed.append(path.stem)
            continue
        write_intermediate(out_dir, path.stem, prediction.intermediate)  # before the labels, which mark the image done
        labels = prediction.labels
        write_labels(label_path(out_dir, path.stem), labels)
        count = int(labels.max())
        if count == 0:
            log.warning("%s: no nucleus found; wrote an empty label image", path.name)
        summary.done.append(path.stem)
        summary.nuclei += count
    write_text(out_dir / "sizes.csv", sizes_table([p.stem for p in images], out_dir))
    summary.seconds = time.monotonic() - started
    log.info("%s; outputs in %s", summary.line(), out_dir)
    return 1 if summary.failed else 0
