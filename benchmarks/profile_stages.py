"""Where the time goes: seconds per image in each stage of the fast and full paths (cProfile).

Usage (from the repository root):
    uv run python benchmarks/profile_stages.py ../shared/data/dsb2018 --images 8 --threads 2

It prints the table (`--out FILE` writes it too). `benchmarks/results/stage_profile.md` keeps every session's
tables: add a new one there as a section, do not overwrite it.

The first `--images` val images (split.csv order) are segmented by each method with the shipped models;
each stage's time is the cumulative time of the function that runs it, summed over the images and
divided by their number; the size probe's Mask R-CNN passes are counted once, under the probe, so the
stages do not overlap and their sum plus "other" is the total.
"""

from __future__ import annotations

import argparse
import cProfile
import platform
import pstats
import time
from dataclasses import replace
from pathlib import Path

import torch

from workflow.config import load_config
from workflow.core.files import write_text
from workflow.core.images import read_input, to_rgb8
from workflow.predict import build_segmenter
from workflow.training_data import read_split

STAGES = {  # (file ending, function name) -> stage
    ("presegment/pipeline.py", "estimate_diameter"): "size probe (Mask R-CNN passes)",
    ("presegment/pipeline.py", "segment_at_scale"): "Mask R-CNN segmenting (views, scales)",
    ("unet_ensemble/predict.py", "ensemble_maps"): "U-Net ensemble",
    ("postprocess/refine.py", "refine"): "post-processing",
    ("workflow/core/labels.py", "resize_labels"): "outlines back to image size",
}


def stage_seconds(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative seconds of each stage's function (outermost calls only, as cProfile counts them)."""
    seconds = dict.fromkeys(STAGES.values(), 0.0)
    for (file, _, name), (_, _, _, cumulative, _) in stats.stats.items():
        for (ending, function), stage in STAGES.items():
            if name == function and file.endswith(ending):
                seconds[stage] += cumulative
    seconds["Mask R-CNN segmenting (views, scales)"] -= seconds["size probe (Mask R-CNN passes)"]  # the probe's passes run through it too
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder with images/ and split.csv")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=["fast", "full"])
    parser.add_argument("--out", type=Path, help="markdown file to write the table to (default: print only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config()
    split = read_split(args.data)
    stems = [s for s, subset in split.items() if subset == "val"][: args.images]
    images = [to_rgb8(read_input(next((args.data / "images").glob(f"{s}.*")), cfg.input), cfg.input) for s in stems]
    rows = {}
    for method in args.methods:
        segmenter = build_segmenter(method, replace(cfg, method=method))
        segmenter(images[0])  # warm-up: first-call allocations are not a stage
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        for rgb8 in images:
            segmenter(rgb8)
        profile.disable()
        total = (time.perf_counter() - started) / len(images)
        seconds = {k: v / len(images) for k, v in stage_seconds(pstats.Stats(profile)).items()}
        rows[method] = (seconds, total)
        print(method, f"{total:.2f} s/image", {k: round(v, 2) for k, v in seconds.items()}, flush=True)
    machine = f"{platform.processor() or platform.machine()}, {args.threads} torch threads"
    lines = [
        "# Where the time goes, per stage",
        "",
        f"Seconds per image on the first {len(images)} val images of `{args.data.name}` (shipped models, defaults), {machine};",
        "cProfile cumulative time of each stage's function (profiling adds a little to Python-heavy stages).",
        "",
        "| stage | " + " | ".join(args.methods) + " |",
        "|---|" + "---|" * len(args.methods),
    ]
    for stage in STAGES.values():
        lines.append(f"| {stage} | " + " | ".join(f"{rows[m][0][stage]:.2f}" for m in args.methods) + " |")
    lines.append(
        "| other (reading aside: resizing, tiling, merging) | " + " | ".join(f"{rows[m][1] - sum(rows[m][0].values()):.2f}" for m in args.methods) + " |"
    )
    lines.append("| **total** | " + " | ".join(f"**{rows[m][1]:.2f}**" for m in args.methods) + " |")
    table = "\n".join(lines) + "\n"
    print(table, end="")
    if args.out:
        write_text(args.out, table)


if __name__ == "__main__":
    main()
