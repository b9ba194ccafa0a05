"""Polarity of dark-nuclei images: keep, gray-invert ("auto") or let the presegmenter choose ("choose").

Usage (from the repository root):
    uv run python benchmarks/bench_polarity.py ../shared/data/dsb2018 --split val --types stained_tissue stained_cells brightfield \
        --cache runs/polarity-val.jsonl [--set presegment.model=FOLDER ...]

For every chosen image that `has_dark_nuclei` (images of bright nuclei are never inverted, by any rule), the fast
path's DSB score with the image kept and gray-inverted, and the presegmenter's confidence on each
(`presegment.pipeline.confidence`). The table gives the mean DSB per type under each rule: keep, auto (always
inverted), choose (inverted where the confidence is higher) and the per-image best of the two (a ceiling).
Per-image rows go to `--cache` (rerunning skips the images it holds).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from presegment.pipeline import confidence
from workflow.config import load_config
from workflow.core.images import has_dark_nuclei, read_input, to_rgb8, with_polarity
from workflow.core.labels import read_labels
from workflow.core.metrics import score_image
from workflow.predict import build_segmenter, load_models
from workflow.training_data import find_mask, read_split, read_types

RULES = ("keep", "auto", "choose", "best of both")


def measure(data: Path, stems: list[str], types: dict[str, str], cache: Path, overrides: list[str]) -> list[dict]:
    """Per-image DSB and confidence with the image kept and inverted (dark-nuclei images only), cached."""
    rows = {row["stem"]: row for row in map(json.loads, cache.read_text().splitlines())} if cache.is_file() else {}
    cfg = load_config(overrides=overrides + ["input.polarity=keep"])
    models, segmenter = load_models(cfg, ensemble=False), build_segmenter("fast", cfg)
    for stem in stems:
        if stem in rows:
            continue
        rgb8 = to_rgb8(read_input(next((data / "images").glob(f"{stem}.*")), cfg.input), cfg.input)
        row = {"stem": stem, "type": types.get(stem, "unknown"), "dark": has_dark_nuclei(rgb8)}
        if row["dark"]:
            truth = read_labels(find_mask(data / "masks", stem))
            for polarity in ("keep", "invert"):
                shown = with_polarity(rgb8, polarity)
                row[f"confidence_{polarity}"] = confidence(models.presegmenter, shown, cfg.presegment.detect, cfg.presegment.probe)
                row[f"dsb_{polarity}"] = score_image(truth, segmenter(shown).labels).dsb
        rows[stem] = row
        with cache.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(stem[:12], row["type"], {k: round(v, 3) for k, v in row.items() if k.startswith(("dsb", "confidence"))}, flush=True)
    return [rows[stem] for stem in stems]


def rule_scores(row: dict) -> dict[str, float]:
    """The image's DSB under each rule."""
    chosen = row["dsb_invert"] if row["confidence_invert"] > row["confidence_keep"] else row["dsb_keep"]
    return dict(zip(RULES, (row["dsb_keep"], row["dsb_invert"], chosen, max(row["dsb_keep"], row["dsb_invert"]))))


def table(rows: list[dict]) -> list[str]:
    """Markdown rows: mean DSB per type (dark-nuclei images) under each rule, and how often choose inverted."""
    by_type: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if row["dark"]:
            by_type[row["type"]].append(row)
            by_type["all"].append(row)
    lines = ["| images | n | " + " | ".join(RULES) + " | choose inverted |", "|---|---|" + "---|" * (len(RULES) + 1)]
    for name, group in sorted(by_type.items(), key=lambda item: item[0] == "all"):
        means = np.mean([list(rule_scores(row).values()) for row in group], axis=0)
        inverted = sum(row["confidence_invert"] > row["confidence_keep"] for row in group)
        lines.append(f"| {name} | {len(group)} | " + " | ".join(f"{m:.4f}" for m in means) + f" | {inverted} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder with images/, masks/, split.csv, types.csv")
    parser.add_argument("--split", help="only images of this split (split.csv); default: all")
    parser.add_argument("--types", nargs="+", help="only images of these types (types.csv); default: all")
    parser.add_argument("--every", type=int, default=1, help="every n-th chosen image (a quicker sample)")
    parser.add_argument("--cache", type=Path, required=True, help="per-image rows (jsonl), resumable")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    split = read_split(args.data)
    types = dict(zip(sorted(split), read_types(args.data, sorted(split)) or ["unknown"] * len(split)))
    stems = [s for s in sorted(types) if (args.split is None or split.get(s) == args.split) and (args.types is None or types[s] in args.types)]
    rows = measure(args.data, stems[:: args.every], types, args.cache, args.overrides)
    print("\n".join(table(rows)))


if __name__ == "__main__":
    main()
