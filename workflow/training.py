"""Training commands: load annotated data, size-normalise it, hand it to a stage's trainer."""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

from torch import nn

from presegment.config import Architecture
from presegment.model import build_model
from presegment.narrow import NARROWABLE, narrow_on_images, narrowing_problem
from presegment.storage import load_model, update_card
from presegment.train import train as train_presegment_model
from unet_ensemble.model import build_unet, transfer_weights
from unet_ensemble.storage import load_member
from unet_ensemble.train import train_member
from workflow.config import NucflowConfig
from workflow.core.files import InputError, write_json
from workflow.core.images import resize_image, scaled_shape
from workflow.core.metrics import mean_scores
from workflow.core.modelfiles import CARD, read_card
from workflow.core.optim import CHECKPOINT
from workflow.core.precision import precision_dtype
from workflow.core.runtime import device_name, resolve_device
from workflow.evaluate import score_segmenter
from workflow.predict import fast_segmenter
from workflow.training_data import load_annotated, read_split, read_types

log = logging.getLogger(__name__)

CALIBRATION_IMAGES = 30  # training images whose activations decide what a narrowed presegmenter keeps


def training_size(cfg: NucflowConfig, start_from: str | os.PathLike | None, option: str) -> float:
    """The nucleus size to train at: a model fine-tuned from `start_from` keeps its own (from its
    card; ensembles and the full path need one size) unless `size.fine_tune_at_target` asks to move
    it; a new one gets `size.target_diameter`."""
    if not start_from:
        return cfg.size.target_diameter
    if not (Path(start_from) / CARD).is_file():
        raise InputError(start_from, f"{option}: not a nucflow model folder")
    size = float(read_card(start_from)["target_diameter"])
    if cfg.size.fine_tune_at_target:
        log.info("fine-tuning a %g px model at size.target_diameter %g px", size, cfg.size.target_diameter)
        return cfg.size.target_diameter
    if size != cfg.size.target_diameter:
        log.info("fine-tuning at the starting model's nucleus size, %g px (not size.target_diameter %g)", size, cfg.size.target_diameter)
    return size


def start_architecture(cfg: NucflowConfig, start_from: str | os.PathLike) -> NucflowConfig:
    """`cfg` with the architecture the run trains and saves: the starting model's (from its card), or a narrowing of
    it (fewer FPN or mask-head channels) the settings ask for; any other architecture is refused, not ignored."""
    source = Architecture.from_dict(read_card(start_from)["architecture"])
    asked = cfg.presegment.architecture
    if asked in (source, Architecture()):
        return replace(cfg, presegment=replace(cfg.presegment, architecture=source))
    problem = narrowing_problem(source, asked)
    if problem:
        raise InputError(start_from, f"--start-from: the settings ask for another architecture than the model's ({problem})")
    return cfg


