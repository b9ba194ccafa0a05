"""benchmarks/bench_settings.py: arms parse into settings and image copies; a resized copy keeps its masks aligned."""

import importlib.util
from pathlib import Path

import numpy as np

from tests.synthetic import disks, nucleus_image
from workflow.core.labels import median_diameter

spec = importlib.util.spec_from_file_location("bench_settings", Path(__file__).resolve().parents[1] / "benchmarks" / "bench_settings.py")
bench_settings = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_settings)


def test_arm_splits_settings_from_image_copies():
    name, overrides, copy = bench_settings.parse_arm("small=presegment.detect.zoom=1.0;resize=0.5;dim=40;input.stretch_8bit=true")
    assert name == "small" and overrides == ["presegment.detect.zoom=1.0", "input.stretch_8bit=true"]
    assert copy == {"resize": 0.5, "dim": 40.0}
    assert bench_settings.parse_arm("default=") == ("default", [], {})


def test_resized_copy_halves_nuclei_and_keeps_them_over_their_masks():
    truth = disks((120, 160), ((30, 40), (80, 100), (60, 130)), 12)
    image = nucleus_image(truth, seed=0)
    small_image, small_truth = bench_settings.resized_copy(image, truth, 0.5)
    assert small_image.shape[:2] == small_truth.shape == (60, 80)
    assert abs(median_diameter(small_truth) - median_diameter(truth) / 2) <= 1.0
    inside, outside = small_image[small_truth > 0].mean(), small_image[small_truth == 0].mean()
    assert inside > outside + 50  # the bright nuclei still sit on their resized masks
    assert len(np.unique(small_truth)) == len(np.unique(truth))
