"""`nucflow param-search`: tune the post-processing on a validation set of images + masks."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from tqdm import tqdm

from postprocess.params import load_params, params_document
from postprocess.refine import RefineParams
from postprocess.search import Case, best_params, load_cases, plot_progress, save_cases, search
from workflow.batch import check_writable
from workflow.config import NucflowConfig
from workflow.core.files import InputError, list_images, write_json
from workflow.core.images import read_input, to_rgb8
from workflow.core.labels import read_labels
from workflow.full import network_outputs
from workflow.predict import load_models, model_errors, polarity_chooser, size_estimator
from workflow.training_data import find_mask

log = logging.getLogger(__name__)


def build_cases(images_dir: Path, masks_dir: Path, cfg: NucflowConfig) -> list[Case]:
    """Network outputs of every validation image (common resolution), computed once, with its ground truth at its own size."""
    models = load_models(cfg)
    estimate, orient = size_estimator(models, cfg), polarity_chooser(models, cfg)
    cases = []
    for path in tqdm(list_images(images_dir), desc="network outputs", unit="img"):
        rgb8 = to_rgb8(read_input(path, cfg.input), cfg.input)
        mask_path = find_mask(masks_dir, path.stem)
        truth = read_labels(mask_path)
        if truth.shape != rgb8.shape[:2]:
            raise InputError(mask_path, f"mask size {truth.shape} does not match image size {rgb8.shape[:2]}")
        rgb8 = orient(rgb8)[0] if orient else rgb8
        outputs = network_outputs(models, rgb8, cfg, cfg.size.diameter if cfg.size.diameter is not None else estimate(rgb8))
        cases.append(Case(outputs.scales, outputs.probability, outputs.diameter, outputs.target_diameter, truth, outputs.centerness))
    return cases


def param_search(
    images_dir: str | os.PathLike,
    masks_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: NucflowConfig,
    trials: int,
    minutes: float | None,
    jobs: int,
    storage: str | None,
) -> int:
    """Cache network outputs (`cache.pkl`, reused on rerun), search, write `best_params.json` and `search.png`."""
    if not Path(masks_dir).is_dir():
        raise InputError(masks_dir, "not a folder of label images (the validation masks)")  # before the networks load
    list_images(images_dir)  # a missing or empty images folder, likewise
    out_dir = Path(out_dir)
    check_writable(out_dir)
    cfg.save(out_dir)
    with model_errors():
        in_use = load_params(cfg.full.params)  # tried first, with the reference defaults
    cache = out_dir / "cache.pkl"
    if cache.is_file():
        log.info("reusing cached network outputs in %s", cache)
    else:
        save_cases(cache, build_cases(Path(images_dir), Path(masks_dir), cfg))
    storage = storage or f"sqlite:///{(out_dir / 'study.db').resolve()}"
    study = search(
        cache,
        storage,
        trials=trials,
        timeout_minutes=minutes,
        jobs=jobs,
        seed=cfg.search.seed,
        contour_sigma=cfg.size.contour_sigma,
        starts=(RefineParams(), in_use),
    )
    params, summary = best_params(study)
    write_json(
        out_dir / "best_params.json", params_document(params, {**summary, "images": len(load_cases(cache)), "storage": storage, "seed": cfg.search.seed})
    )
    plot_progress(study, out_dir / "search.png")
    log.info("best mean DSB %.4f after %d trials; wrote %s", summary["mean_dsb"], summary["trials"], out_dir / "best_params.json")
    return 0
