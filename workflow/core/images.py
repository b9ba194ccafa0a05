"""Reading microscopy images and converting them to the networks' input.

Array layout returned by `read_image`: 2-D ``(H, W)`` for gray images, 3-D ``(H, W, C)``
with C = 3 (RGB) or 4 (RGBA) for colour images, channels in RGB order; the dtype is the
file's own (uint8 or uint16 usually; other numeric types are kept as they are).
`to_rgb8` turns any of these into the one input the networks see: ``(H, W, 3)`` uint8.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import tifffile

from workflow.core.files import IMAGE_SUFFIXES, MICROSCOPE_SUFFIXES, InputError, atomic_path

STACK_AXES = set("TZ")  # tifffile axis letters of a stack's planes (time points, focal planes)
KNOWN_AXES = STACK_AXES | set("CSYX")  # other letters (Q, I, R: tifffile's "unknown", "sequence", ...) need --axes


def read_image(path: str | os.PathLike, channel: int | None = None, axes: str | None = None) -> np.ndarray:
    """Read one 2-D image (png, tif/tiff, bmp, jpg) as (H, W) or (H, W, 3|4), RGB order; with
    `channel`, that channel alone as (H, W) (a TIFF's C axis, or a colour image's R, G, B, A);
    `axes` names a TIFF's dimensions where its metadata cannot (e.g. "CYX").

    Raises `InputError` with a one-line message for a missing, empty, truncated, non-image or
    multi-plane (3-D stack) file, and for a TIFF with a channel (C) axis read without `channel`.
    """
    planes, stack_axes = read_planes(path, channel, axes)
    if stack_axes:
        raise InputError(path, f"is a stack of {planes.shape[: len(stack_axes)]} planes (axes {stack_axes}); give one 2-D image per file")
    return planes


def read_input(path: str | os.PathLike, norm: InputConfig | None = None) -> np.ndarray:
    """`read_image` with the input settings' channel and axes (None: the defaults)."""
    norm = norm or InputConfig()
    return read_image(path, norm.channel, norm.axes)


