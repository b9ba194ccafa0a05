"""Settings compared image by image, on val and off val (train images the shipped models learned, scored the
same way): the check DEVELOPERS.md asks of every tuning choice. Fast path (or `--method full`), shipped models unless
an arm sets others.

Usage (from the repository root; resumable: rows already in --jsonl are kept):
    uv run python benchmarks/bench_settings.py ../shared/data/dsb2018 --jsonl runs/settings.jsonl \
        --arm default= --arm ladder="presegment.probe.octaves=3;presegment.probe.max_side=768" \
        --arm dim40="dim=40" --threads 1 --out benchmarks/results/settings_offval.md

An arm is NAME=OVERRIDES: `section.key=value` settings separated by `;`, and optionally `dim=N`, which scores a
dim copy of each image (8-bit, its 99.9th intensity percentile brought to N: the dim images labs produce), and
`resize=F`, which scores a copy F times the image's size against its masks resized the same way (F 0.5: nuclei half
as wide and crowded, as in tissue sections imaged at a lower magnification; the size estimate must follow).
Images: every val image, then every `--train-every`-th train image (sorted by name). For each image all arms run
in turn, so a run cut short still compares them on the same images. `--stems FILE` keeps only the images named in
FILE (one stem per line): e.g. those where two arms' fast-path size estimates differ, the only images on which a
size-path setting can change the full path's result.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from workflow.config import load_config
from workflow.core.files import list_images, write_text
from workflow.core.images import read_input, resize_image, to_rgb8
from workflow.core.labels import median_diameter, read_labels, resize_labels
from workflow.core.metrics import score_image
from workflow.core.runtime import device_name
from workflow.predict import build_segmenter
from workflow.training_data import find_mask, read_split, read_types

SIZE_TOLERANCE = 0.2  # an estimate "within 20 %" of the true median diameter


COPIES = ("dim", "resize")  # arm items that change the scored image rather than a setting


def parse_arm(text: str) -> tuple[str, list[str], dict[str, float]]:
    """NAME=a.b=1;c.d=2;dim=40;resize=0.5 -> (NAME, ["a.b=1", "c.d=2"], {"dim": 40.0, "resize": 0.5})."""
    name, _, spec = text.partition("=")
    overrides, copy = [], {}
    for item in filter(None, (part.strip() for part in spec.split(";"))):
        key, _, value = item.partition("=")
        if key in COPIES:
            copy[key] = float(value)
        else:
            overrides.append(item)
    return name, overrides, copy


def resized_copy(image: np.ndarray, truth: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """The image and its masks at `factor` times their size (masks by nearest neighbour)."""
    shape = (max(1, round(truth.shape[0] * factor)), max(1, round(truth.shape[1] * factor)))
    return resize_image(image, shape), resize_labels(truth, shape)


def dim_copy(image: np.ndarray, level: float) -> np.ndarray:
    """8-bit copy of `image` (its colour channels) whose 99.9th percentile is `level`."""
    colour = image[..., :3].astype(np.float32)
    return np.clip(np.round(colour * level / max(float(np.percentile(colour, 99.9)), 1.0)), 0, 255).astype(np.uint8)


def pick_images(data: Path, train_every: int, subsets: tuple[str, ...] = ("val", "train")) -> list[tuple[str, str]]:
    """(stem, subset): all val images, then every `train_every`-th train image (of those in `subsets`)."""
    split = read_split(data)
    val = sorted(s for s, subset in split.items() if subset == "val") if "val" in subsets else []
    train = sorted(s for s, subset in split.items() if subset == "train")[::train_every] if train_every and "train" in subsets else []
    return [(s, "val") for s in val] + [(s, "train") for s in train]


def summary(rows: list[dict], arms: list[str]) -> list[str]:
    """Markdown table: per subset and type, mean DSB of each arm over the images every arm has scored."""
    by_image: dict[str, dict[str, dict]] = defaultdict(dict)
    for row in rows:
        by_image[row["stem"]][row["arm"]] = row
    complete = [arms_of for arms_of in by_image.values() if all(a in arms_of for a in arms)]
    lines = ["| images | n | " + " | ".join(arms) + " |", "|---|---|" + "---|" * len(arms)]
    groups: dict[str, list[dict]] = defaultdict(list)
    for arms_of in complete:
        first = arms_of[arms[0]]
        groups[first["subset"]].append(arms_of)
        groups[f"{first['subset']}, {first['type']}"].append(arms_of)
    for name in sorted(groups, key=lambda g: (g.split(",")[0] != "val", "," in g, g)):
        group = groups[name]
        cells = [f"{np.mean([g[a]['dsb'] for g in group]):.4f}" for a in arms]
        lines.append(f"| {name} | {len(group)} | " + " | ".join(cells) + " |")
    for subset in ("val", "train"):
        group = groups.get(subset, [])
        if group:
            within = [np.mean([within_tolerance(g[a]) for g in group]) for a in arms]
            seconds = [np.mean([g[a]["seconds"] for g in group]) for a in arms]
            lines.append(f"| {subset}: size estimate within 20 % | {len(group)} | " + " | ".join(f"{w:.2f}" for w in within) + " |")
            lines.append(f"| {subset}: seconds per image | {len(group)} | " + " | ".join(f"{s:.1f}" for s in seconds) + " |")
    return lines


def read_rows(path: Path) -> list[dict]:
    """The rows scored so far (by this process or another sharing the file)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def within_tolerance(row: dict) -> bool:
    truth, estimate = row["truth_diameter"], row["estimated_diameter"]
    return bool(truth and estimate and abs(estimate / truth - 1) <= SIZE_TOLERANCE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="folder with images/, masks/ and split.csv")
    parser.add_argument("--arm", action="append", required=True, help="NAME=OVERRIDES (see above); the first is the reference")
    parser.add_argument("--jsonl", type=Path, required=True, help="per-image rows (appended; a rerun resumes)")
    parser.add_argument("--train-every", type=int, default=9, help="every n-th train image joins (0: val only)")
    parser.add_argument("--subsets", nargs="+", default=["val", "train"], choices=["val", "train"], help="(two processes may share one --jsonl)")
    parser.add_argument("--method", choices=["fast", "full"], default="fast")
    parser.add_argument("--stems", type=Path, help="file of image stems (one per line): score only these")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="markdown summary")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    arms = [parse_arm(text) for text in args.arm]
    images = {p.stem: p for p in list_images(args.data / "images")}
    chosen = pick_images(args.data, args.train_every, tuple(args.subsets))
    if args.stems:
        wanted = set(args.stems.read_text().split())
        chosen = [(stem, subset) for stem, subset in chosen if stem in wanted]
    stems = [stem for stem, _ in chosen]
    types = dict(zip(stems, read_types(args.data, stems) or []))
    done = {(row["arm"], row["stem"]) for row in read_rows(args.jsonl)}
    segmenters = {}
    for name, overrides, copy in arms:
        cfg = load_config(overrides=overrides)
        segmenters[name] = (cfg, build_segmenter(args.method, replace(cfg, method=args.method)), copy)
    for stem, subset in chosen:
        masks = read_labels(find_mask(args.data / "masks", stem))
        for name, (cfg, segmenter, copy) in segmenters.items():
            if (name, stem) in done:
                continue
            image, truth = read_input(images[stem], cfg.input), masks
            if "resize" in copy:
                image, truth = resized_copy(image, masks, copy["resize"])
            rgb8 = to_rgb8(dim_copy(image, copy["dim"]) if "dim" in copy else image, cfg.input)
            started = time.perf_counter()
            prediction = segmenter(rgb8)
            seconds = time.perf_counter() - started
            scores = score_image(truth, prediction.labels)
            row = {
                "arm": name, "stem": stem, "subset": subset, "type": types.get(stem, "unknown"), "dsb": scores.dsb, "ap50": scores.ap50,
                "n_true": scores.n_true, "n_pred": scores.n_pred, "truth_diameter": median_diameter(truth),
                "estimated_diameter": prediction.diameter, "seconds": seconds,
            }  # fmt: skip
            with args.jsonl.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
    names = [name for name, _, _ in arms]
    report = "\n".join(
        [
            f"# Settings on val and off val: {', '.join(names)}",
            "",
            f"Machine: {device_name(torch.device('cpu'))}; {time.strftime('%Y-%m-%d')}. `benchmarks/bench_settings.py` "
            f"({args.method} path; train images every {args.train_every}th"
            + (f"; only the images listed in {args.stems.name}" if args.stems else "")
            + "). Arms: "
            + "; ".join(f"{n}: `{t.partition('=')[2] or 'defaults'}`" for n, t in zip(names, args.arm)),
            "",
            *summary(read_rows(args.jsonl), names),
        ]
    )
    if args.out:
        write_text(args.out, report + "\n")
    print(report)


if __name__ == "__main__":
    main()
