"""The physical pixel size of an image file (micrometres per pixel), from the metadata microscopes write.

Read from, in this order: OME-XML (`PhysicalSizeX` and its unit), ImageJ's description (`unit=`) with
the TIFF resolution tags, and plain resolution tags in centimetres. Resolution in inches is a print
setting (72 or 300 dpi written by any image program), not a calibration, and is ignored; so are
files other than TIFF. None means unknown: measurements then stay in pixels.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import tifffile

from workflow.core.files import MICROSCOPE_SUFFIXES

UM_PER_UNIT = {"um": 1.0, "µm": 1.0, "μm": 1.0, "micron": 1.0, "microns": 1.0, "\\u00b5m": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}
CENTIMETER = 3  # TIFF ResolutionUnit


def read_pixel_size(path: str | os.PathLike) -> float | None:
    """Micrometres per pixel along x from the file's metadata, or None when it records none."""
    path = Path(path)
    if path.suffix.lower() in MICROSCOPE_SUFFIXES:
        return _bioio_pixel_size(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome and tif.ome_metadata:
                size = _ome_pixel_size(tif.ome_metadata)
                if size is not None:
                    return size
            page = tif.pages.first
            pixels_per_unit = _x_resolution(page)
            if pixels_per_unit is None:
                return None
            if tif.is_imagej and tif.imagej_metadata and "unit" in tif.imagej_metadata:
                return _checked(UM_PER_UNIT.get(str(tif.imagej_metadata["unit"]).strip().lower()), pixels_per_unit)
            unit = page.tags.get("ResolutionUnit")
            if unit is not None and int(unit.value) == CENTIMETER:
                return _checked(1e4, pixels_per_unit)
    except Exception:  # noqa: BLE001 - unreadable metadata means an unknown calibration, never a failed image
        return None
    return None


def _bioio_pixel_size(path: Path) -> float | None:
    from workflow.core.images import bioio_image

    try:
        size = bioio_image(path).physical_pixel_sizes.X  # bioio gives micrometres
    except Exception:  # noqa: BLE001 - an unknown calibration, never a failed image
        return None
    return float(size) if size and math.isfinite(size) and size > 0 else None


def _x_resolution(page) -> float | None:
    tag = page.tags.get("XResolution")
    if tag is None:
        return None
    numerator, denominator = tag.value
    return numerator / denominator if denominator else None


def _checked(um_per_unit: float | None, pixels_per_unit: float) -> float | None:
    if um_per_unit is None or not pixels_per_unit > 0:
        return None
    size = um_per_unit / pixels_per_unit
    return size if math.isfinite(size) and size > 0 else None


def _ome_pixel_size(xml: str) -> float | None:
    pixels = re.search(r"<(?:\w+:)?Pixels\b[^>]*>", xml)
    if pixels is None:
        return None
    size = re.search(r'\bPhysicalSizeX="([^"]+)"', pixels.group(0))
    unit = re.search(r'\bPhysicalSizeXUnit="([^"]+)"', pixels.group(0))
    if size is None:
        return None
    try:
        value = float(size.group(1))
    except ValueError:
        return None
    return _checked(UM_PER_UNIT.get(unit.group(1).lower() if unit else "µm"), 1 / value if value > 0 else 0.0)


def calibration_tags(pixel_size: float | None, imagej: bool = True) -> dict:
    """tifffile.imwrite arguments that record `pixel_size` (um per pixel): ImageJ's `unit=um` with the
    resolution in pixels per micrometre, so that Fiji shows micrometres; without `imagej` (a pixel type
    ImageJ lacks, such as uint32) plain resolution tags in pixels per centimetre."""
    if pixel_size is None:
        return {}
    if imagej:
        return {"imagej": True, "resolution": (1 / pixel_size, 1 / pixel_size), "metadata": {"unit": "um"}}
    return {"resolution": (1e4 / pixel_size, 1e4 / pixel_size), "resolutionunit": "CENTIMETER"}
