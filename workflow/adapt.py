"""`nucflow train`: adapt nucflow to the user's images, with or without their masks.

Stages, each resumable and each writing into the run folder (RUN/):
  presegment  label the images with the current presegmenter (skipped when masks are given)
  cluster     group the images by style (one group with --single-experiment)
  recolour    the replay sample (annotated crops of the models' own training data) redrawn in each
              group's colours, measured on its images and their presegmentation (style_transfer.colour)
  masks       synthetic label masks per group, from the group's real nucleus shapes       } pix2pix: on a
  pix2pix     one mask -> image generator per group, learned from its exemplar images     } GPU by default
  synthesize  one synthetic image per synthetic mask: annotated pairs in the group's style } (adapt.pix2pix)
  unet        fine-tune the U-Net ensemble on the recoloured, synthetic and replay pairs (and the user's masks)
  presegmenter  fine-tune the Mask R-CNN on the same pairs
The fine-tuning stages share the time left of `adapt.minutes`. The models land in RUN/models/ for
`nucflow predict --models RUN/models`. Under `--polarity choose` (the default) the stages after labelling see images
of dark nuclei gray-inverted (`adaptation_input`): prediction's choice then offers the models the view they learned.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from postprocess.params import DEFAULT_PARAMS
from presegment.config import Architecture
from presegment.storage import DEFAULT_MODEL, load_model
from presegment.train import train as train_presegment_model
from style_transfer.colour import recolour, style_of
from style_transfer.pix2pix import load_generator, save_generator, synthesize, train_pix2pix
from style_transfer.synthetic_masks import collect_shapes, synthesize_mask
from unet_ensemble.config import UNetArchitecture
from unet_ensemble.model import build_unet
from unet_ensemble.storage import DEFAULT_ENSEMBLE, load_ensemble
from unet_ensemble.train import train_member
from workflow.batch import predict_folder
from workflow.cluster_folder import cluster_folder
from workflow.config import TRAIN_STAGES, NucflowConfig
from workflow.core.files import InputError, csv_text, list_images, write_json, write_text
from workflow.core.images import InputConfig, adaptation_input, read_input, to_rgb8
from workflow.core.labels import read_labels, write_labels
from workflow.core.measure import write_png
from workflow.core.precision import precision_dtype
from workflow.core.runtime import resolve_device
from workflow.replay import SHIPPED_REPLAY, load_replay
from workflow.training import check_run_origin, initial_model_summary, input_card, training_size
from workflow.training_data import Pair, find_mask, load_pair, normalise_pair

log = logging.getLogger(__name__)


@dataclass
class RunLayout:
    """Where each stage of a training run writes."""

    root: Path

    @property
    def presegmentation(self) -> Path:
        return self.root / "presegment"

    @property
    def clusters(self) -> Path:
        return self.root / "clusters" / "clusters.csv"

    def synthetic(self, cluster: int) -> Path:
        return self.root / "synthetic" / f"cluster-{cluster}"

    def generator(self, cluster: int) -> Path:
        return self.root / "pix2pix" / f"cluster-{cluster}"

    def recoloured(self, cluster: int) -> Path:
        return self.root / "recoloured" / f"cluster-{cluster}"

    @property
    def budget(self) -> Path:
        return self.root / "budget.json"

    @property
    def models(self) -> Path:
        return self.root / "models"


def train_on_images(
    images_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: NucflowConfig,
) -> int:
    """Run `nucflow train` on a folder of images as `cfg.adapt` says (stages, masks, validation folder,
    single experiment); returns the exit status. The settings are saved as `out_dir/config.json`."""
    started = time.monotonic()
    stages, masks_dir, val_dir, single_experiment = cfg.adapt.stages, cfg.adapt.masks, cfg.adapt.val, cfg.adapt.single_experiment
    unknown = sorted(set(stages) - set(TRAIN_STAGES))
    if unknown:
        raise InputError(None, f"unknown stage {unknown[0]!r}; stages are {', '.join(TRAIN_STAGES)}")
    if not use_pix2pix(cfg):
        skipped = [s for s in ("masks", "pix2pix", "synthesize") if s in stages]
        if skipped:
            log.info("stages %s skipped: pix2pix runs on a GPU by default (hours on a CPU; --set adapt.pix2pix=true to run it)", ", ".join(skipped))
        stages = tuple(s for s in stages if s not in skipped)
    images = list_images(images_dir)
    run = RunLayout(Path(out_dir))
    run.root.mkdir(parents=True, exist_ok=True)
    cfg.save(run.root)
    target = target_diameter(cfg)
    labels_dir = Path(masks_dir) if masks_dir else run.presegmentation / "labels"
    if "presegment" in stages and masks_dir is None:
        log.info("stage presegment: labelling %d images with the presegmenter", len(images))
        predict_folder(images_dir, run.presegmentation, replace(cfg, method="fast", output=replace(cfg.output, report=False)))
    cfg = replace(cfg, input=adaptation_input(cfg.input))  # every stage after labelling sees the images as the models will learn them
    replay = load_replay(cfg.adapt.replay or SHIPPED_REPLAY, target, cfg.input) if {"recolour", "unet", "presegmenter"} & set(stages) else []
    if "cluster" in stages:
        group_images(images_dir, run, cfg, single_experiment)
    groups = read_groups(run, images)
    by_stem = {p.stem: p for p in images}
    if "recolour" in stages:
        for cluster, group in sorted(groups.items()):
            recolour_replay(replay, [by_stem[s] for s in group.stems if s in by_stem], labels_dir, run.recoloured(cluster), cfg, cluster)
    for cluster, group in sorted(groups.items()) if {"masks", "pix2pix"} & set(stages) else ():
        pairs = real_pairs([by_stem[s] for s in group.stems if s in by_stem], labels_dir, cfg, target)
        if "masks" in stages:
            count = cfg.adapt.single_experiment_masks if single_experiment else cfg.adapt.masks_per_cluster
            make_masks(list(pairs.values()), run.synthetic(cluster), count, cfg, cluster)
        if "pix2pix" in stages:
            learn_style([pairs[s] for s in group.exemplars if s in pairs], run.generator(cluster), cfg)
    if "synthesize" in stages:
        for cluster in sorted(groups):
            draw_images(run.generator(cluster), run.synthetic(cluster), cfg)
    tuning = [s for s in ("unet", "presegmenter") if s in stages]
    if tuning:
        synthetic = [pair for c in sorted(groups) for pair in folder_pairs(run.synthetic(c), cfg.input)]
        recoloured = [pair for c in sorted(groups) for pair in folder_pairs(run.recoloured(c), cfg.input)]
        annotated = list(real_pairs(images, labels_dir, cfg, target).values()) if masks_dir else []
        replayed = replay if cfg.adapt.replay_in_training else []
        log.info("training pairs: %d recoloured, %d synthetic, %d replayed, %d annotated", len(recoloured), len(synthetic), len(replayed), len(annotated))
        train_pairs, val_pairs = split_pairs(annotated + recoloured + synthetic, val_dir, cfg, target)
        train_pairs += replayed
        minutes = fine_tuning_minutes(run, cfg, time.monotonic() - started, tuning)
        if "unet" in stages:
            fine_tune_unets(train_pairs, val_pairs, run, cfg, target, minutes["unet"])
        if "presegmenter" in stages:
            fine_tune_presegmenter(train_pairs, val_pairs, run, cfg, target, minutes["presegmenter"])
    write_params(run, cfg)
    log.info("training run finished in %.0f min; models in %s (use: nucflow predict --models %s)", (time.monotonic() - started) / 60, run.models, run.models)
    return 0


def use_pix2pix(cfg: NucflowConfig) -> bool:
    """Whether the pix2pix stages run: as `adapt.pix2pix` says, or by default only on a GPU."""
    if cfg.adapt.pix2pix is not None:
        return cfg.adapt.pix2pix
    return resolve_device(cfg.device).type != "cpu"


def fine_tuning_minutes(run: RunLayout, cfg: NucflowConfig, spent: float, stages: list[str]) -> dict[str, float | None]:
    """Minutes for each fine-tuning stage ("unet": for the whole ensemble): what `adapt.minutes`
    leaves after the stages before (`spent` seconds), split by `adapt.presegmenter_share`. The
    split is saved in RUN/budget.json on the first call, so a resumed run keeps it (unless
    `adapt.minutes` changed)."""
    if cfg.adapt.minutes is None:
        return {"unet": None, "presegmenter": None}
    if run.budget.is_file():
        saved = json.loads(run.budget.read_text())
        if saved.get("run_minutes") == cfg.adapt.minutes:
            return saved
    left = max(cfg.adapt.minutes - spent / 60, 1.0)
    share = cfg.adapt.presegmenter_share if len(stages) == 2 else 1.0
    budget = {"unet": left * (1 - share) if "presegmenter" in stages else left, "presegmenter": left * share, "run_minutes": cfg.adapt.minutes}
    log.info("fine-tuning: %.0f of the %g minutes left (presegmenter %.0f, U-Nets %.0f)", left, cfg.adapt.minutes, budget["presegmenter"], budget["unet"])
    write_json(run.budget, budget)
    return budget


def within(limit: float | None, minutes: float | None) -> float | None:
    """The tighter of a configured time limit and a share of the run's budget."""
    return minutes if limit is None else limit if minutes is None else min(limit, minutes)


