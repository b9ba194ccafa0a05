"""What one Mask R-CNN pass costs on the CPU, part by part, and whether test-time views run faster batched (issue 25).

Usage (from the repository root):
    uv run python benchmarks/bench_mrcnn_pass.py ../shared/data/dsb2018 --threads 2 --out benchmarks/results/mrcnn_pass.md

One val image of the data folder (the first in split.csv order, or `--image STEM`), resized to square sides of
`--sizes` px, goes through the shipped presegmenter with the shipped thresholds:
1. part by part (forward hooks on the backbone, RPN and ROI heads): median seconds of `--repeat` passes;
2. the full path's eight views (the image, its mirrors, its transpose and their mirrors) as eight passes, as two
   batches of four and as one batch of eight, alternated `--repeat` times (medians), with the detections compared.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from pathlib import Path

import cv2
import torch
from bench_runtimes import median_seconds

from presegment.config import DetectConfig
from presegment.predict import configure
from presegment.storage import DEFAULT_MODEL, load_model
from workflow.core.files import list_images, write_text
from workflow.core.images import read_input, to_rgb8
from workflow.core.modelfiles import for_inference
from workflow.core.runtime import device_name
from workflow.core.tensors import image_tensor
from workflow.core.views import view_image
from workflow.training_data import read_split

VIEWS = ("", "h", "v", "hv", "t", "th", "tv", "thv")
PARTS = ("backbone", "rpn", "roi_heads")


def timed_parts(model: torch.nn.Module) -> dict[str, list[float]]:
    """Seconds of each part of `model` per pass, appended by forward hooks."""
    seconds: dict[str, list[float]] = defaultdict(list)
    started: dict[str, float] = {}
    for name in PARTS:
        part = getattr(model, name)
        part.register_forward_pre_hook(lambda module, inputs, name=name: started.__setitem__(name, time.perf_counter()))
        part.register_forward_hook(lambda module, inputs, output, name=name: seconds[name].append(time.perf_counter() - started[name]))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="folder with images/ and split.csv")
    parser.add_argument("--image", help="image stem (default: the first val image)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 384, 640, 896])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = for_inference(load_model(DEFAULT_MODEL, "cpu")[0], True)
    configure(model, DetectConfig())
    stem = args.image or next(s for s, subset in read_split(args.data).items() if subset == "val")
    path = next(p for p in list_images(args.data / "images") if p.stem == stem)
    image = to_rgb8(read_input(path))
    seconds = timed_parts(model)

    parts_rows, batch_rows = [], []
    with torch.inference_mode():
        for side in args.sizes:
            square = cv2.resize(image, (side, side), interpolation=cv2.INTER_LINEAR)
            tensors = [image_tensor(view_image(square, view) if view else square, "cpu") for view in VIEWS]
            seconds.clear()
            total = median_seconds(lambda: model(tensors[:1]), args.repeat)
            found = len(model(tensors[:1])[0]["scores"])
            share = {name: statistics.median(seconds[name]) for name in PARTS}
            parts_rows.append(f"| {side} | {found} | {total:.2f} | " + " | ".join(f"{share[name]:.2f}" for name in PARTS) + " |")

            ways = {
                "8 passes": lambda: [model([t]) for t in tensors],
                "2 batches of 4": lambda: [model(tensors[:4]), model(tensors[4:])],
                "1 batch of 8": lambda: model(tensors),
            }
            times: dict[str, list[float]] = defaultdict(list)
            for _ in range(args.repeat):  # alternated, so a slow spell of the machine hits every way alike
                for way, call in ways.items():
                    started = time.perf_counter()
                    call()
                    times[way].append(time.perf_counter() - started)
            one_by_one = [model([t])[0] for t in tensors]
            batched = model(tensors)
            same = all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(one_by_one, batched))
            batch_rows.append(f"| {side} | " + " | ".join(f"{statistics.median(times[way]):.2f}" for way in ways) + f" | {'yes' if same else 'no'} |")

    lines = [
        "# One Mask R-CNN pass on the CPU, and the eight views batched",
        "",
        f"Machine: {device_name(torch.device('cpu'))}; {time.strftime('%Y-%m-%d')}. "
        f"`benchmarks/bench_mrcnn_pass.py` on val image `{stem[:10]}` resized to squares; shipped presegmenter.",
        "",
        "| side px | detections | s / pass | backbone + FPN | RPN | ROI heads (box + mask) |",
        "|---|---|---|---|---|---|",
        *parts_rows,
        "",
        "The eight test-time views of the full path's first scale:",
        "",
        "| side px | 8 passes s | 2 batches of 4 s | 1 batch of 8 s | same boxes batched |",
        "|---|---|---|---|---|",
        *batch_rows,
    ]
    report = "\n".join(lines) + "\n"
    if args.out:
        write_text(args.out, report)
    print(report)


if __name__ == "__main__":
    main()
