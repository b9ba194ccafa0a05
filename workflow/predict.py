"""Segmenters: one image in, labels out, by the classic, fast or full method; models load once per segmenter."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from workflow.config import NucflowConfig
from workflow.files import InputError

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """One image's labels, plus named intermediate maps of the same size when they were asked for."""

    labels: np.ndarray
    intermediate: dict[str, np.ndarray] = field(default_factory=dict)


Segmenter = Callable[[np.ndarray], Prediction]  # (H, W, 3) uint8 -> labels of the same size


def classic_segmenter(cfg: NucflowConfig) -> Segmenter:
    """Otsu + watershed baseline on the size-normalised image."""
    from presegment.classic import segment

    def run(rgb8: np.ndarray) -> Prediction:
        return Prediction(segment(rgb8, cfg.classic, cfg.size.target_diameter, cfg.size.diameter, cfg.size.min_scale, cfg.size.max_scale))

    return run


@contextlib.contextmanager
def model_errors() -> Iterator[None]:
    """Turn a missing or mismatched model, parameter file or backend into a one-line user error."""
    try:
        yield
    except (FileNotFoundError, ImportError, ValueError) as error:
        raise InputError(None, str(error)) from None


def fast_segmenter(cfg: NucflowConfig) -> Segmenter:
    """Mask R-CNN presegmentation at the model's nucleus scale; the model is loaded once."""
    from presegment.backends import load_presegmenter
    from presegment.pipeline import presegment

    with model_errors():
        model, card = load_presegmenter(cfg.presegment.backend, cfg.presegment.model, cfg.device)
    target = float(card["target_diameter"])

    def run(rgb8: np.ndarray) -> Prediction:
        result = presegment(model, rgb8, target, cfg.presegment.detect, cfg.size.diameter, cfg.presegment.probe_scale, (cfg.size.min_scale, cfg.size.max_scale))
        if result.size_source == "unknown":
            log.warning("no nucleus found at the probe scale; segmented the image unscaled")
        return Prediction(result.labels)

    return run


def load_full_models(cfg: NucflowConfig):
    """Presegmenter and U-Net ensemble for the full path, or a one-line error naming what is missing."""
    from presegment.backends import load_presegmenter
    from unet_ensemble.storage import load_ensemble
    from workflow.full import Models
    from workflow.modelfiles import device_of

    with model_errors():
        model, card = load_presegmenter(cfg.presegment.backend, cfg.presegment.model, cfg.device)
        members = load_ensemble(cfg.unet.model, device_of(model))
    return Models(model, float(card["target_diameter"]), members)


def full_segmenter(cfg: NucflowConfig) -> Segmenter:
    """Presegment, U-Net ensemble, multi-scale Mask R-CNN and the tuned refinement; with
    `output.keep_intermediate` also the ensemble map and each scale's Mask R-CNN labels.
    """
    from postprocess.params import load_params
    from workflow.full import intermediate_maps, network_outputs, refined_labels

    models = load_full_models(cfg)
    with model_errors():
        params = load_params(cfg.full.params)

    def run(rgb8: np.ndarray) -> Prediction:
        outputs = network_outputs(models, rgb8, cfg, cfg.size.diameter)
        shape = rgb8.shape[:2]
        kept = intermediate_maps(outputs, cfg.full.mrcnn_scales, shape) if cfg.output.keep_intermediate else {}
        return Prediction(refined_labels(outputs, params, shape), kept)

    return run


def build_segmenter(method: str, cfg: NucflowConfig) -> Segmenter:
    """The segmenter of `method` with the models and settings of `cfg` (models: `presegment.model`, `unet.model`)."""
    if method == "classic":
        return classic_segmenter(cfg)
    if method == "fast":
        return fast_segmenter(cfg)
    if method == "full":
        return full_segmenter(cfg)
    raise InputError(None, f"unknown prediction method {method!r}; use classic, fast or full")
