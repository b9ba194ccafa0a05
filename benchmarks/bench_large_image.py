"""Peak memory and time of one large image through `nucflow predict` (the batch code path).

Usage (from the repository root; one method per process so each peak is its own):
    uv run python benchmarks/bench_large_image.py --method fast --side 4000 \
        --out benchmarks/results/large_image.md

The image is a bundled sample tiled to SIDE x SIDE, so its nuclei keep their real size and
the image really holds thousands of them. The result line is appended to `--out`.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from workflow.batch import predict_folder
from workflow.config import load_config
from workflow.core.files import label_path
from workflow.core.images import read_image, to_rgb8
from workflow.core.labels import read_labels
from workflow.core.precision import dtype_name, precision_dtype
from workflow.core.runtime import cpu_model, resolve_device

SAMPLE = Path("examples/images/0402a81e75262469925ea893b6706183832e85324f7b1e08e634129f5d522cdd.png")


def peak_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="fast", choices=["classic", "fast", "full"])
    parser.add_argument("--side", type=int, default=4000)
    parser.add_argument("--source", type=Path, default=SAMPLE)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/large_image.md"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    tile = to_rgb8(read_image(args.source))
    reps = (-(-args.side // tile.shape[0]), -(-args.side // tile.shape[1]), 1)
    image = np.tile(tile, reps)[: args.side, : args.side]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        cv2.imwrite(str(folder / "large.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        del image
        cfg = load_config(overrides=[f"method={args.method}", "output.report=false"])
        before = peak_mib()
        started = time.monotonic()
        status = predict_folder(folder, Path(tmp) / "out", cfg)
        seconds = time.monotonic() - started
        nuclei = int(read_labels(label_path(Path(tmp) / "out", "large")).max()) if status == 0 else 0
    precision = dtype_name(precision_dtype(cfg.precision, resolve_device(cfg.device)))
    line = (
        f"| {args.method} | {args.side} x {args.side} | {cfg.tiling.tile_size} | {nuclei} | {seconds:.0f} | {before:.0f} | {peak_mib():.0f} |"
        f" {cpu_model()}, {args.threads} threads, {precision}, {time.strftime('%Y-%m-%d')} |"
    )
    if not args.out.is_file():
        args.out.write_text(
            "# One large image through `nucflow predict`\n\n"
            "| method | image | tile (size-normalised px) | nuclei | seconds | peak MiB before | peak MiB overall | machine |\n"
            "|---|---|---|---|---|---|---|---|\n"
        )
    with args.out.open("a") as handle:
        handle.write(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