def target_diameter(cfg: NucflowConfig) -> float:
    """The nucleus size of the models being trained: the starting presegmenter's, or the configured one from scratch."""
    return training_size(cfg, None if cfg.adapt.from_scratch else cfg.presegment.model or DEFAULT_MODEL, "--model")


@dataclass
class Group:
    """One style group: its images' stems and the exemplars pix2pix learns the style from."""

    stems: list[str]
    exemplars: list[str]


def group_images(images_dir: str | os.PathLike, run: RunLayout, cfg: NucflowConfig, single_experiment: bool) -> None:
    """Write RUN/clusters/clusters.csv: k-means style groups, or one group of every image."""
    if run.clusters.is_file():
        log.info("stage cluster: done before (%s)", run.clusters)
        return
    if single_experiment:
        rows = [(p.stem, 0, "0.0", 1) for p in list_images(images_dir)]
        write_text(run.clusters, csv_text(("image", "cluster", "distance", "exemplar"), rows))
        return
    cfg = replace(cfg, cluster=replace(cfg.cluster, exemplars=cfg.adapt.style_images))
    cluster_folder(images_dir, run.clusters.parent, cfg)


def read_groups(run: RunLayout, images: list[Path]) -> dict[int, Group]:
    """Style groups from clusters.csv (without it: one group of every image, all exemplars)."""
    if not run.clusters.is_file():
        stems = [p.stem for p in images]
        return {0: Group(stems, stems)}
    groups: dict[int, Group] = {}
    with run.clusters.open(newline="") as handle:
        for row in csv.DictReader(handle):
            group = groups.setdefault(int(row["cluster"]), Group([], []))
            group.stems.append(row["image"])
            if row["exemplar"] == "1":
                group.exemplars.append(row["image"])
    return groups


