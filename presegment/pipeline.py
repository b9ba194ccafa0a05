"""The fast path on one image: estimate nucleus size, rescale, presegment, scale back."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
from torch import nn

from presegment.config import DetectConfig, SizeProbe
from presegment.predict import configure, detect, segment
from workflow.core.images import has_dark_nuclei, resize_image, scaled_shape, size_scale, with_polarity
from workflow.core.labels import count_objects, median_diameter, resize_labels

log = logging.getLogger(__name__)


@dataclass
class Presegmentation:
    """Labels at the image's own size, the median nucleus diameter used (None: unknown) and the scale applied."""

    labels: np.ndarray
    diameter: float | None
    scale: float


def segment_at_scale(
    model: nn.Module, rgb8: np.ndarray, scale: float, cfg: DetectConfig, contour_sigma: float = 0.0, views: tuple[str, ...] = ()
) -> np.ndarray:
    """Presegment `rgb8` resized by `scale` (with test-time `views`); labels come back at the original size, with
    outlines smoothed by `contour_sigma` pixels of the resized image when it is > 0 (else nearest-neighbour)."""
    resized = abs(scale - 1.0) >= 1e-3
    labels = segment(model, resize_image(rgb8, scaled_shape(rgb8.shape, scale)) if resized else rgb8, cfg, views)
    return resize_labels(labels, rgb8.shape[:2], contour_sigma) if resized or contour_sigma > 0 else labels


def nucleus_size(labels: np.ndarray, window_side: int, min_count: int = 2) -> float | None:
    """Median diameter of a probe pass, or None when it found fewer than `min_count` objects or
    objects over a third of the window (the whole image taken for one nucleus)."""
    count = count_objects(labels)
    diameter = median_diameter(labels)
    if count < min_count or diameter is None or diameter > window_side / 3:
        return None
    return diameter


