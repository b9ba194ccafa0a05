import csv

import numpy as np
import pytest
import tifffile

from tests.synthetic import disks, nucleus_image
from workflow.cli import main
from workflow.core.calibration import read_pixel_size
from workflow.core.files import InputError
from workflow.core.images import read_image, read_planes
from workflow.core.labels import stitch_planes, write_label_stack


def moving_nuclei(planes: int) -> tuple[np.ndarray, np.ndarray]:
    """Three nuclei drifting 2 px per plane: (labels, uint16 images), each (planes, 128, 128)."""
    labels = np.stack([disks((128, 128), ((30, 30 + 2 * k), (30, 90), (90, 60 - 2 * k)), 12) for k in range(planes)])
    images = np.stack([nucleus_image(plane, seed=k).astype(np.uint16) * 200 for k, plane in enumerate(labels)])
    return labels, images


def test_tzyx_and_czyx_stacks_read_with_their_axes(tmp_path):
    _, images = moving_nuclei(6)
    tifffile.imwrite(tmp_path / "tz.tif", images.reshape(2, 3, 128, 128), imagej=True, metadata={"axes": "TZYX"})
    planes, axes = read_planes(tmp_path / "tz.tif")
    assert axes == "TZ" and planes.shape == (2, 3, 128, 128)
    np.testing.assert_array_equal(planes[1, 2], images[5])
    with pytest.raises(InputError, match=r"is a stack of \(2, 3\) planes \(axes TZ\)"):
        read_image(tmp_path / "tz.tif")
    two_channels = np.stack([images[:3], images[:3] // 7], axis=1)  # Z, C, Y, X
    tifffile.imwrite(tmp_path / "zc.tif", two_channels, imagej=True, metadata={"axes": "ZCYX"})
    with pytest.raises(InputError, match="has 2 channels"):
        read_planes(tmp_path / "zc.tif")
    planes, axes = read_planes(tmp_path / "zc.tif", channel=1)
    assert axes == "Z" and planes.shape == (3, 128, 128)
    np.testing.assert_array_equal(planes[2], images[2] // 7)


def test_an_axis_the_file_does_not_name_needs_axes(tmp_path):
    _, images = moving_nuclei(3)
    tifffile.imwrite(tmp_path / "plain.tif", images, photometric="minisblack")  # tifffile calls the first axis Q (unknown)
    with pytest.raises(InputError, match="has an axis of 3 whose meaning the file does not record .* --axes ZYX for planes or --axes CYX"):
        read_planes(tmp_path / "plain.tif")
    planes, axes = read_planes(tmp_path / "plain.tif", axes="ZYX")
    assert axes == "Z" and planes.shape == (3, 128, 128)
    assert read_planes(tmp_path / "plain.tif", channel=2, axes="CYX")[0].shape == (128, 128)
    with pytest.raises(InputError, match="--axes ZX: the file has 3 dimensions"):
        read_planes(tmp_path / "plain.tif", axes="ZX")


def test_stitching_follows_overlapping_objects_and_continues_each_once():
    labels, _ = moving_nuclei(3)
    shuffled = labels.copy()
    shuffled[1] = np.where(labels[1] > 0, 4 - labels[1], 0)  # the same objects, other numbers
    stitched = stitch_planes(shuffled, 0.5)
    for k in range(3):  # each nucleus keeps one label through the planes
        assert set(np.unique(stitched[k])) == {0, 1, 2, 3}
        for label in (1, 2, 3):
            assert (stitched[k][labels[k] == label] == stitched[0][labels[0] == label][0]).all()
    assert np.unique(stitch_planes(shuffled, 0.99)).size == 8  # only the nucleus that stays put is joined: 3 + 2 + 2 objects
    split = np.zeros((2, 20, 20), np.int32)
    split[0, 5:15, 5:15] = 1
    split[1, 5:15, 5:10], split[1, 5:15, 10:15] = 1, 2  # one nucleus seen as two halves in the next plane
    assert sorted(np.unique(stitch_planes(split, 0.1)[1])) == [0, 1, 2]


def test_label_stacks_are_imagej_hyperstacks_with_calibration(tmp_path):
    labels, _ = moving_nuclei(6)
    write_label_stack(tmp_path / "l.tif", labels.reshape(2, 3, 128, 128), "TZYX", pixel_size=0.25)
    with tifffile.TiffFile(tmp_path / "l.tif") as tif:
        assert tif.is_imagej and tif.series[0].axes == "TZYX" and tif.imagej_metadata["unit"] == "um"
        np.testing.assert_array_equal(tif.asarray(), labels.reshape(2, 3, 128, 128))
    assert read_pixel_size(tmp_path / "l.tif") == pytest.approx(0.25)


def test_predict_segments_a_tzyx_stack_plane_by_plane_and_stitches_it(tmp_path, caplog):
    labels, images = moving_nuclei(6)
    folder = tmp_path / "images"
    folder.mkdir()
    tifffile.imwrite(folder / "movie.tif", images.reshape(2, 3, 128, 128), imagej=True, resolution=(2.0, 2.0), metadata={"axes": "TZYX", "unit": "micron"})
    out = tmp_path / "out"
    args = ["predict", str(folder), "-o", str(out), "--method", "classic", "--diameter", "24", "--stitch-threshold", "0.5", "--rois"]
    assert main(args) == 0
    assert "--rois not written for stacks" in caplog.text
    with tifffile.TiffFile(out / "labels" / "movie.tif") as tif:
        assert tif.series[0].axes == "TZYX"
        found = tif.asarray().reshape(6, 128, 128)
    assert read_pixel_size(out / "labels" / "movie.tif") == pytest.approx(0.5)
    for k in range(6):
        assert np.unique(found[k]).size == 4  # three nuclei in every plane
    for t in range(2):  # stitched along Z within each time point: three objects per time point
        assert np.unique(found[3 * t : 3 * t + 3]).size == 4
    rows = list(csv.DictReader((out / "measurements.csv").open()))
    assert [r["image"] for r in rows].count("movie[T=1,Z=2]") == 3
    assert float(rows[0]["area_um2"]) == pytest.approx(int(rows[0]["area"]) * 0.25, rel=1e-3)
    assert (out / "report.html").is_file()
