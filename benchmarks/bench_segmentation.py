"""Accuracy and speed of the segmentation methods on an annotated split, in one run.

Usage (from the repository root):
    uv run python benchmarks/bench_segmentation.py ../shared/data/dsb2018 --subset val \
        --methods classic fast full --out benchmarks/results/segmentation_val.md

Reports per method the mean DSB score, AP@0.5, F1 and seconds per image (image already
read; model loading excluded), with the CPU thread count and device named. A method may carry
its own settings after `@` (`full@precision=float32;views.full=[]`): a row of its own, same run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from workflow.config import load_config
from workflow.core.files import write_text
from workflow.core.metrics import mean_scores
from workflow.core.precision import dtype_name, precision_dtype
from workflow.core.runtime import device_name, resolve_device
from workflow.evaluate import score_segmenter
from workflow.predict import build_segmenter
from workflow.training_data import load_annotated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder with images/, masks/, split.csv")
    parser.add_argument("--subset", default="val")
    parser.add_argument("--methods", nargs="+", default=["classic", "fast", "full"], help="METHOD or METHOD@KEY=VALUE;KEY=VALUE")
    parser.add_argument("--model", help="presegmenter model folder (default: shipped)")
    parser.add_argument("--ensemble", help="U-Net ensemble folder for the full path (default: shipped)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE", help="setting override, as for nucflow")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/segmentation.md"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    cfg = load_config(overrides=args.overrides)
    cfg.presegment.model = args.model or cfg.presegment.model
    cfg.unet.model = args.ensemble or cfg.unet.model
    pairs, _ = load_annotated(args.data, args.subset, None, cfg.input, args.limit)
    rows = []
    for method in args.methods:
        name, _, own = method.partition("@")
        method_cfg = load_config(overrides=args.overrides + own.split(";")) if own else cfg
        method_cfg.presegment.model, method_cfg.unet.model = cfg.presegment.model, cfg.unet.model
        scores, seconds = score_segmenter(build_segmenter(name, method_cfg), pairs)
        means = mean_scores(scores)
        rows.append(f"| {method} | {means['dsb']:.4f} | {means['ap50']:.4f} | {means['f1']:.4f} | {seconds:.2f} |")
        print(rows[-1], flush=True)
    resolved = resolve_device(cfg.device)
    device, precision = device_name(resolved), dtype_name(precision_dtype(cfg.precision, resolved))
    report = "\n".join(
        [
            f"# Segmentation benchmark: {args.data.name} {args.subset} ({len(pairs)} images)",
            "",
            f"Machine: {device}, torch {torch.__version__}; networks in {precision} unless a row says otherwise; one run, {time.strftime('%Y-%m-%d')}.",
            f"Settings changed from the defaults: {', '.join(args.overrides) or 'none'}.",
            "",
            "| method | DSB score | AP@0.5 | F1@0.5 | s / image |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    write_text(args.out, report)
    print(report)


if __name__ == "__main__":
    main()
