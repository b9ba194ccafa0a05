"""File conventions in one place: which files are images, output names, atomic writes.

A leaf module: it imports no stage, so every part of nucflow may use it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")
LABEL_SUFFIX = ".tif"


class InputError(Exception):
    """A user-facing problem with an input file or folder; its message is one line."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


def is_image_file(path: Path) -> bool:
    """True for a regular, non-hidden file whose suffix is a supported image format, or a broken
    link with such a name (listed, so that reading it fails with a message naming it, not skipped)."""
    wanted = not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES
    return wanted and (path.is_file() or (path.is_symlink() and not path.exists()))


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Sorted image files directly in `folder`; a clear error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder (expected a folder of images)")
    try:
        images = sorted(p for p in folder.iterdir() if is_image_file(p))
    except OSError as error:
        raise InputError(folder, f"cannot be listed ({error.strerror or error})") from None
    if not images:
        raise InputError(folder, f"no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    stems = [p.stem for p in images]
    duplicated = sorted({s for s in stems if stems.count(s) > 1})
    if duplicated:
        raise InputError(folder, f"several images share the name {duplicated[0]!r}; outputs would collide")
    return images


def label_path(out_dir: str | os.PathLike, stem: str) -> Path:
    """Where the label image for input `stem` goes: `<out_dir>/labels/<stem>.tif`."""
    return Path(out_dir) / "labels" / f"{stem}{LABEL_SUFFIX}"


def measurement_path(out_dir: str | os.PathLike, stem: str) -> Path:
    """Where one image's per-nucleus table goes: `<out_dir>/measurements/<stem>.csv`."""
    return Path(out_dir) / "measurements" / f"{stem}.csv"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only on success.

    A run killed midway therefore never leaves a half-written output that a rerun
    would mistake for a finished one.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes owner-only files; outputs are for sharing
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_partial_files(folder: str | os.PathLike) -> int:
    """Delete the temporary files of `atomic_path` that a killed run left under `folder`; returns how many."""
    stale = [p for p in Path(folder).rglob(".*.part") if p.is_file()]
    for path in stale:
        path.unlink()
    return len(stale)


def csv_text(header: tuple[str, ...], rows: Iterable[tuple]) -> str:
    """CSV text (newline-terminated rows) of a header and rows: every table nucflow writes."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write `data` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path`, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