def probe_window(rgb8: np.ndarray, scale: float, max_side: int | None) -> np.ndarray:
    """`rgb8` resized by `scale`, cropped around its centre first when it would exceed `max_side` px."""
    side = max(1, int(max_side / scale)) if max_side else max(rgb8.shape[:2])
    height, width = rgb8.shape[:2]
    top, left = max(0, (height - side) // 2), max(0, (width - side) // 2)
    window = rgb8[top : top + side, left : left + side]
    return resize_image(window, scaled_shape(window.shape, scale)) if abs(scale - 1.0) >= 1e-3 else window


KEPT_NUMBER = 0.5  # an octave down, whole nuclei keep at least this share of their number per image pixel


@dataclass
class ProbePass:
    """What one probe pass measured: the usable median diameter (`nucleus_size`; None: unusable), the plain
    median of whatever it found (None: nothing), and its objects per original-image pixel."""

    diameter: float | None
    any_diameter: float | None
    density: float


def probe_pass(model: nn.Module, rgb8: np.ndarray, scale: float, cfg: DetectConfig, max_side: int | None) -> ProbePass:
    """One pass of the size probe on the window `probe_window` gives at `scale`."""
    window = probe_window(rgb8, scale, max_side)
    labels = segment(model, window, cfg)
    area = window.shape[0] * window.shape[1] / scale**2  # in the image's own pixels
    return ProbePass(nucleus_size(labels, min(window.shape[:2])), median_diameter(labels), count_objects(labels) / area)


def estimate_diameter(model: nn.Module, rgb8: np.ndarray, cfg: DetectConfig, target_diameter: float, probe: SizeProbe | None = None) -> float | None:
    """Median nucleus diameter in the image's pixels, or None if no pass finds a nucleus.

    One pass can lock onto fragments: a model shown nuclei far larger than it was trained on
    finds pieces of about its own size, and fragments do not shrink when the image does. A first
    pass whose nuclei are well below that size (a factor `probe.tolerance`) is taken as it is,
    as the one-pass probe would. Otherwise passes run an octave lower each (cheap: a quarter of the pixels each)
    until the nuclei found shrink with the image while keeping their number (whole nuclei:
    `probe.shrink`; a texture read at the model's size loses most of its 'nuclei' an octave
    down instead) or none are found. When they shrank, the pass that fits closest to the target
    size wins, the lower scale on a near tie (nuclei that fit at scale s are twice the target at
    2s, so a fit there is fragments). When nothing shrank (a texture the model reads at its own
    size at every scale) the first pass stays, if it fits. When nothing fits and the first pass
    found none, octaves up are tried (tiny nuclei). When no pass gives a usable
    size (e.g. a single nucleus), the plain median of the first pass stands, as with one pass, or where it found
    nothing, that of the lowest pass above it that did (a single small nucleus; passes below see too few pixels).
    With `probe.upward`, an estimate from a first pass that found nuclei of about the model's size is checked an octave
    up: a model shown groups of small nuclei (low magnification) outlines each group as one nucleus of its own size;
    an octave up it finds many more, much smaller objects, and they keep their size another octave up, where
    fragments of large nuclei would halve again. Then the size an octave up is taken (benchmarks/results/scale_shift.md).
    """
    probe = probe or SizeProbe()
    if not probe.octaves:  # one pass, measured at the image's own size (what the shipped models were tuned with)
        return median_diameter(segment_at_scale(model, rgb8, probe.scale, cfg))
    passes: dict[int, ProbePass] = {}

    def scale_of(k: int) -> float:  # pass k runs k octaves from the first scale
        return probe.scale * 2.0**k

    def diameter_at(k: int) -> float | None:
        if k not in passes:
            passes[k] = probe_pass(model, rgb8, scale_of(k), cfg, probe.max_side)
        return passes[k].diameter

    def fits(k: int) -> bool:
        diameter = diameter_at(k)
        return diameter is not None and 1 / probe.tolerance <= diameter / target_diameter <= probe.tolerance

    def shrank(k: int) -> bool:  # whole nuclei: smaller with the image, and as many per pixel of the image
        above, below = passes[k + 1], passes[k]
        return above.diameter is not None and below.diameter < probe.shrink * above.diameter and below.density >= KEPT_NUMBER * above.density

    first = diameter_at(0)
    if first is not None and first * probe.tolerance < target_diameter:  # well below the model's size: not fragments
        return first / probe.scale
    run, whole = [0], False  # the first pass, then an octave down at a time while the nuclei found do not shrink
    for k in range(-1, -probe.octaves - 1, -1):
        if diameter_at(k) is None:
            break
        run.append(k)
        if shrank(k):
            whole = True
            break
    fitting = {k: abs(np.log(diameter_at(k) / target_diameter)) for k in run if fits(k)}
    if fitting and not whole and 0 in fitting:  # nothing shrank further down: texture, not large nuclei
        chosen = 0
    elif fitting:  # the lowest octave among those (nearly) as close to the target as the closest
        closest = min(fitting.values())
        chosen = min(k for k, distance in fitting.items() if distance <= closest + probe.tie)
    elif first is None:  # none found (small ones returned above): tiny nuclei, tried octaves up
        chosen = next((k for k in range(1, probe.octaves + 1) if fits(k)), None)
    else:
        chosen = None
    found = {k: p.diameter for k, p in passes.items()}
    if chosen is None:  # nothing fits: the pass whose nuclei came closest to the target size
        measured = {k: d for k, d in found.items() if d is not None}
        if not measured:  # the plain median of the first pass at or above the first scale that found anything
            seen = next((k for k in sorted(passes) if k >= 0 and passes[k].any_diameter is not None), None)
            return None if seen is None else passes[seen].any_diameter / scale_of(seen)
        chosen = min(measured, key=lambda k: abs(np.log(measured[k] / target_diameter)))
    estimate = found[chosen] / scale_of(chosen)
    if not probe.upward or first is None:
        return estimate
    up = diameter_at(1)  # groups of small nuclei read as one: an octave up, many more objects, much smaller
    if up is None:
        return estimate
    up_size = up / scale_of(1)  # in the image's pixels, as `estimate`
    if passes[1].density < probe.up_density * passes[0].density or up_size > probe.up_shrink * estimate:
        return estimate
    further = diameter_at(2)  # whole small nuclei keep their size another octave up; fragments of large ones halve again
    return up_size if further is not None and further / scale_of(2) >= probe.up_keep * up_size else estimate


CONFIDENT_DETECTIONS = 10  # the confidence of a pass: the mean score of its this many best detections
CONFIDENCE_WINDOW = 768  # px: the confidence pass sees at most this much of the image (around its centre)


def confidence(model: nn.Module, rgb8: np.ndarray, cfg: DetectConfig, probe: SizeProbe) -> float:
    """How sure the presegmenter is that it sees nuclei: the mean score of its CONFIDENT_DETECTIONS best
    detections (down to score 0.05; 0 when none) in one pass at the probe's first scale."""
    low = replace(cfg, score_threshold=0.05)
    configure(model, low)
    window = probe_window(rgb8, probe.scale, min(probe.max_side or CONFIDENCE_WINDOW, CONFIDENCE_WINDOW))
    best = np.sort(detect(model, window, low).scores)[::-1][:CONFIDENT_DETECTIONS]
    return float(best.mean()) if best.size else 0.0


def choose_polarity(model: nn.Module, rgb8: np.ndarray, cfg: DetectConfig, probe: SizeProbe) -> tuple[np.ndarray, bool]:
    """An image of dark nuclei on a bright background as it is or gray and inverted (`with_polarity`),
    whichever the presegmenter is more confident on, and whether it was inverted; other images as they are.

    Models trained on a stain recognise it in its own colours; a stain they never saw often looks to
    them like nothing they know until it is shown as bright nuclei on dark, the way most training
    images look. Their own confidence tells the two cases apart (benchmarks/results/polarity_choice.md).
    """
    if not has_dark_nuclei(rgb8):
        return rgb8, False
    inverted = with_polarity(rgb8, "invert")
    if confidence(model, inverted, cfg, probe) > confidence(model, rgb8, cfg, probe):
        return inverted, True
    return rgb8, False


def zoom_for(diameter: float | None, cfg: DetectConfig) -> float:
    """The extra enlargement `cfg.zoom`, applied only when the nucleus size is known (an image
    whose size could not be estimated is segmented as it is)."""
    return cfg.zoom if diameter is not None else 1.0


def presegment(
    model: nn.Module,
    rgb8: np.ndarray,
    target_diameter: float,
    cfg: DetectConfig,
    diameter: float | None,
    scale_limits: tuple[float, float] = (0.1, 8.0),
    contour_sigma: float = 0.0,
    views: tuple[str, ...] = (),
) -> Presegmentation:
    """Segment nuclei of median `diameter` px so that the network sees them at `target_diameter` x `cfg.zoom` px
    (with test-time `views`). `diameter` None (no nucleus found by the size estimate, which is the caller's:
    estimate_diameter) segments the image as it is. `contour_sigma` (pixels at `target_diameter`) smooths the
    outlines as the labels return to the image's size.
    """
    scale = size_scale(diameter, target_diameter, *scale_limits)
    zoom = zoom_for(diameter, cfg)
    return Presegmentation(segment_at_scale(model, rgb8, scale * zoom, cfg, contour_sigma * zoom, views), diameter, scale)
