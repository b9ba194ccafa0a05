"""Settings of the presegmentation stage (architecture, size probe, inference, training, classic baseline).

Plain dataclasses without torch, so that reading or checking a configuration stays fast.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from workflow.core.augment import AugmentConfig


@dataclass
class Architecture:
    """What is needed to rebuild a presegmenter network (no weights)."""

    backbone: str = "resnet18_fpn"
    fpn_channels: int = 128
    box_head_width: int = 256
    mask_head_width: int = 128
    anchor_sizes: tuple[int, ...] = (12, 24, 48, 96)  # one per pyramid level, in rescaled pixels
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.25, 0.25, 0.25)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Architecture":
        known = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class SizeProbe:
    """How the nucleus size is probed: passes at `scale` x 2**k (k = 0, -1, 1, -2, ...), each on a
    window of at most `max_side` px; a pass 'fits' when its median nucleus is within a factor
    `tolerance` of the model's target diameter."""

    scale: float = 1.0  # the first pass, as a multiple of the image's own size (benchmarks/results/size_probe.md)
    tolerance: float = 1.6
    octaves: int = 3  # passes go at most this many octaves up or down from `scale` (nuclei of 5-120 px); 0: one pass, whole image
    shrink: float = 0.75  # an octave down, nuclei measured below this share of the size above are whole nuclei (fragments do not shrink)
    tie: float = 0.1  # fits whose |log(size / target)| are this close count as equally good: the lower scale wins
    max_side: int | None = 768  # larger windows are cropped around the image's centre (bounded cost); None: whole image
    upward: bool = True  # check an octave up whether objects of about the model's size were groups of small nuclei
    up_density: float = 2.0  # ... the pass an octave up finds at least this many times the objects per image pixel,
    up_shrink: float = 0.7  # ... at most this share of the estimated size,
    up_keep: float = 0.7  # ... and two octaves up they keep at least this share of that size (fragments halve again)

    def __post_init__(self) -> None:
        if (
            self.scale <= 0
            or self.up_density <= 1
            or not 0 < self.up_shrink < 1
            or not 0 < self.up_keep <= 1
            or self.tolerance <= 1
            or self.octaves < 0
            or (self.max_side is not None and self.max_side < 64)
            or self.tie < 0
            or not 0 < self.shrink < 1
        ):
            raise ValueError(
                "size probe: scale > 0, tolerance > 1, octaves >= 0, tie >= 0, 0 < shrink < 1, max_side >= 64, up_density > 1, 0 < up_shrink < 1 and 0 < up_keep <= 1 are required"
            )


@dataclass
class DetectConfig:
    """Inference settings: the reference's confidence 0.7 and 800 instances; the others chosen on val
    (benchmarks/results/setting_choices.md)."""

    score_threshold: float = 0.7
    nms_threshold: float = 0.2  # box IoU above which the weaker detection is dropped
    max_instances: int = 800
    mask_threshold: float = 0.6  # mask probability above which a pixel belongs to the instance
    pad_fraction: float = 0.05  # reflect padding per side, so nuclei on the border are whole
    tile_size: int = 1280  # images larger than this (after rescaling) are split into tiles
    tile_overlap: int = 160  # must exceed the largest nucleus (4x the target diameter by default)
    dilate: int = 0  # grow each instance by this many pixels (the reference: 1)
    zoom: float = 1.25  # size-normalised images are enlarged by this for Mask R-CNN
    view_score_floor: float = 0.5  # with test-time views (the `views` section): a view's detections down to this score join the vote


@dataclass
class TrainConfig:
    """Optimisation settings of the presegmenter."""

    iterations: int = 20000
    batch_size: int = 4
    crop_size: int = 256
    optimizer: str = "adamw"  # or "sgd"
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup_iterations: int = 300
    grad_clip: float = 10.0
    min_object_pixels: int = 12  # objects cut smaller than this by a crop are not targets
    box_samples_per_image: int = 256  # proposals per crop the box and mask heads learn from (fewer: a faster step)
    val_every: int = 1000
    val_limit: int | None = None  # validate on the first N val images only (None = all)
    max_minutes: float | None = None  # stop (and validate) when this much time has passed
    log_every: int = 50
    seed: int = 0
    distill: bool = False  # learn the starting model's outputs instead of the masks (keeps a narrowed model's behaviour)
    # stretched crops teach elongated nuclei (tissue): +0.012 / +0.016 on stains held out of training, two seeds
    # (benchmarks/results/leave_type_out.md, session 27); the U-Nets and pix2pix keep AugmentConfig's 0
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(p_stretch=0.5))


@dataclass
class ClassicConfig:
    """Settings of the classic baseline."""

    smoothing_sigma: float = 1.0  # Gaussian blur before thresholding, in rescaled pixels
    min_size_fraction: float = 0.1  # drop objects smaller than this fraction of the target nucleus area
    peak_distance_fraction: float = 0.35  # minimal seed spacing, as a fraction of the target diameter


@dataclass
class PresegmentConfig:
    """Which presegmenter to run and how; `model` None means the shipped default model."""

    backend: str = "torchvision"  # "torchvision", or "detectron2" when it is installed
    model: str | None = None
    start_from: str | None = None  # training: the model folder fine-tuned (train-presegment --start-from); None = random start
    probe: SizeProbe = field(default_factory=SizeProbe)  # the passes that estimate the nucleus size
    architecture: Architecture = field(default_factory=Architecture)
    detect: DetectConfig = field(default_factory=DetectConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
