"""One typed configuration object for every nucflow run.

Defaults live in the dataclasses below; a YAML or JSON file overrides them, then
``--set section.key=value`` flags override the file. The resolved object is saved as
``config.json`` beside every output so a run can be reproduced.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clustering.config import ClusterConfig
from postprocess.config import FullConfig, SearchConfig
from presegment.config import ClassicConfig, PresegmentConfig
from style_transfer.config import Pix2PixConfig, SyntheticMaskConfig
from unet_ensemble.config import UNetConfig
from workflow.core.files import InputError, write_json
from workflow.core.images import InputConfig
from workflow.core.tiling import TilingConfig
from workflow.core.views import ViewsConfig


@dataclass
class SizeConfig:
    """Nucleus-size normalisation: images are rescaled so the median nucleus has `target_diameter`."""

    target_diameter: float = 40.0
    diameter: float | None = None  # the user's median nucleus diameter in pixels; None = estimate
    min_scale: float = 0.1
    max_scale: float = 8.0
    contour_sigma: float = 1.5  # px of the size-normalised image: outlines smoothed as labels return to the image's size; 0 = none
    fine_tune_at_target: bool = False  # fine-tuning trains at target_diameter, not at the starting model's own size


@dataclass
class StackConfig:
    """Z-stacks and time series: segmented plane by plane, the nucleus size estimated once per stack."""

    stitch_threshold: float = 0.0  # join objects of consecutive planes (the last stack axis) overlapping by this IoU; 0 = planes stay separate


@dataclass
class OutputConfig:
    """What a prediction run writes besides `labels/<stem>.tif`, `sizes.csv` and `config.json`."""

    keep_intermediate: bool = False  # full path: `intermediate/<stem>_probability.tif` and `_mrcnn_x<scale>.tif`
    overlays: bool = False  # `overlays/<stem>.png`: contours drawn on the image
    rois: bool = False  # `rois/<stem>.zip`: one ImageJ polygon ROI per nucleus, named by label (Fiji's ROI Manager)
    kaggle_csv: bool = False  # `submission.csv`: run-length codes in the Kaggle DSB format
    report: bool = True  # `report.html`: thumbnails, histograms, per-image table


# the stages of `nucflow train`, in the order they run
TRAIN_STAGES = ("presegment", "cluster", "recolour", "masks", "pix2pix", "synthesize", "unet", "presegmenter")


@dataclass
class AdaptConfig:
    """How much synthetic data `nucflow train` makes and how long it fine-tunes."""

    minutes: float | None = 90.0  # time for the whole run; fine-tuning stops so that the run ends within it (None = no limit)
    presegmenter_share: float = 0.5  # of the fine-tuning time, when the U-Nets are fine-tuned too
    replay: str | None = None  # replay sample (images/, masks/, replay.json) of the models' training data; None = the one shipped
    replay_in_training: bool = True  # fine-tune on the replay sample too, so that the models do not forget their own data
    recoloured_per_cluster: int = 96  # replay images redrawn in each style group's colours (0 = none)
    pix2pix: bool | None = None  # synthetic images by pix2pix (masks, pix2pix, synthesize stages); None = on a GPU only (hours on a CPU)
    masks_per_cluster: int = 20
    single_experiment_masks: int = 1000
    style_images: int = 3  # pix2pix learns a style from the images nearest its cluster's centre ("best 3")
    from_scratch: bool = False  # train new networks instead of fine-tuning the shipped (or given) ones
    unet_iterations: int = 2000
    presegmenter_iterations: int = 2000
    val_fraction: float = 0.1  # without --val: share of the synthetic pairs held out for early stopping
    seed: int = 0
    stages: tuple[str, ...] = TRAIN_STAGES  # which stages of `nucflow train` run (--stages)
    masks: str | None = None  # label images of the images (--masks); None = they are presegmented
    val: str | None = None  # folder with images/ and masks/ for validation (--val); None = a share of the synthetic pairs
    single_experiment: bool = False  # all images have one style: no clustering, more synthetic masks (--single-experiment)


@dataclass
class NucflowConfig:
    """Every setting of a nucflow run, grouped by stage."""

    input: InputConfig = field(default_factory=InputConfig)
    size: SizeConfig = field(default_factory=SizeConfig)
    tiling: TilingConfig = field(default_factory=TilingConfig)
    classic: ClassicConfig = field(default_factory=ClassicConfig)
    presegment: PresegmentConfig = field(default_factory=PresegmentConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    synthetic: SyntheticMaskConfig = field(default_factory=SyntheticMaskConfig)
    pix2pix: Pix2PixConfig = field(default_factory=Pix2PixConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    full: FullConfig = field(default_factory=FullConfig)
    views: ViewsConfig = field(default_factory=ViewsConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    stack: StackConfig = field(default_factory=StackConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    method: str = "fast"  # prediction: "classic" (no network), "fast" (Mask R-CNN) or "full" (refined)
    device: str = "auto"  # "auto" (GPU when there is one), "cpu", "cuda", "cuda:1", ...
    channels_last: bool = True  # networks' weights in channels-last order for prediction (faster convolutions)
    precision: str = "auto"  # networks' convolutions, inference and training: "auto" (bfloat16 on a CPU with AMX, else float32), "float32", "bfloat16"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write the resolved configuration as `<out_dir>/config.json`."""
        path = Path(out_dir) / "config.json"
        write_json(path, self.to_dict())
        return path


