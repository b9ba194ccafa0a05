"""The nucleus size estimate: an octave ladder of passes that does not lock onto fragments."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from skimage.measure import label as connected_components
from skimage.measure import regionprops
from skimage.morphology import closing, disk

from presegment.config import DetectConfig, SizeProbe
from presegment.pipeline import estimate_diameter, nucleus_size, probe_window
from presegment.storage import DEFAULT_MODEL, load_model
from tests.test_presegment import BrightBlobModel
from workflow.core.images import to_rgb8
from workflow.core.labels import median_diameter
from workflow.core.modelfiles import for_inference

LADDER = SizeProbe(octaves=3, max_side=768)  # the octave ladder (the default)


class FragmentingModel(BrightBlobModel):
    """Finds bright blobs up to `largest` px across whole, and larger ones in quarter pieces (quartered
    again until they fit), as a Mask R-CNN shown nuclei far beyond its training sizes does."""

    def __init__(self, largest: int = 60):
        super().__init__()
        self.largest = largest

    def split(self, inside: np.ndarray, pieces: np.ndarray) -> None:
        """Label `inside` in `pieces` whole if it fits `largest`, else its quarters, each split again."""
        rows, cols = np.nonzero(inside)
        if rows.size == 0:
            return
        y0, x0, y1, x1 = rows.min(), cols.min(), rows.max() + 1, cols.max() + 1
        if max(y1 - y0, x1 - x0) <= self.largest:
            pieces[inside] = pieces.max() + 1
            return
        cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
        for part_rows in (slice(y0, cy), slice(cy, y1)):
            for part_cols in (slice(x0, cx), slice(cx, x1)):
                quarter = np.zeros(inside.shape, bool)
                quarter[part_rows, part_cols] = inside[part_rows, part_cols]
                self.split(quarter, pieces)

    def blobs(self, gray: np.ndarray) -> np.ndarray:
        return gray > 0.5

    def forward(self, images):
        self.calls += 1
        gray = images[0].mean(0).numpy()
        pieces = np.zeros(gray.shape, np.int32)
        for region in regionprops(connected_components(self.blobs(gray))):
            y0, x0, y1, x1 = region.bbox
            inside = np.zeros(gray.shape, bool)
            inside[y0:y1, x0:x1] = region.image
            self.split(inside, pieces)
        boxes, masks = [], []
        for region in regionprops(pieces):
            y0, x0, y1, x1 = region.bbox
            boxes.append([x0, y0, x1, y1])
            masks.append(torch.nn.functional.interpolate(torch.tensor(region.image, dtype=torch.float32)[None, None], (28, 28))[0])
        if not boxes:
            return [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "masks": torch.zeros(0, 1, 28, 28)}]
        return [{"boxes": torch.tensor(boxes, dtype=torch.float32), "scores": torch.full((len(boxes),), 0.9), "masks": torch.stack(masks)}]


def nuclei_field(diameter_range: tuple[float, float], shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Label image of a grid of disks with diameters drawn from `diameter_range`, 1.5 diameters apart."""
    rng = np.random.default_rng(seed)
    largest = diameter_range[1]
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.int32)
    step = int(largest * 1.5)
    for cy in range(int(largest), shape[0] - int(largest) // 2, step):
        for cx in range(int(largest), shape[1] - int(largest) // 2, step):
            radius = rng.uniform(*diameter_range) / 2
            labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = labels.max() + 1
    return labels


def bright_image(labels: np.ndarray) -> np.ndarray:
    return to_rgb8(np.where(labels > 0, 200, 20).astype(np.uint8))


def test_fragments_of_large_nuclei_do_not_set_the_size():
    labels = nuclei_field((90, 90), (500, 500))
    image = bright_image(labels)
    model = FragmentingModel(largest=60)
    one_pass = estimate_diameter(model, image, DetectConfig(), 40.0, SizeProbe(scale=1.0, octaves=0))
    assert one_pass == pytest.approx(45, rel=0.1)  # a single pass measures the quarters
    ladder = estimate_diameter(model, image, DetectConfig(), 40.0, SizeProbe(scale=1.0, octaves=3, max_side=768))
    assert ladder == pytest.approx(median_diameter(labels), rel=0.1)


def test_tiny_nuclei_are_found_by_passes_above_the_first():
    labels = nuclei_field((6, 6), (160, 160))
    estimate = estimate_diameter(FragmentingModel(largest=60), bright_image(labels), DetectConfig(), 40.0, SizeProbe(scale=1.0, octaves=3, max_side=768))
    assert estimate == pytest.approx(median_diameter(labels), rel=0.2)


def test_a_pass_that_takes_the_whole_window_for_a_nucleus_or_finds_one_object_is_ignored():
    one = np.zeros((60, 60), np.int32)
    one[10:30, 10:30] = 1
    assert nucleus_size(one, 60) is None  # one object
    two = one.copy()
    two[35:55, 35:55] = 2
    assert nucleus_size(two, 60) is None  # objects over a third of the window
    assert nucleus_size(two, 200) == pytest.approx(median_diameter(two))


def test_probe_window_is_cropped_around_the_centre_to_bound_its_cost():
    image = np.zeros((1000, 600, 3), np.uint8)
    assert probe_window(image, 2.0, 768).shape == (768, 768, 3)
    assert probe_window(image, 2.0, None).shape == (2000, 1200, 3)
    assert probe_window(image, 0.5, 768).shape == (500, 300, 3)
    for bad in ({"tolerance": 1.0}, {"up_density": 1.0}, {"up_shrink": 1.0}, {"up_keep": 0.0}):
        with pytest.raises(ValueError, match="size probe"):
            SizeProbe(**bad)


@pytest.fixture(scope="module")
def shipped_presegmenter():
    model, card = load_model(DEFAULT_MODEL)
    return for_inference(model, True), float(card["target_diameter"])


@pytest.mark.slow
@pytest.mark.parametrize("diameters, shape", [((80, 120), (640, 640)), ((5, 8), (192, 192))])
def test_shipped_model_estimates_large_and_small_nuclei_within_20_percent(shipped_presegmenter, diameters, shape):
    model, target = shipped_presegmenter
    labels = nuclei_field(diameters, shape, seed=1)
    image = to_rgb8(np.clip(np.where(labels > 0, 170.0, 25.0) + np.random.default_rng(0).normal(0, 6, shape), 0, 255).astype(np.uint8))
    estimate = estimate_diameter(model, image, DetectConfig(), target, LADDER)
    assert estimate == pytest.approx(median_diameter(labels), rel=0.2)


class TextureModel(BrightBlobModel):
    """Reads any image as a grid of 30 px 'nuclei', at every scale (as a model does a tissue texture it never saw)."""

    def forward(self, images):
        self.calls += 1
        height, width = images[0].shape[-2:]
        boxes = [[x, y, x + 30, y + 30] for y in range(0, height - 29, 40) for x in range(0, width - 29, 40)]
        if not boxes:
            return [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "masks": torch.zeros(0, 1, 28, 28)}]
        count = len(boxes)
        return [{"boxes": torch.tensor(boxes, dtype=torch.float32), "scores": torch.full((count,), 0.9), "masks": torch.ones(count, 1, 28, 28)}]


def test_a_texture_read_at_every_scale_keeps_the_first_pass():
    estimate = estimate_diameter(
        TextureModel(), np.zeros((400, 400, 3), np.uint8), DetectConfig(pad_fraction=0), 40.0, SizeProbe(scale=1.0, octaves=3, max_side=768)
    )
    assert estimate == pytest.approx(median_diameter(np.pad(np.ones((30, 30), np.int32), 1)), rel=0.1)  # not 30 px at 1/8 scale


class CollapsingTextureModel(TextureModel):
    """Reads a texture as 30 px 'nuclei' down to 120 px images, and below that finds two 15 px objects: a
    texture whose 'nuclei' seem to shrink at the lowest octave, but by vanishing, not by getting smaller."""

    def forward(self, images):
        height, width = images[0].shape[-2:]
        if min(height, width) >= 120:
            return super().forward(images)
        self.calls += 1
        boxes = torch.tensor([[5, 5, 20, 20], [25, 25, 40, 40]], dtype=torch.float32)
        return [{"boxes": boxes, "scores": torch.full((2,), 0.9), "masks": torch.ones(2, 1, 28, 28)}]


def test_objects_that_vanish_an_octave_down_are_not_whole_nuclei_shrinking():
    image = np.zeros((400, 400, 3), np.uint8)
    estimate = estimate_diameter(CollapsingTextureModel(), image, DetectConfig(pad_fraction=0), 40.0, SizeProbe(scale=1.0, octaves=3, max_side=768))
    assert estimate == pytest.approx(median_diameter(np.pad(np.ones((30, 30), np.int32), 1)), rel=0.1)  # the first pass, not 60 px


def test_a_single_nucleus_is_measured_by_the_first_pass_when_no_pass_gives_a_usable_size():
    labels = nuclei_field((20, 20), (40, 40))
    assert labels.max() == 1
    image = bright_image(np.pad(labels, 80))
    model = FragmentingModel(largest=1000)  # finds the one nucleus whole at every scale
    estimate = estimate_diameter(model, image, DetectConfig(), 40.0, SizeProbe(scale=1.0, octaves=3, max_side=768))
    assert estimate == pytest.approx(median_diameter(labels), rel=0.15)  # one object is too few to trust, but not nothing


class SmallBlindModel(FragmentingModel):
    """Misses blobs under `smallest` px across, as a Mask R-CNN misses nuclei far below its training size."""

    def __init__(self, smallest: int):
        super().__init__(largest=1000)
        self.smallest = smallest

    def forward(self, images):
        image = images[0].clone()
        for region in regionprops(connected_components(image.mean(0).numpy() > 0.5)):
            y0, x0, y1, x1 = region.bbox
            if max(y1 - y0, x1 - x0) < self.smallest:
                image[:, y0:y1, x0:x1] = 0
        return super().forward([image])


def test_a_single_small_nucleus_missed_by_the_first_pass_is_measured_by_a_pass_above():
    labels = nuclei_field((10, 10), (20, 20))
    assert labels.max() == 1
    image = bright_image(np.pad(labels, 70))
    estimate = estimate_diameter(SmallBlindModel(smallest=15), image, DetectConfig(), 40.0, SizeProbe(scale=1.0, octaves=3, max_side=768))
    assert estimate == pytest.approx(median_diameter(labels), rel=0.15)  # found at 2x, one object: its own size, not None


class GroupingModel(FragmentingModel):
    """Reads bright blobs closer than about `gap` px (in the pixels it is shown) as one object, as a Mask R-CNN
    shown groups of nuclei far below its training sizes outlines each group as one nucleus of its own size."""

    def __init__(self, gap: int = 4):
        super().__init__(largest=1000)
        self.gap = gap

    def blobs(self, gray: np.ndarray) -> np.ndarray:
        return closing(gray > 0.5, disk(self.gap // 2 + 1))


def grouped_nuclei(diameter: int = 8, gap: int = 3, pitch: int = 60, side: int = 360) -> np.ndarray:
    """Label image of 3 x 3 groups of `diameter` px disks `gap` px apart, the groups `pitch` px apart."""
    labels = np.zeros((side, side), np.int32)
    yy, xx = np.mgrid[:side, :side]
    step = diameter + gap
    for gy in range(pitch // 2, side - pitch // 2 + 1, pitch):
        for gx in range(pitch // 2, side - pitch // 2 + 1, pitch):
            for dy in (-step, 0, step):
                for dx in (-step, 0, step):
                    labels[(yy - gy - dy) ** 2 + (xx - gx - dx) ** 2 <= (diameter / 2) ** 2] = labels.max() + 1
    return labels


def test_groups_of_small_nuclei_read_as_one_are_resolved_an_octave_up():
    labels = grouped_nuclei()
    image, model = bright_image(labels), GroupingModel(gap=4)
    unchecked = estimate_diameter(model, image, DetectConfig(), 40.0, replace(LADDER, upward=False))
    assert unchecked > 3 * median_diameter(labels)  # each group taken for one nucleus
    checked = estimate_diameter(model, image, DetectConfig(), 40.0, replace(LADDER, upward=True))
    assert checked == pytest.approx(median_diameter(labels), rel=0.2)


def test_fragments_of_large_nuclei_an_octave_up_do_not_replace_a_right_estimate():
    labels = nuclei_field((40, 40), (400, 400))
    model = FragmentingModel(largest=50)  # whole at 1x; quarters an octave up, quarters of quarters two octaves up
    estimate = estimate_diameter(model, bright_image(labels), DetectConfig(), 40.0, replace(LADDER, upward=True))
    assert estimate == pytest.approx(median_diameter(labels), rel=0.1)