def read_planes(path: str | os.PathLike, channel: int | None = None, axes: str | None = None) -> tuple[np.ndarray, str]:
    """Read an image or a Z/T stack: (array, stack axes). The array is (*stack, H, W) or (*stack, H, W, 3|4)
    with the stack's axes first in the file's order ("TZ", "Z", ...; "" for a single plane); each plane
    is what `read_image` returns. Stacks come from TIFF metadata (ImageJ, OME) or `axes`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise InputError(path, f"unknown image format {suffix or '(no suffix)'!r}; use one of {', '.join(IMAGE_SUFFIXES)}")
    if path.is_symlink() and not path.exists():
        raise InputError(path, f"broken symbolic link (its target {os.readlink(path)} does not exist)")
    if not path.exists():
        raise InputError(path, "file not found")
    if not path.is_file():
        raise InputError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise InputError(path, "empty file (0 bytes)")
    if axes is not None and suffix not in (".tif", ".tiff"):
        raise InputError(path, "--axes applies to TIFF files only")
    try:
        if suffix in (".tif", ".tiff"):
            image, stack_axes = _read_tiff(path, channel is not None, axes)
        elif suffix in MICROSCOPE_SUFFIXES:
            image, stack_axes = _read_microscope_file(path, channel is not None)
        else:
            image, stack_axes = _read_raster(path), ""
    except OSError as error:
        raise InputError(path, f"cannot be read ({error.strerror or error})") from None
    if not stack_axes:
        return _validate(path, image if channel is None else _one_channel(path, image, channel)), ""
    stack_shape = image.shape[: len(stack_axes)]
    planes = [image[index] for index in np.ndindex(*stack_shape)]
    planes = [_validate(path, plane if channel is None else _one_channel(path, plane, channel)) for plane in planes]
    return np.stack(planes).reshape(stack_shape + planes[0].shape), stack_axes


def _read_raster(path: Path) -> np.ndarray:
    """PNG/BMP/JPEG through OpenCV (keeps 16-bit and alpha), converted to RGB order."""
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(path, "cannot be decoded: not an image, or a corrupt/truncated file")
    if path.suffix.lower() == ".png" and not _png_is_complete(data):
        raise InputError(path, "truncated PNG (the file ends before its last chunk)")
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image


def _png_is_complete(data: np.ndarray) -> bool:
    """A complete PNG ends with the 12-byte IEND chunk; OpenCV decodes truncated ones silently."""
    return data.size >= 12 and bytes(data[-12:-4]) == b"\x00\x00\x00\x00IEND"


def _one_channel(path: Path, image: np.ndarray, channel: int) -> np.ndarray:
    """Channel `channel` of an (H, W, C) image (colour, or a TIFF's channels); a gray image has only channel 0."""
    count = image.shape[2] if image.ndim == 3 else 1
    if not 0 <= channel < count:
        raise InputError(path, f"--channel {channel}: the image has {count} channel{'s' if count > 1 else ''} (0..{count - 1})")
    return image[:, :, channel] if image.ndim == 3 else image


def _read_tiff(path: Path, channel_given: bool = False, axes: str | None = None) -> tuple[np.ndarray, str]:
    """TIFF through tifffile: (array, stack axes) with the stack axes (Z, T, ...) first, then Y, X and
    channels (C, or samples) last; a C axis is refused unless a channel is to be taken from it.
    `axes` (one letter per dimension, e.g. "ZYX" or "CYX") replaces what the metadata says."""
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            image = series.asarray()
            axes_read = series.axes
    except OSError:
        raise
    except Exception as error:  # tifffile raises many types for corrupt files
        raise InputError(path, f"cannot be read as TIFF ({type(error).__name__}: {error})") from None
    if axes is not None:
        axes_read = _checked_axes(path, axes.upper(), image.shape)
    return _arranged(path, image, axes_read, channel_given)


def _read_microscope_file(path: Path, channel_given: bool) -> tuple[np.ndarray, str]:
    """CZI, ND2, LIF through bioio (optional): (array, stack axes) as `_read_tiff` gives them, the first scene."""
    return _arranged(path, bioio_image(path).get_image_data("TZCYX"), "TZCYX", channel_given)


def _arranged(path: Path, image: np.ndarray, axes: str, channel_given: bool) -> tuple[np.ndarray, str]:
    """`image` with dimensions `axes` as (array, stack axes): axes of length 1 dropped, the stack axes
    (T, Z) first, then Y, X and channels (C, or samples) last. Unknown axes, several channel axes and a
    C axis without a channel to take from it are refused (never a silent guess)."""
    kept = [i for i, (a, n) in enumerate(zip(axes, image.shape)) if n > 1 or a in "YX"]
    image = image.reshape([image.shape[i] for i in kept])
    axes = "".join(axes[i] for i in kept)
    unknown = [a for a in axes if a not in KNOWN_AXES]
    if unknown:
        size = image.shape[axes.index(unknown[0])]
        raise InputError(
            path,
            f"has an axis of {size} whose meaning the file does not record (axes {axes}, shape {image.shape}); "
            f"name the axes with --axes, e.g. --axes {'Z' + axes[-2:] if len(axes) == 3 else 'TZYX'} for planes or --axes C{axes[-2:]} for channels",
        )
    if "Y" not in axes or "X" not in axes:
        raise InputError(path, f"has no Y and X axes (axes {axes}, shape {image.shape}); name them with --axes")
    stack_axes = "".join(a for a in axes if a in STACK_AXES)
    channel_axes = "".join(a for a in axes if a not in STACK_AXES and a not in "YX")
    if len(channel_axes) > 1:
        raise InputError(path, f"has several channel axes (axes {axes}, shape {image.shape}); name them with --axes")
    channels = dict(zip(axes, image.shape)).get("C", 1)
    if channels > 1 and not channel_given:  # a C axis holds channels (RGB is S, samples): never a silent guess of the nuclear channel
        raise InputError(path, f"has {channels} channels (axes {axes}, shape {image.shape}); give the nuclear one with --channel 0..{channels - 1}")
    return np.transpose(image, [axes.index(a) for a in stack_axes + "YX" + channel_axes]), stack_axes


def bioio_image(path: Path):
    """A bioio BioImage of `path`, or a one-line error saying how to install the readers."""
    try:
        from bioio import BioImage
    except ImportError:
        raise InputError(path, f"reading {path.suffix} files needs the optional readers: uv sync --extra formats (bioio)") from None
    try:
        return BioImage(path)
    except Exception as error:  # noqa: BLE001 - readers raise many types
        raise InputError(path, f"cannot be read by bioio ({type(error).__name__}: {error})") from None


def _checked_axes(path: Path, axes: str, shape: tuple[int, ...]) -> str:
    """`--axes` checked against the array: one known letter per dimension, Y and X once each."""
    if len(axes) != len(shape) or len(set(axes)) != len(axes) or not set(axes) <= KNOWN_AXES:
        raise InputError(path, f"--axes {axes}: the file has {len(shape)} dimensions (shape {shape}); give one letter each from T Z C Y X (S for RGB samples)")
    return axes


def _validate(path: Path, image: np.ndarray) -> np.ndarray:
    """Check the decoded array is one plane with 1-4 channels and a numeric dtype."""
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise InputError(path, f"unsupported pixel type {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 2:  # gray + alpha
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise InputError(path, f"wrong dimensions {image.shape}; expected (H, W) gray or (H, W, 3|4) colour")
    if min(image.shape[:2]) < 2:
        raise InputError(path, f"image too small ({image.shape[0]}x{image.shape[1]} pixels)")
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).any():
        raise InputError(path, "no finite pixel values (every pixel is NaN or infinite)")
    return image


@dataclass
class InputConfig:
    """How any image becomes the networks' 8-bit RGB input."""

    normalize: bool = True  # stretch between the percentiles; False: 8-bit as is, 16-bit / 257, float x 255
    stretch_percentiles: tuple[float, float] = (0.1, 99.9)
    per_channel: bool = False  # colour images: stretch each channel on its own (False: one range for all, keeping the colour balance)
    stretch_8bit: bool = False  # 8-bit images stretched too (for models trained so; the shipped ones learned them as they are)
    stretch_dim_dark: int = 64  # 8-bit images of dark nuclei on a bright background spanning fewer grey levels are stretched; 0: never
    channel: int | None = None  # the nuclear channel of multi-channel files (a TIFF's C axis, or R, G, B = 0, 1, 2); None: gray or RGB as is
    axes: str | None = None  # a TIFF's dimensions, one letter each (T Z C Y X, S = RGB samples), where its metadata does not say
    pixel_size: float | None = None  # micrometres per pixel for every image, over what the files record; None: from each file's metadata
    polarity: str = "choose"  # dark nuclei on bright gray-inverted where the presegmenter is surer ("choose"), always ("auto"), never ("keep")

    def __post_init__(self) -> None:
        low, high = self.stretch_percentiles
        if not 0 <= low < high <= 100:
            raise ValueError(f"stretch_percentiles must satisfy 0 <= low < high <= 100, got {list(self.stretch_percentiles)}")
        if self.polarity not in POLARITIES:
            raise ValueError(f"polarity must be one of {', '.join(POLARITIES)}, got {self.polarity!r}")
        if not 0 <= self.stretch_dim_dark <= 256:
            raise ValueError(f"stretch_dim_dark must be a number of grey levels from 0 to 256, got {self.stretch_dim_dark}")


POLARITIES = ("keep", "auto", "invert", "choose")


def has_dark_nuclei(rgb8: np.ndarray) -> bool:
    """Whether an image looks like dark nuclei on a bright background (bright-field, H&E): most of its
    pixels lie above the Otsu threshold of its gray values. Nuclei rarely cover half an image; on the
    664 DSB 2018 images (masks tell the truth) this is right for 662, wrong for two crowded H&E sections."""
    return _mostly_above_otsu(cv2.cvtColor(rgb8, cv2.COLOR_RGB2GRAY))


def _mostly_above_otsu(gray: np.ndarray) -> bool:
    """Most pixels brighter than the Otsu threshold: a bright background around darker objects."""
    threshold, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(np.mean(gray > threshold)) > 0.5


def is_dim_with_dark_nuclei(image8: np.ndarray, levels: int) -> bool:
    """Whether an 8-bit (H, W, 1|3) image spans fewer than `levels` grey levels between its 0.1 and 99.9
    percentiles and shows dark nuclei on a bright background: an underexposed stain or bright-field image.
    The shipped models learned dim images only of bright nuclei on dark (a fifth of the DSB images, all
    fluorescence, span under 64 levels), and every stained or bright-field one at nearly full range."""
    if levels <= 0:
        return False
    gray = image8[:, :, 0] if image8.shape[2] == 1 else cv2.cvtColor(image8, cv2.COLOR_RGB2GRAY)
    cumulative = np.cumsum(np.bincount(gray.ravel(), minlength=256)) / gray.size
    low, high = np.searchsorted(cumulative, [0.001, 0.999])
    return bool(0 < high - low < levels) and _mostly_above_otsu(gray)  # a flat image has no nuclei to see


def with_polarity(rgb8: np.ndarray, polarity: str) -> np.ndarray:
    """The image as the networks see it under `polarity` (InputConfig): dark-nuclei images ("auto"), or
    all ("invert"), turned gray and inverted, so nuclei are bright on dark as in fluorescence, the
    type most training images have. "choose" leaves the image as it is here: at prediction the presegmenter
    decides (presegment.pipeline.choose_polarity); `nucflow train` learns with `adaptation_input`."""
    if polarity in ("keep", "choose") or (polarity == "auto" and not has_dark_nuclei(rgb8)):
        return rgb8
    inverted = 255 - cv2.cvtColor(rgb8, cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(np.repeat(inverted[:, :, None], 3, axis=2))


def adaptation_input(norm: InputConfig) -> InputConfig:
    """The input settings `nucflow train` learns a user's images with: under "choose", images of dark nuclei
    gray-inverted as "auto" does, since prediction can then choose that view; other settings as they are.
    Adapting to the inverted view scored higher on held-out stains (leave_type_out.md, sessions 18 and 23)."""
    return replace(norm, polarity="auto") if norm.polarity == "choose" else norm


def display_rgb8(image: np.ndarray, norm: InputConfig) -> np.ndarray:
    """The image as people should see it in overlays and the report: `to_rgb8` with every bit depth
    stretched between the percentiles (Fiji's auto-contrast), so a dim 8-bit image is not a black square."""
    return to_rgb8(image, replace(norm, normalize=True, stretch_8bit=True, polarity="keep"))


def to_rgb8(image: np.ndarray, norm: InputConfig | None = None) -> np.ndarray:
    """Network input: (H, W, 3) uint8. Gray is repeated to 3 channels and alpha dropped; with
    `norm.normalize` (the default) 16-bit and float intensities are stretched between
    percentiles, and 8-bit ones too with `norm.stretch_8bit` (dim 8-bit images then reach the
    networks as bright as 16-bit ones) or when they are dim images of dark nuclei (`is_dim_with_dark_nuclei`,
    `norm.stretch_dim_dark` levels). Non-finite pixels are left out of the stretch and become 0.
    `norm.polarity` may then turn images of dark nuclei gray and inverted (`with_polarity`).
    """
    norm = norm or InputConfig()
    if image.ndim == 2:
        image = image[:, :, None]
    image = image[:, :, :3]
    if norm.normalize and (image.dtype != np.uint8 or norm.stretch_8bit or is_dim_with_dark_nuclei(image, norm.stretch_dim_dark)):
        image = _stretch(image, norm.stretch_percentiles, norm.per_channel)
    else:
        image = _fixed_range(image)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return with_polarity(np.ascontiguousarray(image), norm.polarity)


def _fixed_range(image: np.ndarray) -> np.ndarray:
    """Without normalisation: 8-bit kept, 16-bit divided by 257, float taken as 0..1, other integers clipped."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image // 257).astype(np.uint8)
    values = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if np.issubdtype(image.dtype, np.floating):
        values = values * 255.0
    return np.clip(values, 0, 255).round().astype(np.uint8)


def _stretch(image: np.ndarray, percentiles: tuple[float, float], per_channel: bool) -> np.ndarray:
    """Map the [low, high] percentile range linearly onto 0..255, per channel or over all channels."""
    values = image.astype(np.float32)
    finite = np.isfinite(values)
    groups = [[c] for c in range(values.shape[2])] if per_channel else [list(range(values.shape[2]))]
    out = np.zeros(values.shape, dtype=np.uint8)
    for channels in groups:
        part, valid = values[:, :, channels], finite[:, :, channels]
        if not valid.any():
            continue
        low, high = np.percentile(part[valid], percentiles)
        if high <= low:
            low, high = part[valid].min(), part[valid].max()
        scale = 255.0 / (high - low) if high > low else 0.0
        stretched = np.clip((np.where(valid, part, low) - low) * scale, 0, 255).round()
        out[:, :, channels] = stretched.astype(np.uint8)
    return out


def resize_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize an image to (H, W): area interpolation to shrink, cubic to enlarge."""
    height, width = shape
    shrinking = height * width < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    resized = cv2.resize(image, (width, height), interpolation=interpolation)
    if image.ndim == 3 and resized.ndim == 2:
        resized = resized[:, :, None]
    return resized


def scaled_shape(shape: tuple[int, ...], factor: float) -> tuple[int, int]:
    """(H, W) of an image of `shape` scaled by `factor`, at least 1 pixel each."""
    return max(1, round(shape[0] * factor)), max(1, round(shape[1] * factor))


def size_scale(diameter: float | None, target_diameter: float, min_scale: float = 0.1, max_scale: float = 8.0) -> float:
    """Factor that brings a median nucleus of `diameter` px to `target_diameter` px (1.0 if unknown)."""
    if diameter is None or diameter <= 0:
        return 1.0
    return float(np.clip(target_diameter / diameter, min_scale, max_scale))


def write_probability(path: str | os.PathLike, probability: np.ndarray) -> None:
    """Write a [0, 1] map as a uint16 TIFF (0..65535, opens in Fiji and napari), atomically."""
    scaled = np.round(np.clip(probability, 0, 1) * np.iinfo(np.uint16).max).astype(np.uint16)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, scaled, compression="zlib", photometric="minisblack")
