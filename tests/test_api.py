"""The Python API (`import nucflow`): arrays in, labels, measurements and scores out."""

import subprocess
import sys

import numpy as np
import pytest

import nucflow
from nucflow.api import network_input
from tests.synthetic import disks, nucleus_image
from workflow.core.images import InputConfig


def test_import_nucflow_loads_no_torch():
    code = "import sys, nucflow; assert 'torch' not in sys.modules, 'torch imported'; print(nucflow.__version__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_network_input_takes_arrays_as_napari_and_tifffile_give_them():
    labels = disks((64, 80), ((20, 20), (40, 60)), 8)
    gray16 = nucleus_image(labels).astype(np.uint16) * 200
    for array in (gray16, np.dstack([gray16] * 3), np.dstack([gray16] * 3 + [np.full_like(gray16, 65535)]), np.stack([gray16] * 3)):
        rgb8 = network_input(array)
        assert rgb8.shape == (64, 80, 3) and rgb8.dtype == np.uint8
        assert rgb8[labels > 0].mean() > rgb8[labels == 0].mean() + 100
    noise = np.random.default_rng(0).integers(0, 4000, gray16.shape).astype(np.uint16)
    two_channel = np.stack([noise, gray16])  # (C, H, W): nuclei in channel 1
    with pytest.raises(ValueError, match=r"2 channels .* pass channel=0..1"):
        network_input(two_channel)
    np.testing.assert_array_equal(network_input(two_channel, channel=1), network_input(gray16))
    np.testing.assert_array_equal(network_input(np.moveaxis(two_channel, 0, -1), channel=1), network_input(gray16))
    with pytest.raises(ValueError, match="channel 2 asked of an image with 2 channels"):
        network_input(two_channel, channel=2)
    with pytest.raises(ValueError, match="segment stacks plane by plane"):
        network_input(np.zeros((3, 4, 64, 64)))
    assert network_input(gray16, norm=InputConfig(normalize=False)).max() == gray16.max() // 257  # no stretch: 16-bit / 257


def test_segment_measure_evaluate_on_an_array():
    truth = disks((128, 128), ((30, 30), (30, 90), (90, 60)), 12)
    image = nucleus_image(truth).astype(np.uint16) * 100  # as a 16-bit camera gives it
    segmenter = nucflow.Segmenter("classic")
    labels = segmenter.segment(image)
    assert labels.shape == truth.shape
    assert nucflow.evaluate(labels, truth).ap50 == 1.0
    given = segmenter.segment(image, diameter=24)
    assert nucflow.evaluate(given, truth).f1 == 1.0
    rows = nucflow.measure(labels, image, pixel_size=0.5)
    assert len(rows) == 3
    assert rows[0]["area_um2"] == pytest.approx(rows[0]["area"] * 0.25)
    assert rows[0]["equivalent_diameter_um"] == pytest.approx(rows[0]["equivalent_diameter"] * 0.5)
    assert "mean_intensity" in rows[0] and "mean_intensity" not in nucflow.measure(labels)[0]
    with pytest.raises(ValueError, match="diameter must be a positive"):
        segmenter.segment(image, diameter=-5)
    with pytest.raises(ValueError, match="unknown method 'quick'"):
        nucflow.Segmenter("quick")


def test_fast_segmenter_on_a_2d_uint16_array():
    truth = disks((160, 160), ((40, 40), (40, 120), (120, 80)), 14)
    image = nucleus_image(truth).astype(np.uint16) * 50
    labels, maps = nucflow.Segmenter("fast", settings=["device=cpu"]).segment(image, maps=True)
    assert maps == {} and nucflow.evaluate(labels, truth).ap50 == 1.0


def test_segment_stack_estimates_once_and_stitches_planes():
    truth = np.stack([disks((128, 128), ((30, 30 + 2 * k), (30, 90), (90, 60)), 12) for k in range(4)])
    stack = np.stack([np.stack([nucleus_image(plane, seed=k)] * 2) for k, plane in enumerate(truth)]).astype(np.uint16)  # Z, C, Y, X
    segmenter = nucflow.Segmenter("classic")
    calls = []
    estimate = segmenter._segment.estimate
    segmenter._segment.estimate = lambda rgb8: calls.append(1) or estimate(rgb8)
    separate = segmenter.segment_stack(stack, channel=1)
    assert separate.shape == truth.shape and len(calls) == 1  # one size estimate for the stack
    assert [int(plane.max()) for plane in separate] == [3, 3, 3, 3]
    joined = segmenter.segment_stack(stack, channel=1, stitch_threshold=0.5)
    assert np.unique(joined).size == 4  # three 3-D nuclei
    for k in range(4):
        assert nucflow.evaluate(joined[k], truth[k]).f1 == 1.0
    with pytest.raises(ValueError, match="a stack needs a plane axis"):
        segmenter.segment_stack(stack[0, 0])
    with pytest.raises(ValueError, match="stitch_threshold is an intersection over union"):
        segmenter.segment_stack(stack, channel=1, stitch_threshold=2)
