"""Seconds per 512 x 512 image of the fast and full paths, before and after the speed work, in one run.

Usage (from the repository root):
    uv run python benchmarks/bench_speed.py ../shared/data/dsb2018 --images 16 \
        --out benchmarks/results/speed.md

"before" re-creates the earlier inference settings with `--set` overrides (Mask R-CNN tiles of
768 px, network weights in the default memory order); "after" is today's defaults. Both run on the same 512 x 512 crops of val images (smaller images are
mirror-padded, and their masks alike), models loaded beforehand and one warm-up image excluded.
Both are scored against the masks, so a speed-up that cost accuracy would show.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from skimage.measure import label as connected_components

from workflow.config import load_config
from workflow.core.files import write_text
from workflow.core.metrics import score_image
from workflow.core.runtime import device_name, resolve_device
from workflow.predict import build_segmenter
from workflow.training_data import load_annotated

SIDE = 512
BEFORE = ("presegment.detect.tile_size=768", "channels_last=false")


def crop_or_pad(rgb8: np.ndarray, side: int = SIDE) -> np.ndarray:
    """The central `side` x `side` part of an image, mirror-padded where the image is smaller."""
    pad = [(max(0, side - n) // 2, max(0, side - n) - max(0, side - n) // 2) for n in rgb8.shape[:2]]
    padded = np.pad(rgb8, (*pad, (0, 0)), mode="symmetric")
    y, x = (padded.shape[0] - side) // 2, (padded.shape[1] - side) // 2
    return np.ascontiguousarray(padded[y : y + side, x : x + side])


def time_segmenter(method: str, overrides: tuple[str, ...], pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """Mean seconds per image (after one warm-up image) and mean DSB score."""
    segmenter = build_segmenter(method, load_config(overrides=["device=cpu", *overrides]))
    segmenter(pairs[0][0])
    labels, started = [], time.perf_counter()
    for image, _ in pairs:
        labels.append(segmenter(image).labels)
    seconds = (time.perf_counter() - started) / len(pairs)
    return seconds, float(np.mean([score_image(truth, pred).dsb for (_, truth), pred in zip(pairs, labels)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder with images/, masks/, split.csv")
    parser.add_argument("--subset", default="val")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--methods", nargs="+", default=["fast", "full"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/speed.md"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    loaded, _ = load_annotated(args.data, args.subset, None, limit=args.images)
    # mirrored nuclei become objects of their own (connected components of each label value)
    pairs = [(crop_or_pad(rgb8), connected_components(crop_or_pad(truth[..., None])[..., 0], connectivity=1)) for rgb8, truth in loaded]
    rows = []
    for method in args.methods:
        before, before_dsb = time_segmenter(method, BEFORE, pairs)
        after, after_dsb = time_segmenter(method, (), pairs)
        rows.append(f"| {method} | {before:.2f} | {after:.2f} | {before / after:.2f} | {before_dsb:.4f} | {after_dsb:.4f} |")
        print(rows[-1], flush=True)
    report = "\n".join(
        [
            f"# Speed: seconds per {SIDE} x {SIDE} image ({len(pairs)} crops of {args.data.name} {args.subset} images)",
            "",
            f"Machine: {device_name(resolve_device('cpu'))}, torch {torch.__version__}; one run, {time.strftime('%Y-%m-%d')}.",
            f"before = {', '.join(BEFORE)}; after = the defaults.",
            "",
            "| method | before s / image | after s / image | speed-up | DSB before | DSB after |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    write_text(args.out, report)
    print(report)


if __name__ == "__main__":
    main()
