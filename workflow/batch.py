"""`nucflow predict`: segment every image of a folder, in parallel when asked (joblib locally,
its Dask backend on a cluster), resumably, and write the outputs a lab uses.

Per image, written before the label file that marks the image finished: optional
intermediate maps and overlay PNG, and `measurements/<stem>.csv`. Per run: `sizes.csv`,
`measurements.csv`, optional `submission.csv` (Kaggle run-length codes), `report.html`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from joblib import Parallel, delayed, parallel_config
from tqdm import tqdm

from workflow.config import NucflowConfig
from workflow.core.calibration import read_pixel_size
from workflow.core.files import InputError, gather_images, label_path, measurement_path, remove_partial_files, write_text
from workflow.core.images import display_rgb8, read_planes, to_rgb8, write_probability
from workflow.core.labels import count_objects, write_label_stack, write_labels
from workflow.core.measure import measure_nuclei, measurements_csv, overlay, write_png
from workflow.core.rois import write_rois
from workflow.predict import Prediction, Segmenter, build_segmenter
from workflow.run_outputs import write_run_outputs
from workflow.stacks import count_stack_objects, measure_stack, segment_stack

log = logging.getLogger(__name__)
_SEGMENTERS: dict[str, Segmenter] = {}  # per process: a worker loads its models once, not once per image
DASK_CONNECT_TIMEOUT = "30s"


@dataclass
class ImageResult:
    """What became of one image: its nucleus count, or the one-line reason it failed."""

    stem: str
    nuclei: int = 0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)  # one line each, naming the file
    file: str = ""  # the input file, for messages


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


def cached_segmenter(cfg: NucflowConfig) -> Segmenter:
    """The segmenter for `cfg`, built (models loaded) on first use in this process."""
    key = json.dumps(cfg.to_dict(), sort_keys=True, default=str)
    if key not in _SEGMENTERS:
        _SEGMENTERS.clear()
        _SEGMENTERS[key] = build_segmenter(cfg.method, cfg)
    return _SEGMENTERS[key]


def write_image_outputs(
    out_dir: Path, stem: str, image: np.ndarray, prediction: Prediction, cfg: NucflowConfig, pixel_size: float | None, written: list[Path]
) -> None:
    """Every per-image output, each path added to `written` before it is written; the label file
    last, since its presence marks the image finished. With `pixel_size` (um per pixel) the labels carry
    the calibration and the measurements have micrometre columns."""

    def write(path: Path, writer: Callable, content: object) -> None:
        written.append(path)
        writer(path, content)

    for name, array in prediction.intermediate.items():
        write(out_dir / "intermediate" / f"{stem}_{name}.tif", write_probability if np.issubdtype(array.dtype, np.floating) else write_labels, array)
    if cfg.output.overlays:
        write(out_dir / "overlays" / f"{stem}.png", write_png, overlay(display_rgb8(image, cfg.input), prediction.labels))
    if cfg.output.rois:
        write(out_dir / "rois" / f"{stem}.zip", write_rois, prediction.labels)
    write(measurement_path(out_dir, stem), write_text, measurements_csv(measure_nuclei(stem, prediction.labels, image, pixel_size)))
    write(label_path(out_dir, stem), functools.partial(write_labels, pixel_size=pixel_size), prediction.labels)


def segment_image(path: Path, out_dir: Path, cfg: NucflowConfig, threads: int | None = None) -> ImageResult:
    """Read, segment and write one image; any failure comes back as a one-line message, so a
    batch of thousands goes on past one bad file.
    """
    if threads:
        import torch

        torch.set_num_threads(threads)
    warnings = []
    try:
        image, stack_axes = read_planes(path, cfg.input.channel, cfg.input.axes)
        if image.shape[-1] == 4 and image.ndim == 3 + len(stack_axes) and image[..., 3].min() != image[..., 3].max():
            warnings.append(f"{path}: its 4th channel varies, so it is not a plain alpha channel; it is left out (--channel 3 segments it)")
        if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
            warnings.append(f"{path}: {int((~np.isfinite(image)).sum())} non-finite pixels (NaN or inf) left out of the intensity stretch")
        pixel_size = cfg.input.pixel_size or read_pixel_size(path)
        if stack_axes:
            nuclei = _segment_stack_file(path, image, stack_axes, out_dir, cfg, pixel_size, warnings)
        else:
            rgb8 = to_rgb8(image, cfg.input)
            prediction = cached_segmenter(cfg)(rgb8)
            if prediction.diameter is None:
                warnings.append(f"{path}: no nucleus found by the size estimate; segmented unscaled")
            if prediction.inverted:
                log.info("%s: dark nuclei on a bright background, segmented gray-inverted (the presegmenter was surer so)", path)
            write_all_or_nothing(out_dir, path.stem, functools.partial(write_image_outputs, out_dir, path.stem, image, prediction, cfg, pixel_size))
            nuclei = count_objects(prediction.labels)
    except InputError as error:
        return ImageResult(path.stem, error=str(error), warnings=warnings, file=str(path))
    except Exception as error:  # noqa: BLE001 - reported per image; the run's exit status says it failed
        return ImageResult(path.stem, error=f"{path}: {type(error).__name__}: {error}", warnings=warnings, file=str(path))
    return ImageResult(path.stem, nuclei, warnings=warnings, file=str(path))


def _segment_stack_file(
    path: Path, stack: np.ndarray, stack_axes: str, out_dir: Path, cfg: NucflowConfig, pixel_size: float | None, warnings: list[str]
) -> int:
    """Segment a Z/T stack and write its label stack and measurements; returns its object count."""
    skipped = [
        flag
        for flag, wanted in (("--overlays", cfg.output.overlays), ("--rois", cfg.output.rois), ("--keep-intermediate", cfg.output.keep_intermediate))
        if wanted
    ]
    if skipped:
        warnings.append(f"{path}: {', '.join(skipped)} not written for stacks (2-D images only)")
    labels = segment_stack(path, stack, stack_axes, cached_segmenter(cfg), cfg, warnings)
    rows = measure_stack(path.stem, labels, stack, stack_axes, pixel_size)

    def write_outputs(written: list[Path]) -> None:
        written.append(measurement_path(out_dir, path.stem))
        write_text(written[-1], measurements_csv(rows))
        written.append(label_path(out_dir, path.stem))
        write_label_stack(written[-1], labels, stack_axes + "YX", pixel_size)

    write_all_or_nothing(out_dir, path.stem, write_outputs)
    return count_stack_objects(labels, cfg.stack.stitch_threshold > 0)


def write_all_or_nothing(out_dir: Path, stem: str, write_outputs: Callable[[list[Path]], None]) -> None:
    """Run `write_outputs(written)` (which adds each path to `written` before writing it), removing what it
    wrote of this image when a write fails, so a rerun finds the image either finished or not started;
    the error names the folder, not a temporary file."""
    written: list[Path] = []
    try:
        write_outputs(written)
    except OSError as error:
        for path in written:
            path.unlink(missing_ok=True)
        folder = Path(error.filename).parent if error.filename else out_dir
        raise InputError(folder, f"cannot write the outputs of {stem} here ({error.strerror or error})") from None


def run_tasks(task: Callable[[Path], ImageResult], paths: list[Path], jobs: int, scheduler: str | None) -> Iterator[ImageResult]:
    """Results of `task` over `paths`: in this process, in `jobs` local processes, or on a Dask cluster."""
    if scheduler is None and jobs <= 1:
        yield from map(task, paths)
        return
    with contextlib.ExitStack() as stack:
        if scheduler is not None:
            try:
                from distributed import Client
            except ImportError:
                raise InputError(None, "--dask-scheduler needs Dask: install nucflow with the 'dask' extra (uv sync --extra dask)") from None
            try:
                stack.enter_context(Client(scheduler, timeout=DASK_CONNECT_TIMEOUT))
            except OSError as error:
                raise InputError(None, f"cannot reach the Dask scheduler at {scheduler} ({error})") from None
            stack.enter_context(parallel_config(backend="dask"))
        workers = jobs if jobs > 1 else -1
        yield from Parallel(n_jobs=workers, return_as="generator_unordered")(delayed(task)(p) for p in paths)


def threads_per_worker(jobs: int, scheduler: str | None) -> int | None:
    """Torch threads per local worker so that `jobs` workers share the cores; None = leave as is."""
    if scheduler is not None or jobs <= 1:
        return None
    return max(1, (os.cpu_count() or 1) // jobs)


def check_writable(out_dir: Path) -> None:
    """Create the output folder, or fail early with a clear message."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "is a file, not a folder; give a folder for the outputs")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".nucflow-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise InputError(out_dir, f"output folder is not writable ({error.strerror})") from None


