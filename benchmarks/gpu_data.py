"""Carry the training data to a device machine inside its 64 MiB transfer limit, and back out there.

    python benchmarks/gpu_data.py pack ../shared/data/dsb2018 .gpu/data --budget-mb 26
    python benchmarks/gpu_data.py unpack .gpu/data /tmp/dsb2018        # on the device machine

`pack` writes every image as lossless WebP (gray when its channels are equal, alpha dropped when
opaque: what nucflow reads anyway); while the images are over `--budget-mb`, the ones whose JPEG
(quality 97) saves most go as JPEG instead. `carried.json` lists which went lossy and the largest
pixel error. Masks, split.csv and types.csv are copied as they are. `unpack` decodes everything back
to a data folder (images/*.png, masks/, split.csv, types.csv) that the training commands read.
"""

from __future__ import annotations

import argparse
import json
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

JPEG_QUALITY = 97


def _reduce(image: np.ndarray) -> np.ndarray:
    """Drop an opaque alpha channel and repeated gray channels (lossless for what nucflow reads)."""
    if image.ndim == 3 and image.shape[2] == 4 and (image[..., 3] == 255).all():
        image = image[..., :3]
    if image.ndim == 3 and image.shape[2] == 3 and (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all():
        image = image[..., 0]
    return image


def _encode(path: Path) -> tuple[str, bytes, bytes, int]:
    image = _reduce(cv2.imread(str(path), cv2.IMREAD_UNCHANGED))
    lossless = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()
    lossy = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes()
    decoded = cv2.imdecode(np.frombuffer(lossy, np.uint8), cv2.IMREAD_UNCHANGED)
    error = int(np.abs(decoded.astype(np.int16) - image.astype(np.int16)).max())
    return path.stem, lossless, lossy, error


def pack(data: Path, out: Path, budget_mb: float) -> None:
    paths = sorted((data / "images").glob("*.png"))
    with ProcessPoolExecutor() as pool:
        encoded = list(pool.map(_encode, paths, chunksize=8))
    chosen = {stem: ("webp", lossless) for stem, lossless, _, _ in encoded}
    total = sum(len(blob) for _, blob in chosen.values())
    lossy, worst = [], 0
    for stem, lossless, jpeg, error in sorted(encoded, key=lambda e: len(e[2]) - len(e[1])):
        if total <= budget_mb * 1e6 or len(jpeg) >= len(lossless):
            break
        chosen[stem], total = ("jpg", jpeg), total - len(lossless) + len(jpeg)
        lossy.append(stem)
        worst = max(worst, error)
    if total > budget_mb * 1e6:
        raise SystemExit(f"{total / 1e6:.1f} MB even with JPEG: raise --budget-mb")
    if out.exists():
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True)
    for stem, (suffix, blob) in chosen.items():
        (out / "images" / f"{stem}.{suffix}").write_bytes(blob)
    shutil.copytree(data / "masks", out / "masks")
    for name in ("split.csv", "types.csv"):
        shutil.copy2(data / name, out / name)
    record = {"source": data.name, "images": len(chosen), "jpeg_quality": JPEG_QUALITY, "lossy": sorted(lossy), "largest_pixel_error": worst}
    (out / "carried.json").write_text(json.dumps(record, indent=1))
    print(f"{len(chosen)} images, {total / 1e6:.1f} MB ({len(lossy)} as JPEG q{JPEG_QUALITY}, largest pixel error {worst})")


def _decode(args: tuple[Path, Path]) -> None:
    source, target = args
    image = cv2.imread(str(source), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(target / f"{source.stem}.png"), image)


def unpack(packed: Path, out: Path) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    jobs = [(p, out / "images") for p in sorted((packed / "images").iterdir())]
    with ProcessPoolExecutor() as pool:
        list(pool.map(_decode, jobs, chunksize=8))
    shutil.copytree(packed / "masks", out / "masks", dirs_exist_ok=True)
    for name in ("split.csv", "types.csv", "carried.json"):
        shutil.copy2(packed / name, out / name)
    print(f"unpacked {len(jobs)} images into {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    packer = commands.add_parser("pack")
    packer.add_argument("data", type=Path)
    packer.add_argument("out", type=Path)
    packer.add_argument("--budget-mb", type=float, default=26.0)
    unpacker = commands.add_parser("unpack")
    unpacker.add_argument("packed", type=Path)
    unpacker.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.data, args.out, args.budget_mb)
    else:
        unpack(args.packed, args.out)


if __name__ == "__main__":
    main()