def real_pairs(images: list[Path], labels_dir: Path, cfg: NucflowConfig, target: float) -> dict[str, Pair]:
    """stem -> (image, labels) rescaled so the median nucleus has `target` px; an image without
    labels (its presegmentation failed) is reported and left out.
    """
    pairs = {}
    for path in images:
        try:
            image, labels = load_pair(path, find_mask(labels_dir, path.stem), cfg.input)
        except InputError as error:
            log.warning("left out of training: %s", error)
            continue
        pairs[path.stem] = normalise_pair(image, labels, target)
    return pairs


def make_masks(pairs: list[Pair], folder: Path, count: int, cfg: NucflowConfig, cluster: int) -> None:
    """`count` synthetic label masks in `folder`/masks, from the shapes of `pairs` (seeded per mask)."""
    todo = [i for i in range(count) if not (folder / "masks" / f"{i:04d}.tif").is_file()]
    if not todo:
        return
    bank = collect_shapes([labels for _, labels in pairs], cfg.synthetic.min_area)
    for index in tqdm(todo, desc=f"synthetic masks, cluster {cluster}", unit="mask"):
        rng = np.random.default_rng([cfg.adapt.seed, cluster, index])
        write_labels(folder / "masks" / f"{index:04d}.tif", synthesize_mask(bank, cfg.synthetic, rng))


def learn_style(pairs: list[Pair], folder: Path, cfg: NucflowConfig) -> None:
    """Train (or resume) the pix2pix generator of one style group."""
    if (folder / "model.json").is_file():
        return
    if not pairs:
        raise InputError(folder, "no exemplar image to learn this group's style from")
    generator, record = train_pix2pix(pairs, cfg.pix2pix, resolve_device(cfg.device), checkpoint=folder / "checkpoint.pt")
    save_generator(folder, generator, {"training": record})


def draw_images(generator_dir: Path, folder: Path, cfg: NucflowConfig) -> None:
    """One synthetic image per synthetic mask of the group, skipping those drawn before."""
    todo = [m for m in sorted((folder / "masks").glob("*.tif")) if not (folder / "images" / f"{m.stem}.png").is_file()]
    if not todo:
        return
    generator = load_generator(generator_dir, resolve_device(cfg.device))
    for mask in tqdm(todo, desc=f"synthetic images, {folder.name}", unit="img"):
        write_png(folder / "images" / f"{mask.stem}.png", synthesize(generator, read_labels(mask)))