# settings (dotted keys, each ending in ".") that change no per-image output: the report, and every training setting
IGNORED_SETTINGS = ("output.report.", "adapt.", "presegment.train.", "unet.train.", "pix2pix.", "synthetic.", "cluster.", "search.")


def first_difference(old: object, new: object, key: str = "") -> str | None:
    """The first setting (dotted key) whose value differs between two config dicts, with both values."""
    if isinstance(old, dict) and isinstance(new, dict):
        for name in sorted(set(old) | set(new)):
            found = first_difference(old.get(name), new.get(name), f"{key}{name}.")
            if found:
                return found
        return None
    key = key.rstrip(".")
    return None if old == new or f"{key}.".startswith(IGNORED_SETTINGS) else f"{key}: {json.dumps(old)} before, {json.dumps(new)} now"


def check_same_settings(out_dir: Path, cfg: NucflowConfig) -> None:
    """Refuse to add outputs to a folder whose finished images were made with other settings: its
    config.json would no longer describe them (--overwrite redoes them all)."""
    saved = out_dir / "config.json"
    if not saved.is_file():
        return
    try:
        old = json.loads(saved.read_text())
    except ValueError:
        raise InputError(saved, "is not valid JSON; remove it or use --overwrite") from None
    difference = first_difference(old, json.loads(json.dumps(cfg.to_dict())))
    if difference:
        raise InputError(out_dir, f"holds outputs made with other settings ({difference}); use --overwrite to redo them, or another folder")