METHODS = ("classic", "fast", "full")
PRECISIONS = ("auto", "float32", "bfloat16")  # workflow.core.precision

# settings that moved, so that an old configuration file gets told where
RENAMED = {"full.mrcnn_flips": "views.full", "presegment.detect.flips": "views.fast", "unet.predict.flip_tta": "views.unet (view names)"}

POSITIVE = (
    "target_diameter diameter min_scale max_scale tile_size iterations batch_size crop_size val_every log_every "
    "max_minutes max_instances zoom size attempts min_area exemplars k k_min k_max max_side masks_per_cluster single_experiment_masks "
    "style_images unet_iterations presegmenter_iterations minutes patience checkpoint_every l1_weight discriminator_width fpn_channels "
    "box_samples_per_image box_head_width mask_head_width anchor_sizes anchor_ratios image_std decoder_channels depth mrcnn_scales scale_range val_limit scale pixel_size"
).split()
NON_NEGATIVE = (
    "overlap tile_overlap contour_sigma dilate warmup_iterations learning_rate weight_decay grad_clip min_object_pixels pad_fraction smoothing_sigma "
    "sigmas seeds seed octaves tie group_balance channel recoloured_per_cluster"
).split()
FRACTIONS = "presegmenter_share touching_probability val_fraction view_score_floor min_size_fraction peak_distance_fraction beta1 image_mean".split()


ZERO_ALLOWED = {"presegment.train.iterations"}  # 0: keep the starting model as it is (a narrowed one), validated


def range_rule(name: str, key: str = "") -> tuple[float, float, bool] | None:
    """(low, high, low inclusive) for a setting named `name` (at `key`), or None when any value goes."""
    if key in ZERO_ALLOWED:
        return (0.0, float("inf"), True)
    if name.startswith("p_") or name.endswith("_threshold") or name in FRACTIONS:
        return (0.0, 1.0, True)
    if name in POSITIVE:
        return (0.0, float("inf"), False)
    if name in NON_NEGATIVE:
        return (0.0, float("inf"), True)
    return None


