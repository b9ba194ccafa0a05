"""Images per minute of `nucflow predict` on a folder, with --jobs 1 and --jobs 2 (issue 25: throughput).

Usage (from the repository root):
    uv run python benchmarks/bench_throughput.py ../shared/data/dsb2018 --images 64 --jobs 1 2 --methods fast

It prints the report (`--out FILE` writes it too). `benchmarks/results/throughput.md` keeps every session's
figures: add a new one there as a section, do not overwrite it.

Each run is the command a user types (`nucflow predict FOLDER -o OUT --jobs N`), timed from start to exit:
the models' loading (once per worker), every image read, segmented and written, and the report. The
folder holds the first `--images` val images (split.csv order), linked, not copied; each run writes into a
fresh output folder, so nothing is skipped as done before. The labels of the runs are compared: more
workers must not change a single label.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from workflow.core.files import list_images, write_text
from workflow.core.labels import read_labels
from workflow.core.runtime import cpu_model
from workflow.training_data import read_split


def link_val_images(data: Path, count: int, folder: Path) -> list[str]:
    """Symlinks to the first `count` val images of `data` in `folder`; their stems."""
    split = read_split(data)
    stems = [s for s in split if split[s] == "val"][:count]
    folder.mkdir(parents=True)
    for stem in stems:
        (folder / f"{stem}.png").symlink_to((data / "images" / f"{stem}.png").resolve())
    return stems


def timed_predict(images: Path, out: Path, method: str, jobs: int, overrides: list[str]) -> float:
    """Wall-clock seconds of one `nucflow predict` command."""
    command = [sys.executable, "-m", "workflow.cli", "predict", str(images), "-o", str(out), "--method", method, "--jobs", str(jobs)]
    command += [arg for setting in overrides for arg in ("--set", setting)]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def same_labels(first: Path, second: Path) -> bool:
    """Whether two runs wrote identical label images for every image."""
    names = sorted(p.name for p in (first / "labels").glob("*.tif"))
    if names != sorted(p.name for p in (second / "labels").glob("*.tif")):
        return False
    return all(np.array_equal(read_labels(first / "labels" / n), read_labels(second / "labels" / n)) for n in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder with images/ and split.csv")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--methods", nargs="+", choices=("classic", "fast", "full"), default=["fast"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--out", type=Path, help="markdown report (default: print only)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="nucflow-throughput-"))
    try:
        stems = link_val_images(args.data, args.images, work / "images")
        rows, identical = [], []
        for method in args.methods:
            outputs = []
            for jobs in args.jobs:
                out = work / f"{method}-jobs{jobs}"
                seconds = timed_predict(work / "images", out, method, jobs, args.overrides)
                written = len(list_images(out / "labels"))
                rows.append(f"| {method} | {jobs} | {written} | {seconds:.0f} | {60 * written / seconds:.1f} |")
                print(rows[-1], flush=True)
                outputs.append(out)
            identical += [
                f"{method}: {'identical' if same_labels(outputs[0], o) else 'DIFFERENT'} labels with --jobs {j}" for j, o in zip(args.jobs[1:], outputs[1:])
            ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = "\n".join(
        [
            f"# Throughput of `nucflow predict` on {len(stems)} val images of {args.data.name}",
            "",
            f"Machine: {cpu_model()}, {os.cpu_count()} cores (--jobs 1: all of them to one process's torch threads; --jobs N: shared among N workers); "
            f"{time.strftime('%Y-%m-%d')}. "
            f"Settings changed from the defaults: {', '.join(args.overrides) or 'none'}. Wall clock of the whole command.",
            "",
            "| method | --jobs | images | seconds | images / minute |",
            "|---|---|---|---|---|",
            *rows,
            "",
            *[f"- {line}" for line in identical],
            "",
        ]
    )
    if args.out:
        write_text(args.out, report)
    print(report)


if __name__ == "__main__":
    main()
