"""The replay sample: annotated crops of the shipped models' own training data.

`nucflow train` mixes them into fine-tuning (so adapting to new images does not forget the old
ones) and redraws them in the colours of the user's images (`style_transfer.colour`): annotated
pairs in the new style without any annotation by the user. A sample ships with nucflow
(`workflow/replay_sample/`, made by `benchmarks/make_replay_sample.py` from the training images of
the shipped models); `adapt.replay` points to another one, e.g. made from a model's own data.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from workflow.core.files import InputError, list_images, write_json
from workflow.core.images import InputConfig, read_input, resize_image, scaled_shape, to_rgb8
from workflow.core.labels import read_labels, resize_labels, write_labels
from workflow.core.measure import write_png
from workflow.training_data import Pair, find_mask, load_pair, normalise_pair, read_split, read_types

SHIPPED_REPLAY = Path(__file__).parent / "replay_sample"
REPLAY_CARD = "replay.json"


def balanced_choice(stems: list[str], types: list[str] | None, count: int, rng: np.random.Generator) -> list[str]:
    """Up to `count` of `stems`, drawn in turn from each type (shuffled within a type), so rare
    types are as present as common ones while they last."""
    by_type: dict[str, list[str]] = defaultdict(list)
    for stem, kind in zip(stems, types or ["all"] * len(stems)):
        by_type[kind].append(stem)
    queues = [list(rng.permutation(group)) for _, group in sorted(by_type.items())]
    chosen: list[str] = []
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(str(queue.pop()))
    return chosen


def densest_crop(labels: np.ndarray, size: int, rng: np.random.Generator, candidates: int = 16) -> tuple[slice, slice]:
    """The window of `size` px (or the whole image when smaller) with the most nucleus pixels of a few random ones."""
    height, width = labels.shape
    best, best_count = (slice(0, size), slice(0, size)), -1
    for _ in range(candidates):
        y, x = int(rng.integers(0, max(1, height - size + 1))), int(rng.integers(0, max(1, width - size + 1)))
        window = (slice(y, y + size), slice(x, x + size))
        count = int(np.count_nonzero(labels[window]))
        if count > best_count:
            best, best_count = window, count
    return best


def make_replay_sample(data_dir: str | os.PathLike, out_dir: str | os.PathLike, count: int, target: float, seed: int = 0, crop: int = 256) -> Path:
    """Write `count` annotated crops of the train images of `data_dir` (images/, masks/, split.csv,
    optional types.csv: drawn evenly over the types) at nucleus size `target` into `out_dir`."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    split = read_split(data_dir)
    images = {p.stem: p for p in list_images(data_dir / "images") if split.get(p.stem, "train") == "train"}
    stems = sorted(images)
    rng = np.random.default_rng(seed)
    kinds = read_types(data_dir, stems)
    chosen = balanced_choice(stems, kinds, count, rng)
    type_of = dict(zip(stems, kinds or ["unknown"] * len(stems)))
    for stem in chosen:
        image, labels = normalise_pair(*load_pair(images[stem], find_mask(data_dir / "masks", stem)), target)
        window = densest_crop(labels, crop, rng)
        write_png(out_dir / "images" / f"{stem}.png", image[window])
        write_labels(out_dir / "masks" / f"{stem}.tif", labels[window])
    card = {
        "source": data_dir.name,
        "subset": "train",
        "images": len(chosen),
        "types": dict(sorted(Counter(type_of[stem] for stem in chosen).items())),
        "target_diameter": target,
        "crop_size": crop,
        "seed": seed,
    }
    write_json(out_dir / REPLAY_CARD, card)
    return out_dir


def load_replay(folder: str | os.PathLike, target: float, norm: InputConfig | None = None) -> list[Pair]:
    """The pairs of a replay sample as the input settings `norm` make them, rescaled from the sample's nucleus size to `target`."""
    folder = Path(folder)
    if not (folder / REPLAY_CARD).is_file():
        raise InputError(folder, f"adapt.replay: not a replay sample (no {REPLAY_CARD}; make one with benchmarks/make_replay_sample.py)")
    factor = target / float(json.loads((folder / REPLAY_CARD).read_text())["target_diameter"])
    pairs = []
    for path in list_images(folder / "images"):
        image, labels = to_rgb8(read_input(path, norm), norm), read_labels(find_mask(folder / "masks", path.stem))
        if factor != 1.0:
            shape = scaled_shape(image.shape, factor)
            image, labels = resize_image(image, shape), resize_labels(labels, shape)
        pairs.append((image, labels))
    return pairs
