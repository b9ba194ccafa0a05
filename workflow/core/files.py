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

MICROSCOPE_SUFFIXES = (".czi", ".nd2", ".lif")  # read through bioio readers (the `formats` extra)
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg") + MICROSCOPE_SUFFIXES
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
    _refuse_shared_names(folder, images)
    return images


GLOB_CHARACTERS = set("*?[")


def gather_images(source: str | os.PathLike) -> list[Path]:
    """The images a command works on: every image of a folder, one image file, or the image files a
    glob pattern (``"plate1/*_DAPI.tif"``, ``"**"`` for sub-folders) matches; sorted, with a clear error
    when there are none or two share a name (their outputs would collide)."""
    text = str(source)
    if Path(text).is_dir():
        return list_images(text)
    if Path(text).exists() or Path(text).is_symlink():
        path = Path(text)
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise InputError(path, f"unknown image format {path.suffix or '(no suffix)'!r}; use one of {', '.join(IMAGE_SUFFIXES)}")
        return [path]
    if not GLOB_CHARACTERS & set(text):
        raise InputError(text, "not found (expected a folder of images, an image file or a glob pattern such as 'dir/*.tif')")
    anchor = Path(text).anchor or "."
    pattern = str(Path(text).relative_to(anchor)) if Path(text).is_absolute() else text
    images = sorted(p for p in Path(anchor).glob(pattern) if is_image_file(p))
    if not images:
        raise InputError(text, f"the pattern matches no image ({', '.join(IMAGE_SUFFIXES)})")
    _refuse_shared_names(text, images)
    return images


def _refuse_shared_names(source: str | os.PathLike, images: list[Path]) -> None:
    stems = [p.stem for p in images]
    duplicated = sorted({s for s in stems if stems.count(s) > 1})
    if duplicated:
        raise InputError(source, f"several images share the name {duplicated[0]!r}; outputs would collide")


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