def narrowed_start(model: nn.Module, source: Architecture, cfg: NucflowConfig, train_pairs: list, resuming: bool = False) -> tuple[nn.Module, dict]:
    """The starting model narrowed to the run's architecture, calibrated on evenly spaced training images at the scale
    the network sees them in prediction (`presegment.detect.zoom`); and its card entry. `resuming`: a network of the
    run's architecture only, since the run's checkpoint replaces its weights (narrowing takes minutes)."""
    target, zoom = cfg.presegment.architecture, cfg.presegment.detect.zoom
    calibration = [resize_image(image, scaled_shape(image.shape, zoom)) for image, _ in train_pairs[:: max(1, len(train_pairs) // CALIBRATION_IMAGES)]]
    entry = {"from": {k: getattr(source, k) for k in NARROWABLE}, "calibration_images": len(calibration), "calibration_zoom": zoom}
    if resuming:
        return build_model(target), entry
    log.info(
        "narrowing the starting model (FPN %d -> %d channels, mask head %d -> %d), calibrated on %d training images",
        source.fpn_channels,
        target.fpn_channels,
        source.mask_head_width,
        target.mask_head_width,
        len(calibration),
    )
    try:
        narrowed = narrow_on_images(model, source, target, calibration, cfg.presegment.detect)
    except ValueError as error:
        raise InputError(cfg.presegment.start_from, f"--start-from: cannot narrow this model: {error}") from None
    return narrowed, entry


def training_data_card(data_dir: Path, n_train: int, n_val: int, groups: list[str] | None) -> dict:
    """The model card's description of its training data, with the image count per type when types are known."""
    card = {"folder": data_dir.name, "train_images": n_train, "val_images": n_val}
    if groups is not None:
        card["train_types"] = dict(sorted(Counter(groups).items()))
    return card


def require_train_and_val(data_dir: Path) -> None:
    """A one-line error unless `data_dir/split.csv` names both train and val images."""
    if not {"train", "val"} <= set(read_split(data_dir).values()):
        raise InputError(data_dir, "needs a split.csv with 'train' and 'val' rows (image_id,subset)")


def initial_model_summary(card: dict) -> dict:
    """What a fine-tuned model's card keeps of its starting model's card (that folder may later be replaced)."""
    return {key: card[key] for key in ("target_diameter", "training", "validation", "initialised_from") if key in card}


RUN_ORIGIN = "origin.json"


def check_run_origin(out_dir: Path, start_from: str | os.PathLike | None, target: float, resume: bool) -> None:
    """Record in the run folder what the run starts from and its nucleus size, and refuse to resume a
    checkpoint under other ones (the model card would name the wrong start and the run would change size)."""
    origin = {"start_from": str(Path(start_from).resolve()) if start_from else None, "target_diameter": float(target)}
    path = out_dir / RUN_ORIGIN
    if resume and path.is_file() and any(out_dir.rglob(CHECKPOINT)):
        recorded = json.loads(path.read_text())
        if recorded != origin:
            raise InputError(
                path,
                f"this run started from {_describe(recorded)}, this call asks for {_describe(origin)}; "
                "resume with the same start and size, or train into a new folder",
            )
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(path, origin)


def _describe(origin: dict) -> str:
    return f"{origin['start_from'] or 'random weights'} at {origin['target_diameter']:g} px nuclei"


def input_card(cfg: NucflowConfig) -> dict:
    """The input settings a model is trained with, for its card: prediction warns when a run's differ."""
    return {"format": "RGB uint8 (gray repeated, alpha dropped)", **asdict(cfg.input)}


def train_presegmenter(data_dir: str | os.PathLike, out_dir: str | os.PathLike, cfg: NucflowConfig, resume: bool = True) -> dict:
    """Train a Mask R-CNN presegmenter on `data_dir` (images/, masks/, split.csv with train and val),
    from random weights or from the model folder `cfg.presegment.start_from`.

    Writes `out_dir/config.json`, `out_dir/checkpoint.pt` and the best model in `out_dir/model/`.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    start_from = cfg.presegment.start_from
    if not start_from and not cfg.presegment.train.iterations:
        raise InputError(None, "presegment.train.iterations 0 keeps a starting model as it is: give --start-from MODEL")
    if not start_from and cfg.presegment.train.distill:
        raise InputError(None, "presegment.train.distill learns from the starting model's outputs: give --start-from MODEL")
    target = training_size(cfg, start_from, "--start-from")
    if start_from:
        cfg = start_architecture(cfg, start_from)
    require_train_and_val(data_dir)
    check_run_origin(out_dir, start_from, target, resume)  # before the slow data loading
    train_pairs, stems = load_annotated(data_dir, "train", target, cfg.input)
    val_pairs, _ = load_annotated(data_dir, "val", target, cfg.input)
    groups = read_types(data_dir, stems)
    cfg.save(out_dir)
    card = {
        "target_diameter": target,
        "input": input_card(cfg),
        "training_data": training_data_card(data_dir, len(train_pairs), len(val_pairs), groups),
    }
    initial = teacher = None
    card["initialised_from"] = str(start_from) if start_from else "random"
    if start_from:
        initial, source_card = load_model(start_from)
        card["initial_model"] = initial_model_summary(source_card)
        if cfg.presegment.train.distill:  # the starting model as loaded, before it is narrowed or trained
            teacher, card["distilled_from"] = copy.deepcopy(initial), str(start_from)
        source = Architecture.from_dict(source_card["architecture"])
        if source != cfg.presegment.architecture:
            resuming = resume and (out_dir / CHECKPOINT).is_file()
            initial, card["narrowed"] = narrowed_start(initial, source, cfg, train_pairs, resuming)
        initial.train()
    device = resolve_device(cfg.device)
    log.info("training presegmenter %s on %d images (val %d) on %s", cfg.presegment.architecture.backbone, len(train_pairs), len(val_pairs), device)
    best = train_presegment_model(
        train_pairs,
        val_pairs,
        cfg.presegment.architecture,
        cfg.presegment.train,
        out_dir,
        card,
        device,
        resume,
        initial,
        groups,
        cfg.presegment.detect,
        teacher,
        precision_dtype(cfg.precision, device),
    )
    fast_path = validate_fast_path(out_dir / "model", data_dir, cfg)
    update_card(out_dir / "model", validation_fast_path=fast_path)
    log.info("fast path on all %d val images: DSB %.4f, AP@0.5 %.4f", fast_path["images"], fast_path["dsb"], fast_path["ap50"])
    return best


def validate_fast_path(model_folder: Path, data_dir: Path, cfg: NucflowConfig) -> dict:
    """Scores of the whole fast path (size estimate included) on the val images at their own scale."""
    pairs, _ = load_annotated(data_dir, "val", None, cfg.input)
    scores, seconds = score_segmenter(fast_segmenter(replace(cfg, presegment=replace(cfg.presegment, model=str(model_folder)))), pairs)
    return {
        "images": len(scores),
        "size": "estimated by the model (probe pass)",
        **mean_scores(scores),
        "seconds_per_image": round(seconds, 2),
        "hardware": device_name(resolve_device(cfg.device)),
    }


def _starting_member(cfg: NucflowConfig, out_dir: Path, index: int) -> tuple[Path | None, str]:
    """The member folder whose weights member `index` starts from, and its name for the model
    card: `unet.start_from` for the first, the previous member with `unet.warm_start`, else
    none (random initialisation).
    """
    if index == 0 and cfg.unet.start_from:  # checked by `training_size`
        return Path(cfg.unet.start_from), str(cfg.unet.start_from)
    if cfg.unet.warm_start and index > 0:
        return out_dir / f"member-{index - 1}" / "model", f"member-{index - 1}"
    return None, "random"


def train_unet_ensemble(data_dir: str | os.PathLike, out_dir: str | os.PathLike, cfg: NucflowConfig, resume: bool = True) -> list[dict]:
    """Train one U-Net per (sigma, seed) of `cfg.unet` on `data_dir`; the best members are
    collected in `out_dir/ensemble/`, ready for `predict --full --ensemble`.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if len(cfg.unet.sigmas) != len(cfg.unet.seeds):
        raise InputError(None, f"unet.sigmas ({len(cfg.unet.sigmas)}) and unet.seeds ({len(cfg.unet.seeds)}) must pair up")
    target = training_size(cfg, cfg.unet.start_from, "unet.start_from")
    require_train_and_val(data_dir)
    check_run_origin(out_dir, cfg.unet.start_from, target, resume)  # before the slow data loading
    train_pairs, stems = load_annotated(data_dir, "train", target, cfg.input)
    val_pairs, _ = load_annotated(data_dir, "val", target, cfg.input)
    groups = read_types(data_dir, stems)
    cfg.save(out_dir)
    card = {"target_diameter": target, "input": input_card(cfg), "training_data": training_data_card(data_dir, len(train_pairs), len(val_pairs), groups)}
    device, results = resolve_device(cfg.device), []
    dtype = precision_dtype(cfg.precision, device)
    for index, (sigma, seed) in enumerate(zip(cfg.unet.sigmas, cfg.unet.seeds)):
        member_dir = out_dir / f"member-{index}"
        log.info("training U-Net member %d/%d (target sigma %.1f, seed %d) on %s", index + 1, len(cfg.unet.seeds), sigma, seed, device)
        source, origin = _starting_member(cfg, out_dir, index)
        start, member_card = None, {**card, "initialised_from": origin}
        if source is not None:
            source_model, source_card = load_member(source, device)
            start = transfer_weights(source_model, build_unet(cfg.unet.architecture)).to(device).train()
            log.info("member %d starts from the weights of %s", index + 1, source)
            member_card["initial_model"] = initial_model_summary(source_card)
        results.append(
            train_member(
                train_pairs,
                val_pairs,
                cfg.unet.architecture,
                cfg.unet.train,
                sigma,
                seed,
                member_dir,
                member_card,
                device,
                resume,
                start,
                groups,
                dtype=dtype,
            )
        )
        ensemble_member = out_dir / "ensemble" / f"member-{index}"
        if ensemble_member.exists():
            shutil.rmtree(ensemble_member)
        shutil.copytree(member_dir / "model", ensemble_member)
    return results
