"""Segmenters: one image in, labels out, by the classic, fast or full method; models load once per segmenter."""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

import numpy as np

from workflow.config import NucflowConfig, SizeConfig
from workflow.core.files import InputError
from workflow.core.images import InputConfig, size_scale
from workflow.core.modelfiles import for_inference
from workflow.core.tiling import TilingConfig, needs_tiles, segment_in_tiles

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """One image's labels, plus named intermediate maps of the same size when they were asked for."""

    labels: np.ndarray
    intermediate: dict[str, np.ndarray] = field(default_factory=dict)
    diameter: float | None = None  # the median nucleus diameter used (px); None: no nucleus found, segmented unscaled
    inverted: bool = False  # the networks saw the image gray and inverted (input.polarity "choose" decided so)


@dataclass
class Segmenter:
    """A method with its models loaded. Calling it on an (H, W, 3) uint8 image gives labels of the
    same size: the nucleus size is estimated once (or given), then the image is segmented whole,
    or in tiles when it is too large after rescaling.
    """

    target_diameter: float
    estimate: Callable[[np.ndarray], float | None]  # median nucleus diameter in the image's pixels
    segment: Callable[[np.ndarray, float | None], Prediction]  # labels for a known diameter (None: unscaled)
    size: SizeConfig
    tiling: TilingConfig
    orient: Callable[[np.ndarray], tuple[np.ndarray, bool]] | None = None  # the image as the networks see it, and whether inverted

    def __call__(self, rgb8: np.ndarray, diameter: float | None = None) -> Prediction:
        """Labels of `rgb8`; `diameter` (px) overrides `size.diameter`, and without either the size is estimated."""
        rgb8, inverted = self.orient(rgb8) if self.orient else (rgb8, False)
        diameter = diameter if diameter is not None else self.size.diameter
        diameter = diameter if diameter is not None else self.estimate(rgb8)
        scale = size_scale(diameter, self.target_diameter, self.size.min_scale, self.size.max_scale)
        tile, overlap = self.tiling.original_pixels(scale)
        if not needs_tiles(rgb8.shape, tile):
            return replace(self.segment(rgb8, diameter), diameter=diameter, inverted=inverted)
        log.info("large image (%d x %d px, x%.2f): segmenting it in tiles of %d px", rgb8.shape[0], rgb8.shape[1], scale, tile)

        def segment_tile(window: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
            prediction = self.segment(window, diameter)
            return prediction.labels, prediction.intermediate

        return Prediction(*segment_in_tiles(segment_tile, rgb8, tile, overlap), diameter=diameter, inverted=inverted)


def classic_segmenter(cfg: NucflowConfig) -> Segmenter:
    """Otsu + watershed baseline on the size-normalised image."""
    if cfg.input.polarity == "choose":
        log.info(
            "classic: images of dark nuclei are segmented as they are (--polarity choose asks the presegmenter, which classic does not run; auto inverts them)"
        )
    from presegment.classic import estimate_diameter, segment

    def run(rgb8: np.ndarray, diameter: float | None) -> Prediction:
        return Prediction(segment(rgb8, cfg.classic, cfg.size.target_diameter, diameter, cfg.size.min_scale, cfg.size.max_scale))

    return Segmenter(cfg.size.target_diameter, lambda rgb8: estimate_diameter(rgb8, cfg.classic), run, cfg.size, cfg.tiling)


@contextlib.contextmanager
def model_errors() -> Iterator[None]:
    """Turn a missing or mismatched model, parameter file or backend into a one-line user error."""
    try:
        yield
    except (FileNotFoundError, ImportError, ValueError) as error:
        raise InputError(None, str(error)) from None


def size_estimator(models, cfg: NucflowConfig) -> Callable[[np.ndarray], float | None]:
    """The presegmenter's estimate of an image's median nucleus diameter (px), as the size probe settings say."""
    from presegment.pipeline import estimate_diameter

    return lambda rgb8: estimate_diameter(models.presegmenter, rgb8, cfg.presegment.detect, models.target_diameter, cfg.presegment.probe)


def polarity_chooser(models, cfg: NucflowConfig) -> Callable[[np.ndarray], tuple[np.ndarray, bool]] | None:
    """With `input.polarity` "choose": the presegmenter's choice between an image of dark nuclei and its gray inversion."""
    if cfg.input.polarity != "choose":
        return None
    from presegment.pipeline import choose_polarity

    return lambda rgb8: choose_polarity(models.presegmenter, rgb8, cfg.presegment.detect, cfg.presegment.probe)


def fast_segmenter(cfg: NucflowConfig) -> Segmenter:
    """Mask R-CNN presegmentation at the model's nucleus scale; the model is loaded once."""
    from presegment.pipeline import presegment

    models = load_models(cfg, ensemble=False)
    model, target, detect = models.presegmenter, models.target_diameter, cfg.presegment.detect

    def run(rgb8: np.ndarray, diameter: float | None) -> Prediction:
        scale_limits = (cfg.size.min_scale, cfg.size.max_scale)
        return Prediction(
            presegment(model, rgb8, target, detect, diameter, scale_limits=scale_limits, contour_sigma=cfg.size.contour_sigma, views=cfg.views.fast).labels
        )

    return Segmenter(target, size_estimator(models, cfg), run, cfg.size, cfg.tiling, polarity_chooser(models, cfg))


def use_models_folder(cfg: NucflowConfig, folder: str | os.PathLike) -> None:
    """Point `cfg` at the models of a `nucflow train` models folder (RUN/models: presegment/, unet/, params.json);
    the shipped model stands in for each one the folder lacks."""
    from workflow.core.modelfiles import trained_models

    cfg.presegment.model, cfg.unet.model, cfg.full.params = trained_models(folder)


INPUT_FLAGS = {
    "normalize": "--no-normalize",
    "stretch_percentiles": "--percentiles",
    "per_channel": "--per-channel",
    "stretch_8bit": "--stretch-8bit",
    "polarity": "--polarity",
}


def input_differences(trained: dict, norm: InputConfig) -> list[str]:
    """How this run's input settings differ from those a model's card says it was trained with (the settings
    it records; older cards record few), one phrase each naming the flag that matches them. Predicting with
    `--polarity auto` or `choose` a model trained on images as they are is what those settings are for, and
    `choose` offers the inverted view a model learned with `auto`, so polarity counts only when a model learned
    inverted images and this run does not show them."""
    phrases = []
    for key, flag in INPUT_FLAGS.items():
        if key not in trained:
            continue
        learned, used = trained[key], getattr(norm, key)
        if key == "stretch_percentiles":
            learned, used = [float(v) for v in learned], [float(v) for v in used]
        if key == "polarity" and (learned not in ("auto", "invert") or (learned, used) == ("auto", "choose")):
            continue
        if learned != used:
            phrases.append(f"input.{key}={learned}, this run uses {used}: results may suffer (set {flag} to match)")
    return phrases


def load_models(cfg: NucflowConfig, ensemble: bool = True):
    """The networks `cfg` names (presegment.model, and with `ensemble` unet.model; None: the shipped ones),
    loaded once for inference, or a one-line error naming what is missing."""
    import torch

    from presegment.backends import load_presegmenter, reduced_precision_parts
    from unet_ensemble.storage import load_ensemble
    from workflow.core.modelfiles import device_of
    from workflow.core.precision import dtype_name, precision_dtype, reduce_precision
    from workflow.full import Models

    with model_errors():
        model, card = load_presegmenter(cfg.presegment.backend, cfg.presegment.model, cfg.device)
        members = load_ensemble(cfg.unet.model, device_of(model)) if ensemble else []
    for name, model_card in [("presegmenter", card), *((f"U-Net member {i}", c) for i, (_, c) in enumerate(members))]:
        for difference in input_differences(model_card.get("input", {}), cfg.input):
            log.warning("the %s was trained with %s", name, difference)
    dtype = precision_dtype(cfg.precision, device_of(model))
    if cfg.precision == "auto" and dtype != torch.float32:
        log.info("the networks compute in %s on this processor (precision=auto; set precision=float32 to turn it off)", dtype_name(dtype))
    members = [(reduce_precision(for_inference(member, cfg.channels_last), ("",), dtype), member_card) for member, member_card in members]
    sizes = {float(member_card["target_diameter"]) for _, member_card in members if "target_diameter" in member_card}
    if len(sizes) > 1:
        raise InputError(cfg.unet.model, f"the ensemble's members were trained at different nucleus sizes {sorted(sizes)}; use members of one size")
    presegmenter = reduce_precision(for_inference(model, cfg.channels_last), reduced_precision_parts(cfg.presegment.backend), dtype)
    return Models(presegmenter, float(card["target_diameter"]), members, sizes.pop() if sizes else None)


def full_segmenter(cfg: NucflowConfig) -> Segmenter:
    """Presegment, U-Net ensemble, multi-scale Mask R-CNN and the tuned refinement; with
    `output.keep_intermediate` also the ensemble map and each scale's Mask R-CNN labels.
    """
    from postprocess.params import load_params
    from workflow.full import intermediate_maps, network_outputs, refined_labels

    models = load_models(cfg)
    with model_errors():
        params = load_params(cfg.full.params)

    def run(rgb8: np.ndarray, diameter: float | None) -> Prediction:
        outputs = network_outputs(models, rgb8, cfg, diameter, params)
        shape = rgb8.shape[:2]
        kept = intermediate_maps(outputs, cfg.full.mrcnn_scales, shape) if cfg.output.keep_intermediate else {}
        return Prediction(refined_labels(outputs, params, shape, cfg.size.contour_sigma), kept)

    return Segmenter(models.target_diameter, size_estimator(models, cfg), run, cfg.size, cfg.tiling, polarity_chooser(models, cfg))


def build_segmenter(method: str, cfg: NucflowConfig) -> Segmenter:
    """The segmenter of `method` with the models and settings of `cfg` (models: `presegment.model`, `unet.model`)."""
    if method == "classic":
        return classic_segmenter(cfg)
    if method == "fast":
        return fast_segmenter(cfg)
    if method == "full":
        return full_segmenter(cfg)
    raise InputError(None, f"unknown prediction method {method!r}; use classic, fast or full")
