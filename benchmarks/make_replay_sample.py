"""Make a replay sample for `nucflow train` (`workflow/replay.py`): annotated crops of training images.

Usage (from the repository root):
    uv run python benchmarks/make_replay_sample.py ../shared/data/dsb2018 workflow/replay_sample
makes the sample shipped with nucflow: crops of the train images of the data the shipped models learned
from, at the shipped presegmenter's nucleus size, drawn evenly over the image types of types.csv.
The leave-type-out benchmark (`bench_new_type.py --adapt`) makes its own from the images its models saw.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from presegment.storage import DEFAULT_MODEL
from workflow.core.modelfiles import read_card
from workflow.replay import make_replay_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder with images/, masks/, split.csv (train rows are used) and optional types.csv")
    parser.add_argument("out", type=Path, help="folder to write images/, masks/ and replay.json into")
    parser.add_argument("--count", type=int, default=64, help="number of crops (one per image)")
    parser.add_argument("--target", type=float, help="nucleus size in px (default: the shipped presegmenter's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    target = args.target or float(read_card(DEFAULT_MODEL)["target_diameter"])
    print(make_replay_sample(args.data, args.out, args.count, target, args.seed))


if __name__ == "__main__":
    main()
