"""benchmarks/gpu_data.py: the training data survives the trip to a device machine."""

import importlib.util
import json
import sys

import cv2
import numpy as np
import pytest

from tests.synthetic import disks, nucleus_image
from workflow.core.images import read_image, to_rgb8
from workflow.core.labels import write_labels

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_data", ROOT / "benchmarks" / "gpu_data.py")
gpu_data = importlib.util.module_from_spec(spec)
sys.modules["gpu_data"] = gpu_data  # its process pool pickles functions by module name
spec.loader.exec_module(gpu_data)


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "dsb"
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(3):
        labels = disks((96, 96), ((30, 30 + k), (60, 70)), 10)
        gray = nucleus_image(labels, seed=k)
        noisy = np.clip(gray.astype(int) + rng.integers(0, 40, gray.shape), 0, 255).astype(np.uint8)
        image = np.dstack([noisy, noisy, noisy, np.full_like(noisy, 255)]) if k < 2 else np.dstack([noisy, noisy // 2, 255 - noisy])  # RGBA gray, colour
        cv2.imwrite(str(folder / "images" / f"im{k}.png"), image)
        write_labels(folder / "masks" / f"im{k}.tif", labels)
    (folder / "split.csv").write_text("image_id,subset\nim0,train\nim1,train\nim2,val\n")
    (folder / "types.csv").write_text("image_id,type\nim0,fluorescence\nim1,fluorescence\nim2,stained_cells\n")
    return folder


def test_lossless_within_the_budget(data, tmp_path):
    gpu_data.pack(data, tmp_path / "packed", budget_mb=10)
    gpu_data.unpack(tmp_path / "packed", tmp_path / "out")
    for k in range(3):
        original, carried = read_image(data / "images" / f"im{k}.png"), read_image(tmp_path / "out" / "images" / f"im{k}.png")
        np.testing.assert_array_equal(to_rgb8(carried), to_rgb8(original))  # what the networks see is unchanged
    assert (tmp_path / "out" / "masks" / "im2.tif").read_bytes() == (data / "masks" / "im2.tif").read_bytes()
    assert json.loads((tmp_path / "out" / "carried.json").read_text())["lossy"] == []


def test_over_the_budget_the_biggest_savers_go_as_jpeg(data, tmp_path):
    gpu_data.pack(data, tmp_path / "packed", budget_mb=0.02)
    record = json.loads((tmp_path / "packed" / "carried.json").read_text())
    assert record["lossy"] and record["largest_pixel_error"] > 0
    assert sum(p.stat().st_size for p in (tmp_path / "packed" / "images").iterdir()) <= 0.02e6
    with pytest.raises(SystemExit, match="raise --budget-mb"):
        gpu_data.pack(data, tmp_path / "packed2", budget_mb=0.001)
