"""The point of `nucflow train`: an image type held out of training, before and after adapting to it.

Usage (from the repository root; a GPU makes the training steps practical):
    uv run python benchmarks/bench_new_type.py ../shared/data/dsb2018 --work runs/new_type \
        --out benchmarks/results/new_type.md
The CPU-sized run in the README added: --methods fast --set size.target_diameter=32
    --set presegment.train.iterations=1200 --set presegment.train.val_every=600
    --set adapt.presegmenter_iterations=500 --set pix2pix.iterations=1000
    --set pix2pix.batch_size=1 --set adapt.masks_per_cluster=60

1. Cluster every image of the data by style; hold out one cluster (default: the most
   colourful one, i.e. the H&E-like images), so no image of that type is trained on.
2. "before": train a presegmenter and a U-Net ensemble from scratch on the other images
   (`--set` overrides such as presegment.train.iterations=... apply; or pass trained folders
   with --before-presegmenter / --before-ensemble).
3. "after": `nucflow train` on the held-out images WITHOUT their masks, starting from the
   "before" models (presegment -> synthetic masks -> pix2pix -> synthetic pairs -> fine-tuning).
4. Score the fast and full paths of both on the held-out images against their masks
   (`--methods fast` leaves the U-Nets out: no ensemble is trained, fine-tuned or scored).
Every step is resumable: rerun the same command after an interruption.
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from workflow.adapt import STAGES, train_on_images
from workflow.cluster_folder import cluster_folder
from workflow.config import NucflowConfig, load_config
from workflow.evaluate import score_segmenter
from workflow.files import list_images, write_text
from workflow.images import read_image, to_rgb8
from workflow.metrics import mean_scores
from workflow.predict import build_segmenter
from workflow.runtime import device_name, resolve_device, setup_logging
from workflow.training import train_presegmenter, train_unet_ensemble
from workflow.training_data import find_mask, load_pair, read_split


def colourfulness(path: Path) -> float:
    """Mean spread between an image's colour channels: about 0 for gray images, large for stained ones."""
    rgb = to_rgb8(read_image(path)).astype(np.int16)
    return float((rgb.max(axis=2) - rgb.min(axis=2)).mean())


def read_clusters(path: Path) -> dict[str, int]:
    with path.open(newline="") as handle:
        return {row["image"]: int(row["cluster"]) for row in csv.DictReader(handle)}


def link_subset(data: Path, stems: list[str], folder: Path, split: dict[str, str] | None) -> Path:
    """A data folder (images/, masks/, optional split.csv) of symbolic links to `stems` of `data`."""
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    images = {p.stem: p for p in list_images(data / "images")}
    for stem in stems:
        for source, sub in ((images[stem], "images"), (find_mask(data / "masks", stem), "masks")):
            link = folder / sub / source.name
            if not link.exists():
                link.symlink_to(source.resolve())
    if split is not None:
        write_text(folder / "split.csv", "image_id,subset\n" + "".join(f"{s},{split[s]}\n" for s in stems))
    return folder


def score(method: str, cfg: NucflowConfig, held: Path) -> dict[str, float]:
    """Mean scores of a method on the held-out images at their own size."""
    pairs = [load_pair(p, find_mask(held / "masks", p.stem), cfg.input.stretch_percentiles) for p in list_images(held / "images")]
    scores, seconds = score_segmenter(build_segmenter(method, replace(cfg, method=method)), pairs)
    return {**mean_scores(scores), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder with images/, masks/, split.csv")
    parser.add_argument("--work", type=Path, required=True, help="folder for the clusters, subsets and training runs")
    parser.add_argument("--k", type=int, help="clusters (default: chosen by silhouette)")
    parser.add_argument("--held-out", type=int, help="cluster to hold out (default: the most colourful)")
    parser.add_argument("--before-presegmenter", help="trained presegmenter folder to use as 'before' (skips its training)")
    parser.add_argument("--before-ensemble", help="trained U-Net ensemble folder to use as 'before' (skips its training)")
    parser.add_argument("--methods", nargs="+", choices=("fast", "full"), default=["fast", "full"],
                        help="paths to score (fast alone trains no U-Nets)")
    parser.add_argument("--single-experiment", action="store_true", help="nucflow train treats the held-out images as one style")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/new_type.md"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    setup_logging(0)
    cfg = load_config(overrides=args.overrides)
    if args.k:
        cfg.cluster.k = args.k
    started = time.monotonic()
    clusters_csv = args.work / "clusters" / "clusters.csv"
    if not clusters_csv.is_file():
        cluster_folder(args.data / "images", clusters_csv.parent, cfg)
    cluster_of = read_clusters(clusters_csv)
    images = {p.stem: p for p in list_images(args.data / "images")}
    held_out = args.held_out
    if held_out is None:
        colour = {k: np.mean([colourfulness(images[s]) for s in cluster_of if cluster_of[s] == k]) for k in set(cluster_of.values())}
        held_out = max(colour, key=colour.get)
    held_stems = sorted(s for s, k in cluster_of.items() if k == held_out)
    split = read_split(args.data)
    rest = link_subset(args.data, sorted(s for s in cluster_of if cluster_of[s] != held_out and s in split), args.work / "rest", split)
    held = link_subset(args.data, held_stems, args.work / "held", None)
    print(f"held out cluster {held_out}: {len(held_stems)} images; training on {len(list_images(rest / 'images'))}", flush=True)

    before = replace(cfg, presegment=replace(cfg.presegment, model=args.before_presegmenter), unet=replace(cfg.unet, model=args.before_ensemble))
    if args.before_presegmenter is None:
        train_presegmenter(rest, args.work / "before" / "presegment", cfg)
        before.presegment.model = str(args.work / "before" / "presegment" / "model")
    if args.before_ensemble is None and "full" in args.methods:
        train_unet_ensemble(rest, args.work / "before" / "unet", cfg)
        before.unet.model = str(args.work / "before" / "unet" / "ensemble")
    stages = tuple(s for s in STAGES if s != "unet" or "full" in args.methods)
    train_on_images(held / "images", args.work / "after", before, single_experiment=args.single_experiment, stages=stages)
    models = args.work / "after" / "models"
    after = replace(before, presegment=replace(before.presegment, model=str(models / "presegment")))
    if "full" in args.methods:
        after.unet = replace(before.unet, model=str(models / "unet"))

    rows = []
    for name, settings in (("before", before), ("after (nucflow train, no masks)", after)):
        for method in args.methods:
            figures = score(method, settings, held)
            rows.append(f"| {name} | {method} | {figures['dsb']:.4f} | {figures['ap50']:.4f} | {figures['f1']:.4f} |")
            print(rows[-1], flush=True)
    report = "\n".join([
        f"# A held-out image type: {args.data.name} cluster {held_out} ({len(held_stems)} images), before and after `nucflow train`",
        "",
        f"Machine: {device_name(resolve_device(cfg.device))}; one run, {time.strftime('%Y-%m-%d')}, {(time.monotonic() - started) / 60:.0f} min in all.",
        f"Settings changed from the defaults: {', '.join(args.overrides) or 'none'}"
        f"{'; nucflow train --single-experiment' if args.single_experiment else ''}.",
        "The 'before' models never saw an image of the held-out cluster; 'after' adapted to its images without their masks.",
        "",
        "| models | method | DSB score | AP@0.5 | F1@0.5 |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ])
    write_text(args.out, report)
    print(report)


if __name__ == "__main__":
    main()