def recolour_replay(replay: list[Pair], images: list[Path], labels_dir: Path, folder: Path, cfg: NucflowConfig, cluster: int) -> None:
    """`adapt.recoloured_per_cluster` replay pairs redrawn in the colours of the group's images (each
    in those of one image, drawn at random; images whose labels give no colours are left out)."""
    todo = [i for i in range(cfg.adapt.recoloured_per_cluster) if not (folder / "masks" / f"{i:04d}.tif").is_file()]
    if not todo or not replay:
        return
    styles = []
    for path in images:
        try:
            image, labels = load_pair(path, find_mask(labels_dir, path.stem), cfg.input)
        except InputError as error:
            log.warning("no colours from %s: %s", path.name, error)
            continue
        style = style_of(image, labels)
        if style is not None:
            styles.append(style)
    if not styles:
        log.warning("stage recolour: no image of style group %d has enough nuclei to take its colours from", cluster)
        return
    order = replay_order(cfg.adapt.recoloured_per_cluster, len(replay), cfg.adapt.seed, cluster)
    for index in tqdm(todo, desc=f"recoloured images, cluster {cluster}", unit="img"):
        rng = np.random.default_rng([cfg.adapt.seed, cluster, index])
        image, labels = replay[order[index]]
        drawn = recolour(image, labels, styles[int(rng.integers(len(styles)))])
        if drawn is not None:
            write_png(folder / "images" / f"{index:04d}.png", drawn)
            write_labels(folder / "masks" / f"{index:04d}.tif", labels)


def replay_order(count: int, available: int, seed: int, cluster: int) -> list[int]:
    """Which replay pair each of a group's `count` recoloured images redraws: every pair once before any
    twice, in a seeded order of the group's own, so that groups draw different pairs from a sample larger than `count`."""
    order = np.random.default_rng([seed, cluster]).permutation(available)
    return [int(order[i % available]) for i in range(count)]


def folder_pairs(folder: Path, norm: InputConfig) -> list[Pair]:
    """The (image, mask) pairs of a folder of images/*.png and masks/*.tif made by a stage (at the models' nucleus size already)."""
    return [
        (to_rgb8(read_input(image, norm), norm), read_labels(folder / "masks" / f"{image.stem}.tif")) for image in sorted((folder / "images").glob("*.png"))
    ]


def split_pairs(pairs: list[Pair], val_dir: str | os.PathLike | None, cfg: NucflowConfig, target: float) -> tuple[list[Pair], list[Pair]]:
    """Training and validation pairs: the given val folder (images/, masks/), or a seeded share of `pairs`."""
    if val_dir is not None:
        val_dir = Path(val_dir)
        return pairs, list(real_pairs(list_images(val_dir / "images"), val_dir / "masks", cfg, target).values())
    if len(pairs) < 2:
        return pairs, pairs
    order = np.random.default_rng(cfg.adapt.seed).permutation(len(pairs))
    held = max(1, round(cfg.adapt.val_fraction * len(pairs)))
    return [pairs[i] for i in order[held:]], [pairs[i] for i in order[:held]]


