"""Speed of the DSB metric on a 1000 x 1000 image with 500 nuclei (one run, machine named).

Usage: uv run python benchmarks/bench_metric.py [--out benchmarks/results/metric.md]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from skimage.segmentation import expand_labels

from workflow.core.files import write_text
from workflow.core.metrics import score_image
from workflow.core.runtime import cpu_model


def nuclei(rng: np.random.Generator, count: int = 500, size: int = 1000) -> np.ndarray:
    """`count` seeds grown into touching blobs of about 16 px radius."""
    labels = np.zeros((size, size), np.int32)
    ys, xs = rng.integers(0, size, count), rng.integers(0, size, count)
    labels[ys, xs] = np.arange(1, count + 1)
    return expand_labels(labels, 16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/metric.md"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    truth = nuclei(rng)
    pred = np.roll(truth, 3, axis=1)
    score_image(truth, pred)  # warm-up
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        score = score_image(truth, pred)
        runs.append(time.perf_counter() - started)
    report = (
        f"# DSB metric speed\n\nMachine: {cpu_model()}, Python {sys.version.split()[0]}; "
        f"1000 x 1000 labels, {truth.max()} nuclei; best of 5: {min(runs) * 1000:.0f} ms, "
        f"median {np.median(runs) * 1000:.0f} ms (score {score.dsb:.3f}).\n"
    )
    write_text(args.out, report)
    print(report)


if __name__ == "__main__":
    main()