def check_ranges(cfg: Any, where: str = "") -> None:
    """Every numeric setting within its range (sizes and counts positive, probabilities in [0, 1],
    ranges ordered), else a one-line error with the key, the value and the allowed range."""
    for item in dataclasses.fields(cfg):
        value, key = getattr(cfg, item.name), f"{where}{item.name}"
        if dataclasses.is_dataclass(value):
            check_ranges(value, f"{key}.")
            continue
        rule = range_rule(item.name, key)
        values = value if isinstance(value, (tuple, list)) else (value,)
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if rule is not None:
            low, high, inclusive = rule
            for number in numbers:
                if not math.isfinite(number) or not (number >= low if inclusive else number > low) or number > high:
                    allowed = f"in [{low:g}, {high:g}]" if high != float("inf") else (f">= {low:g}" if inclusive else f"> {low:g}")
                    allowed = allowed if math.isfinite(number) else f"a finite number {allowed}"
                    raise InputError(None, f"config key {key!r}: {value!r} is out of range (must be {allowed})")
        if item.name == "scale_range" and len(numbers) == 2 and numbers[0] > numbers[1]:
            raise InputError(None, f"config key {key!r}: {value!r} is not ordered (low <= high)")
    if isinstance(cfg, NucflowConfig) and cfg.method not in METHODS:
        raise InputError(None, f"config key 'method': {cfg.method!r} is not a method (use {', '.join(METHODS)})")
    if isinstance(cfg, NucflowConfig) and cfg.precision not in PRECISIONS:
        raise InputError(None, f"config key 'precision': {cfg.precision!r} is not a precision (use {', '.join(PRECISIONS)})")
    for low_name, high_name in (("min_scale", "max_scale"), ("k_min", "k_max")):
        low, high = getattr(cfg, low_name, None), getattr(cfg, high_name, None)
        if low is not None and high is not None and low > high:
            raise InputError(None, f"config keys {where}{low_name} = {low!r} and {where}{high_name} = {high!r}: the first must not exceed the second")


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> NucflowConfig:
    """Defaults, then the YAML/JSON file at `path`, then `section.key=value` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_config_file(Path(path))
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not key.strip():
            raise InputError(None, f"bad override {override!r}: expected section.key=value")
        *sections, name = key.strip().split(".")
        node = data
        for section in sections:
            node = node.setdefault(section, {})
            if not isinstance(node, dict):
                raise InputError(None, f"bad override {override!r}: {section!r} is not a section")
        node[name] = yaml.safe_load(raw)
    cfg = _build(NucflowConfig, data, "")
    check_ranges(cfg)
    return cfg


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as error:
        raise InputError(path, f"cannot read config file ({error.strerror})") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        raise InputError(path, f"not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {str(error).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(path, "config file must hold a mapping of sections")
    return data


def _build(cls: type, data: dict[str, Any], where: str, defaults: Any = None) -> Any:
    """Instantiate dataclass `cls` from `data`, checking names and coercing types; what `data` leaves out comes
    from `defaults` (the enclosing section's default for this one, which may differ from `cls()`)."""
    if not isinstance(data, dict):
        raise InputError(None, f"config section {where.rstrip('.') or 'root'!r} must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        renamed = RENAMED.get(f"{where}{unknown[0]}")
        if renamed:
            raise InputError(None, f"config key {where + unknown[0]!r} is now {renamed!r}")
        raise InputError(None, f"unknown config key {where}{unknown[0]!r}; known: {', '.join(sorted(names))}")
    defaults = cls() if defaults is None else defaults
    values = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, f"{where}{name}.", getattr(defaults, name))
        else:
            values[name] = _coerce(hint, value, f"{where}{name}")
    for name in names - set(values):
        values[name] = getattr(defaults, name)
    try:
        return cls(**values)
    except ValueError as error:
        raise InputError(None, f"config section {where.rstrip('.') or 'root'!r}: {error}") from None


def _float_text(text: str, key: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InputError(None, f"config key {key!r}: expected float, got {text!r}") from None


def _coerce(hint: Any, value: Any, key: str) -> Any:
    """Convert a parsed value to the field's declared type, or say which key is wrong."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if value is None and type(None) in args:
        return None
    if origin in (typing.Union, types.UnionType):
        candidates = [a for a in args if a is not type(None)]
        for candidate in candidates:
            try:
                return _coerce(candidate, value, key)
            except InputError:
                continue
        raise InputError(None, f"config key {key!r}: cannot use {value!r}")
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if not isinstance(value, (list, tuple)):
            raise InputError(None, f"config key {key!r}: expected a list, got {value!r}")
        return tuple(_coerce(args[0], v, key) for v in value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise InputError(None, f"config key {key!r}: expected {len(args)} values, got {value!r}")
        return tuple(_coerce(a, v, key) for a, v in zip(args, value))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise InputError(None, f"config key {key!r}: expected a list, got {value!r}")
        return [_coerce(args[0], v, key) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise InputError(None, f"config key {key!r}: expected true/false, got {value!r}")
    if hint is float and isinstance(value, str):
        value = _float_text(value, key)  # YAML 1.1 reads 5e-4 (no dot) as text
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (hint is int and value != int(value)):
            raise InputError(None, f"config key {key!r}: expected {hint.__name__}, got {value!r}")
        return hint(value)
    if hint is str:
        return str(value)
    return value