def fine_tune_unets(train: list[Pair], val: list[Pair], run: RunLayout, cfg: NucflowConfig, target: float, minutes: float | None = None) -> None:
    """Each U-Net member, fine-tuned from the starting ensemble at its own nucleus size (or new, at
    `target`), into RUN/models/unet/member-<i>; the members share `minutes`."""
    if not train:
        raise InputError(run.root, "no training pairs for the U-Nets: run the masks, pix2pix and synthesize stages, or give --masks")
    device = resolve_device(cfg.device)
    members = len(cfg.unet.sigmas) if cfg.adapt.from_scratch else len(list(Path(cfg.unet.model or DEFAULT_ENSEMBLE).glob("member-*")))
    settings = replace(
        cfg.unet.train,
        iterations=cfg.adapt.unet_iterations,
        val_every=min(cfg.unet.train.val_every, cfg.adapt.unet_iterations),
        max_minutes=within(cfg.unet.train.max_minutes, None if minutes is None else minutes / max(members, 1)),
    )
    if cfg.adapt.from_scratch:
        arch = cfg.unet.architecture
        starts = [(build_unet(arch), arch, sigma, seed, {"initialised_from": "random"}) for sigma, seed in zip(cfg.unet.sigmas, cfg.unet.seeds)]
    else:
        folder = Path(cfg.unet.model or DEFAULT_ENSEMBLE)
        starts = [
            (
                model,
                UNetArchitecture.from_dict(card["architecture"]),
                card["target_sigma"],
                card["seed"],
                {"initialised_from": str(folder / f"member-{i}"), "initial_model": initial_model_summary(card)},
            )
            for i, (model, card) in enumerate(load_ensemble(folder, device))
        ]
        own = training_size(cfg, folder / "member-0", "--ensemble")  # the ensemble may be trained at another size than the presegmenter
        if own != target:
            log.info("stage unet: the ensemble's nuclei are %g px; training pairs rescaled from %g px", own, target)
            train, val = [normalise_pair(*pair, own) for pair in train], [normalise_pair(*pair, own) for pair in val]
            target = own
    check_run_origin(run.root / "unet", None if cfg.adapt.from_scratch else folder, target, resume=True)
    dtype = precision_dtype(cfg.precision, device)
    for index, (model, arch, sigma, seed, origin) in enumerate(starts):
        log.info("stage unet: member %d/%d from %s", index + 1, len(starts), origin["initialised_from"])
        member_dir = run.root / "unet" / f"member-{index}"
        card = {"target_diameter": target, **origin, "input": input_card(cfg), "training_data": {"train_pairs": len(train), "val_pairs": len(val)}}
        train_member(train, val, arch, settings, sigma, seed, member_dir, card, device, True, model.train(), dtype=dtype)
        publish(member_dir / "model", run.models / "unet" / f"member-{index}")


def fine_tune_presegmenter(train: list[Pair], val: list[Pair], run: RunLayout, cfg: NucflowConfig, target: float, minutes: float | None = None) -> None:
    """The Mask R-CNN, fine-tuned from the starting model (or new) for at most `minutes`, into RUN/models/presegment."""
    if not train:
        raise InputError(run.root, "no training pairs for the presegmenter: run the masks, pix2pix and synthesize stages, or give --masks")
    device = resolve_device(cfg.device)
    start, arch, start_card = None, cfg.presegment.architecture, None
    if not cfg.adapt.from_scratch:
        start, start_card = load_model(cfg.presegment.model or DEFAULT_MODEL, device)
        arch = Architecture.from_dict(start_card["architecture"])
        start.train()
    settings = replace(
        cfg.presegment.train,
        iterations=cfg.adapt.presegmenter_iterations,
        val_every=min(cfg.presegment.train.val_every, cfg.adapt.presegmenter_iterations),
        max_minutes=within(cfg.presegment.train.max_minutes, minutes),
    )
    log.info("stage presegmenter: %s on %d pairs", "training from scratch" if start is None else "fine-tuning", len(train))
    card = {
        "target_diameter": target,
        "initialised_from": "random" if start is None else str(cfg.presegment.model or DEFAULT_MODEL),
        "input": input_card(cfg),
        "training_data": {"train_pairs": len(train), "val_pairs": len(val)},
    }
    if start_card is not None:
        card["initial_model"] = initial_model_summary(start_card)
    check_run_origin(run.root / "presegmenter", None if start is None else cfg.presegment.model or DEFAULT_MODEL, target, resume=True)
    dtype = precision_dtype(cfg.precision, device)
    train_presegment_model(train, val, arch, settings, run.root / "presegmenter", card, device, True, start, detect_cfg=cfg.presegment.detect, dtype=dtype)
    publish(run.root / "presegmenter" / "model", run.models / "presegment")


def publish(source: Path, destination: Path) -> None:
    """Copy a trained model folder into RUN/models (replacing an older copy)."""
    if not (source / "model.json").is_file():
        raise InputError(source, "training produced no model (no validation was reached)")
    if destination.exists():
        shutil.rmtree(destination)
    shutil.copytree(source, destination)


def write_params(run: RunLayout, cfg: NucflowConfig) -> None:
    """RUN/models/params.json: the post-processing parameters the full path uses with these models."""
    source = Path(cfg.full.params) if cfg.full.params else DEFAULT_PARAMS
    run.models.mkdir(parents=True, exist_ok=True)
    if not (run.models / "params.json").is_file():
        write_json(run.models / "params.json", {**json.loads(source.read_text()), "note": f"copied from {source}; tune with nucflow param-search"})
