"""The napari plugin without napari: its manifest validates and its functions work on arrays and folders."""

import numpy as np
import tifffile

from nucflow.napari_plugin import get_reader, segment_nuclei
from tests.synthetic import disks, nucleus_image
from workflow.cli import main

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_manifest_is_valid_and_names_functions_that_exist():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(ROOT / "nucflow" / "napari.yaml")
    manifest.validate_imports()  # every python_name imports and is callable
    assert {c.id for c in manifest.contributions.commands} == {"nucflow.segment_nuclei", "nucflow.get_reader"}


def test_widget_function_segments_a_plane_and_a_stack():
    truth = disks((128, 128), ((30, 30), (30, 90), (90, 60)), 12)
    image = nucleus_image(truth).astype(np.uint16) * 100
    labels = segment_nuclei(image, method="classic")
    assert labels.shape == truth.shape and labels.max() == 3
    stack = np.stack([image, image, image])
    stacked = segment_nuclei(stack, method="classic", diameter=24, stitch_threshold=0.5)
    assert stacked.shape == (3, 128, 128) and np.unique(stacked).size == 4  # one label per nucleus through Z


def test_reader_opens_an_output_folder_with_images_labels_and_micrometre_scale(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    plane = nucleus_image(disks((96, 96), ((30, 30), (60, 70)), 10)).astype(np.uint16) * 100
    tifffile.imwrite(images / "a.ome.tif", plane, metadata={"axes": "YX", "PhysicalSizeX": 0.5, "PhysicalSizeXUnit": "µm"})
    out = tmp_path / "out"
    assert main(["predict", str(images), "-o", str(out), "--method", "classic", "--no-report"]) == 0
    assert get_reader(str(images)) is None  # not an output folder
    layers = get_reader(str(out))(str(out))
    (image, image_meta, image_kind), (labels, labels_meta, labels_kind) = layers
    assert (image_kind, labels_kind) == ("image", "labels") and image_meta["name"] == "a.ome"
    np.testing.assert_array_equal(image, plane)
    assert labels.max() == 2 and labels_meta["scale"] == (0.5, 0.5)
