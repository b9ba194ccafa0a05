"""Leave-type-out benchmark: image types held out of training, zero-shot and after `nucflow train`.

Usage (from the repository root):
    uv run python benchmarks/bench_new_type.py ../shared/data/dsb2018 --work runs/lto-new \
        --held-out stained_tissue stained_cells --set presegment.train.max_minutes=85

1. `types.csv` of the data folder gives each image its type; every image of the `--held-out`
   types (train and val alike) is held out, so no model here ever sees one.
2. A presegmenter (and with `--methods full` a U-Net ensemble) is trained from scratch on the
   train images of the other types, validated on their val images (`--set` overrides apply, so
   two recipes can be compared; `--baseline-set` ones apply to this training only, not to the
   scoring or the adaptation; or pass a trained folder with --before-presegmenter).
3. Zero-shot: the fast (and full) path scored on the held-out images, per held-out type, and
   on the other types' val images.
4. With --adapt: `nucflow train` on the held-out images WITHOUT their masks, starting from those
   models, then the same scores again. Its replay sample is made from the training images of those
   models (`WORK/replay`), not the shipped one, which holds images of the held-out types.
Figures go to `WORK/results.json` (one entry per models x method x image set) and to `--out`.
Every step is resumable: rerun the same command after an interruption.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from workflow.adapt import train_on_images
from workflow.config import TRAIN_STAGES, NucflowConfig, load_config
from workflow.core.files import list_images, write_json, write_text
from workflow.core.metrics import mean_scores
from workflow.core.modelfiles import read_card
from workflow.core.runtime import device_name, resolve_device, setup_logging
from workflow.evaluate import score_segmenter
from workflow.predict import build_segmenter
from workflow.replay import REPLAY_CARD, make_replay_sample
from workflow.training import train_presegmenter, train_unet_ensemble
from workflow.training_data import find_mask, load_pair, read_split


def read_type_table(data: Path) -> dict[str, str]:
    with (data / "types.csv").open(newline="") as handle:
        return {row["image_id"]: row["type"] for row in csv.DictReader(handle)}


def link_subset(data: Path, stems: list[str], folder: Path, split: dict[str, str] | None, types: dict[str, str]) -> Path:
    """A data folder (images/, masks/, types.csv, optional split.csv) of symbolic links to `stems` of `data`."""
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    images = {p.stem: p for p in list_images(data / "images")}
    for stem in stems:
        for source, sub in ((images[stem], "images"), (find_mask(data / "masks", stem), "masks")):
            link = folder / sub / source.name
            if not link.exists():
                link.symlink_to(source.resolve())
    write_text(folder / "types.csv", "image_id,type\n" + "".join(f"{s},{types[s]}\n" for s in stems))
    if split is not None:
        write_text(folder / "split.csv", "image_id,subset\n" + "".join(f"{s},{split[s]}\n" for s in stems))
    return folder


def score(method: str, cfg: NucflowConfig, folder: Path, stems: list[str]) -> dict[str, float]:
    """Mean scores of a method on `stems` of `folder` at their own size, and seconds per image."""
    images = {p.stem: p for p in list_images(folder / "images")}
    pairs = [load_pair(images[s], find_mask(folder / "masks", s), cfg.input) for s in stems]
    scores, seconds = score_segmenter(build_segmenter(method, replace(cfg, method=method)), pairs)
    return {**mean_scores(scores), "images": len(pairs), "seconds": seconds}


def pooled(parts: list[dict[str, float]]) -> dict[str, float]:
    """Means over the images of several image sets: each set's means weighted by its image count."""
    images = sum(p["images"] for p in parts)
    return {key: sum(p[key] * p["images"] for p in parts) / images for key in parts[0] if key != "images"} | {"images": images}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder with images/, masks/, split.csv, types.csv")
    parser.add_argument("--work", type=Path, required=True, help="folder for the subsets, training runs and results")
    parser.add_argument("--held-out", nargs="+", default=["stained_tissue", "stained_cells"], help="types (types.csv) to hold out")
    parser.add_argument("--before-presegmenter", help="trained presegmenter folder to use (skips its training)")
    parser.add_argument("--before-ensemble", help="trained U-Net ensemble folder to use (skips its training)")
    parser.add_argument("--methods", nargs="+", choices=("fast", "full"), default=["fast"], help="paths to score (fast alone trains no U-Nets)")
    parser.add_argument("--adapt", action="store_true", help="also run nucflow train on the held-out images (no masks) and score again")
    parser.add_argument("--replay-crops", type=int, default=64, help="crops of the other types' train images in the adaptation's replay sample")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument(
        "--baseline-set",
        dest="baseline_overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="setting override for training the zero-shot models only (step 2)",
    )
    parser.add_argument("--out", type=Path, help="markdown report (default: WORK/report.md)")
    args = parser.parse_args()
    trains_presegmenter = args.before_presegmenter is None
    trains_unets = args.before_ensemble is None and "full" in args.methods
    if args.baseline_overrides and not (trains_presegmenter or trains_unets):
        parser.error("--baseline-set changes only the models trained here, and the given --before-* folders leave none to train")

    torch.set_num_threads(args.threads)
    setup_logging(0)
    cfg = load_config(overrides=args.overrides)
    baseline_cfg = load_config(overrides=args.overrides + args.baseline_overrides)
    started = time.monotonic()
    types, split = read_type_table(args.data), read_split(args.data)
    unknown = sorted(set(args.held_out) - set(types.values()))
    if unknown:
        parser.error(f"unknown type {unknown[0]!r}; types.csv has {', '.join(sorted(set(types.values())))}")
    held_stems = sorted(s for s in types if types[s] in args.held_out)
    rest_stems = sorted(s for s in types if types[s] not in args.held_out and s in split)
    rest = link_subset(args.data, rest_stems, args.work / "rest", split, types)
    held = link_subset(args.data, held_stems, args.work / "held", None, types)
    print(f"held out {', '.join(args.held_out)}: {len(held_stems)} images; training on the other {len(rest_stems)}", flush=True)

    before = replace(cfg, presegment=replace(cfg.presegment, model=args.before_presegmenter), unet=replace(cfg.unet, model=args.before_ensemble))
    if trains_presegmenter:
        train_presegmenter(rest, args.work / "before" / "presegment", baseline_cfg)
        before.presegment.model = str(args.work / "before" / "presegment" / "model")
    if trains_unets:
        train_unet_ensemble(rest, args.work / "before" / "unet", baseline_cfg)
        before.unet.model = str(args.work / "before" / "unet" / "ensemble")
    settings = [("zero-shot", before)]
    if args.adapt:
        stages = tuple(s for s in TRAIN_STAGES if s != "unet" or "full" in args.methods)
        replay = args.work / "replay"
        if not (replay / REPLAY_CARD).is_file():
            make_replay_sample(rest, replay, args.replay_crops, float(read_card(before.presegment.model)["target_diameter"]), cfg.adapt.seed)
        adapting = time.monotonic()
        train_on_images(held / "images", args.work / "after", replace(before, adapt=replace(before.adapt, stages=stages, replay=str(replay))))
        print(f"nucflow train: {(time.monotonic() - adapting) / 60:.1f} min in this call", flush=True)
        models = args.work / "after" / "models"
        after = replace(before, presegment=replace(before.presegment, model=str(models / "presegment")))
        if "full" in args.methods:
            after.unet = replace(before.unet, model=str(models / "unet"))
        settings.append((f"after nucflow train ({'masks: ' + str(cfg.adapt.masks) if cfg.adapt.masks else 'no masks'})", after))

    results_path = args.work / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    image_sets = {f"held out: {t}": (held, [s for s in held_stems if types[s] == t]) for t in args.held_out}
    image_sets["val of the other types"] = (rest, [s for s in rest_stems if split[s] == "val"])
    for name, settings_cfg in settings:
        for method in args.methods:
            for set_name, (folder, stems) in image_sets.items():
                key = f"{name} | {method} | {set_name}"
                card = read_card(settings_cfg.presegment.model) if settings_cfg.presegment.model else {}
                if key not in results and method == "fast" and folder == rest and "validation_fast_path" in card:
                    figures = card["validation_fast_path"]  # the same images, scored when the model was trained
                    results[key] = {**{k: figures[k] for k in ("dsb", "ap50", "f1")}, "images": figures["images"], "seconds": figures["seconds_per_image"]}
                if key not in results:
                    results[key] = score(method, settings_cfg, folder, stems)
                    write_json(results_path, results)
                print(key, json.dumps({k: round(v, 4) for k, v in results[key].items()}), flush=True)
            parts = [results[f"{name} | {method} | held out: {t}"] for t in args.held_out]
            results[f"{name} | {method} | held out: all"] = pooled(parts)
    write_json(results_path, results)
    rows = [f"| {key} | {r['images']} | {r['dsb']:.4f} | {r['ap50']:.4f} | {r['f1']:.4f} | {r['seconds']:.2f} |" for key, r in results.items()]
    report = "\n".join(
        [
            f"# Leave-type-out: {', '.join(args.held_out)} held out of {args.data.name} ({len(held_stems)} images)",
            "",
            f"Machine: {device_name(resolve_device(cfg.device))}; {time.strftime('%Y-%m-%d')}, {(time.monotonic() - started) / 60:.0f} min in this call.",
            f"Settings changed from the defaults: {', '.join(args.overrides) or 'none'}; for the models trained here only: {', '.join(args.baseline_overrides) or 'none'}.",
            "",
            "| models | method | images | n | DSB score | AP@0.5 | F1@0.5 | s / image |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    write_text(args.out or args.work / "report.md", report)
    print(report)


if __name__ == "__main__":
    main()