def predict_folder(
    images: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: NucflowConfig,
    overwrite: bool = False,
    jobs: int = 1,
    scheduler: str | None = None,
    truth_dir: str | os.PathLike | None = None,
) -> int:
    """Segment `images` (a folder, one image file or a glob pattern) with `cfg.method` into `out_dir`;
    returns the exit status (0 all fine, 1 some image failed). Finished images are skipped unless `overwrite`.
    """
    started = time.monotonic()
    images, out_dir = gather_images(images), Path(out_dir)
    if truth_dir is not None and not Path(truth_dir).is_dir():
        raise InputError(truth_dir, "--truth: not a folder of ground-truth label images")  # before any work
    check_writable(out_dir)
    if remove_partial_files(out_dir):
        log.info("removed half-written files of an interrupted run in %s", out_dir)
    todo = [p for p in images if overwrite or not label_path(out_dir, p.stem).is_file()]
    if len(todo) < len(images):
        check_same_settings(out_dir, cfg)
    cfg.save(out_dir)
    summary = RunSummary()
    summary.skipped = [p.stem for p in images if p not in todo]
    if todo:
        cached_segmenter(cfg)  # a missing model fails here, once, before any image (and serves a one-process run)
    task = functools.partial(segment_image, out_dir=out_dir, cfg=cfg, threads=threads_per_worker(jobs, scheduler))
    for result in tqdm(run_tasks(task, todo, jobs, scheduler), total=len(todo), desc=f"segmenting ({cfg.method})", unit="img"):
        _record(result, summary)
    summary.seconds = time.monotonic() - started
    write_run_outputs(out_dir, images, cfg, summary.line(), truth_dir)
    log.info("%s; outputs in %s", summary.line(), out_dir)
    return 1 if summary.failed else 0


def _record(result: ImageResult, summary: RunSummary) -> None:
    for warning in result.warnings:
        log.warning("%s", warning)
    if result.error is not None:
        log.error("%s", result.error)
        summary.failed.append(result.stem)
        return
    if result.nuclei == 0:
        log.warning("%s: no nucleus found; wrote an empty label image", result.file or result.stem)
    summary.done.append(result.stem)
    summary.nuclei += result.nuclei
