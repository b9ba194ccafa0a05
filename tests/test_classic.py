import numpy as np

from presegment.classic import estimate_diameter, segment
from presegment.config import ClassicConfig
from tests.synthetic import disks, nucleus_image
from workflow.core.images import to_rgb8
from workflow.core.metrics import score_image


def test_classic_finds_separate_disks():
    truth = disks((128, 128), radius=12)
    image = to_rgb8(nucleus_image(truth))
    labels = segment(image, ClassicConfig(), 40.0, estimate_diameter(image, ClassicConfig()))
    assert labels.shape == truth.shape
    assert score_image(truth, labels).dsb > 0.8


def test_classic_splits_touching_disks_and_handles_dark_nuclei():
    truth = disks((100, 140), centres=((50, 40), (50, 64), (50, 100)), radius=12)  # first two touch
    image = nucleus_image(truth, bright=False)  # dark nuclei on a light background
    labels = segment(to_rgb8(image), ClassicConfig(), 40.0, estimate_diameter(to_rgb8(image), ClassicConfig()))
    assert labels.max() == 3
    assert score_image(truth, labels).ap50 == 1.0


def test_classic_size_estimate_and_blank_image():
    truth = disks(radius=10)
    assert abs(estimate_diameter(to_rgb8(nucleus_image(truth)), ClassicConfig()) - 21) < 2
    assert segment(np.zeros((50, 50, 3), np.uint8), ClassicConfig(), 40.0, None).max() == 0
