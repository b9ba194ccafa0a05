"""`nucflow import-kaggle`: a Kaggle DSB 2018 style folder (`<id>/images/<id>.png`, `<id>/masks/*.png`,
one PNG per nucleus) converted into the layout nucflow trains on: `images/`, `masks/` (uint16 label
TIFFs) and `split.csv` (train / val)."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np

from workflow.core.files import InputError, atomic_path, write_text
from workflow.core.labels import import_kaggle_folder, write_labels

log = logging.getLogger(__name__)


def kaggle_samples(source: Path) -> list[Path]:
    """The sample folders of `source`: those holding `images/<their name>.png`."""
    try:
        folders = sorted(p for p in source.iterdir() if p.is_dir())
    except OSError as error:
        raise InputError(source, f"cannot list the folder ({error.strerror or error})") from None
    samples = [p for p in folders if (p / "images" / f"{p.name}.png").is_file()]
    if not samples:
        raise InputError(source, "no Kaggle samples here (expected <id>/images/<id>.png and <id>/masks/*.png)")
    return samples


def validation_stems(stems: list[str], fraction: float, seed: int) -> set[str]:
    """A seeded random share `fraction` of `stems` (at least one when there are two or more)."""
    if fraction <= 0 or len(stems) < 2:
        return set()
    count = min(len(stems) - 1, max(1, round(fraction * len(stems))))
    return set(np.random.default_rng(seed).choice(sorted(stems), count, replace=False).tolist())


def import_kaggle(source: str | os.PathLike, out_dir: str | os.PathLike, val_fraction: float = 0.1, seed: int = 0) -> int:
    """Convert every sample of `source` into `out_dir`; finished samples are kept on a rerun, a bad sample is
    reported and left out. Returns the exit status (1 when a sample failed)."""
    source, out_dir = Path(source), Path(out_dir)
    if not 0 <= val_fraction < 1:
        raise InputError(None, f"--val-fraction must be in [0, 1), not {val_fraction}")
    samples = kaggle_samples(source)
    done, failed = [], []
    for sample in samples:
        image_out, mask_out = out_dir / "images" / f"{sample.name}.png", out_dir / "masks" / f"{sample.name}.tif"
        if not (image_out.is_file() and mask_out.is_file()):
            try:
                _, labels = import_kaggle_folder(sample)
            except InputError as error:
                log.error("%s", error)
                failed.append(sample.name)
                continue
            write_labels(mask_out, labels)
            image_out.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(image_out) as tmp:
                shutil.copyfile(sample / "images" / f"{sample.name}.png", tmp)
        done.append(sample.name)
    val = validation_stems(done, val_fraction, seed)
    write_text(out_dir / "split.csv", "image_id,subset\n" + "".join(f"{s},{'val' if s in val else 'train'}\n" for s in done))
    log.info(
        "imported %d of %d samples into %s (%d train, %d val)%s",
        len(done),
        len(samples),
        out_dir,
        len(done) - len(val),
        len(val),
        f"; {len(failed)} failed" if failed else "",
    )
    return 1 if failed else 0
