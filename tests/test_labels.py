import cv2
import numpy as np
import pytest
import tifffile

from tests.synthetic import disks
from workflow.core.files import InputError
from workflow.core.labels import (
    fill_holes,
    import_kaggle_folder,
    labels_to_rle,
    median_diameter,
    read_labels,
    relabel,
    remove_small,
    resize_labels,
    rle_decode,
    rle_encode,
    write_labels,
)


def test_write_read_roundtrip_is_uint16_tiff(tmp_path):
    labels = disks()
    labels[labels == 3] = 700
    write_labels(tmp_path / "out" / "x.tif", labels)
    on_disk = tifffile.imread(tmp_path / "out" / "x.tif")
    assert on_disk.dtype == np.uint16
    np.testing.assert_array_equal(read_labels(tmp_path / "out" / "x.tif"), labels)
    assert not list((tmp_path / "out").glob("*.part"))  # atomic write leaves no temp file


def test_write_relabels_when_labels_exceed_uint16(tmp_path):
    labels = np.zeros((4, 4), np.int64)
    labels[0, 0], labels[3, 3] = 70000, 5
    write_labels(tmp_path / "x.tif", labels)
    assert sorted(np.unique(read_labels(tmp_path / "x.tif"))) == [0, 1, 2]


def test_more_than_65535_objects_are_written_as_uint32(tmp_path):
    labels = np.arange(70000, dtype=np.int64).reshape(280, 250)  # 69999 objects, one pixel each
    write_labels(tmp_path / "x.tif", labels)
    assert tifffile.imread(tmp_path / "x.tif").dtype == np.uint32
    np.testing.assert_array_equal(read_labels(tmp_path / "x.tif"), labels)


def test_float_and_negative_labels_are_rejected(tmp_path):
    tifffile.imwrite(tmp_path / "f.tif", np.full((4, 4), 1.5, np.float32))
    with pytest.raises(InputError, match="float"):
        read_labels(tmp_path / "f.tif")
    tifffile.imwrite(tmp_path / "n.tif", np.full((4, 4), -1, np.int16))
    with pytest.raises(InputError, match="negative"):
        read_labels(tmp_path / "n.tif")
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((4, 4, 3), np.uint8), photometric="rgb")
    with pytest.raises(InputError, match="2-D"):
        read_labels(tmp_path / "rgb.tif")


def test_import_kaggle_folder(tmp_path):
    sample = tmp_path / "abc"
    (sample / "images").mkdir(parents=True)
    (sample / "masks").mkdir()
    truth = disks((40, 50), centres=((10, 10), (25, 35)), radius=5)
    cv2.imwrite(str(sample / "images" / "abc.png"), np.full((40, 50, 3), 30, np.uint8))
    for k in (1, 2):
        cv2.imwrite(str(sample / "masks" / f"m{k}.png"), (truth == k).astype(np.uint8) * 255)
    image, labels = import_kaggle_folder(sample)
    assert image.shape == (40, 50, 3)
    np.testing.assert_array_equal(labels, truth)


def test_import_kaggle_folder_reports_size_mismatch(tmp_path):
    sample = tmp_path / "s"
    (sample / "images").mkdir(parents=True)
    (sample / "masks").mkdir()
    cv2.imwrite(str(sample / "images" / "s.png"), np.zeros((10, 10), np.uint8))
    cv2.imwrite(str(sample / "masks" / "m.png"), np.zeros((12, 10), np.uint8))
    with pytest.raises(InputError, match="does not match image size"):
        import_kaggle_folder(sample)


def test_rle_hand_computed_column_major_one_indexed():
    mask = np.array([[0, 1, 1], [0, 1, 0], [1, 0, 0]], bool)
    # column-major pixel order: (0,0)=1 (1,0)=2 (2,0)=3 (0,1)=4 (1,1)=5 (2,1)=6 (0,2)=7 ...
    assert rle_encode(mask) == "3 3 7 1"
    np.testing.assert_array_equal(rle_decode("3 3 7 1", (3, 3)), mask)
    assert rle_encode(np.zeros((2, 2), bool)) == ""
    assert rle_encode(np.ones((2, 2), bool)) == "1 4"


def test_rle_roundtrip_and_errors(rng):
    mask = rng.random((37, 23)) > 0.6
    np.testing.assert_array_equal(rle_decode(rle_encode(mask), mask.shape), mask)
    with pytest.raises(ValueError):
        rle_decode("1", (2, 2))
    with pytest.raises(ValueError):
        rle_decode("3 5", (2, 2))
    labels = disks((30, 30), ((8, 8), (20, 20)), 3)
    rows = labels_to_rle(labels)
    assert len(rows) == 2
    np.testing.assert_array_equal(rle_decode(rows[1], labels.shape), labels == 2)


def test_relabel_remove_small_fill_holes():
    labels = np.zeros((10, 10), np.int32)
    labels[0:4, 0:4] = 9
    labels[1:3, 1:3] = 0  # a hole inside object 9
    labels[8, 8] = 4  # a one-pixel object
    assert sorted(np.unique(relabel(labels))) == [0, 1, 2]
    small_removed = remove_small(labels, 2)
    assert small_removed[8, 8] == 0 and small_removed.max() == 1
    filled = fill_holes(labels)
    assert (filled[0:4, 0:4] == 9).all() and filled[8, 8] == 4


def test_median_diameter_and_resize():
    labels = disks(radius=10)
    area = (labels == 1).sum()
    assert median_diameter(labels) == pytest.approx(np.sqrt(4 * area / np.pi))
    assert median_diameter(np.zeros((5, 5), int)) is None
    big = resize_labels(labels, (256, 256))
    assert big.shape == (256, 256) and set(np.unique(big)) == {0, 1, 2, 3}


@pytest.mark.parametrize("factor", [0.7, 1.5, 2.3])
@pytest.mark.parametrize("contour_sigma", [0.0, 1.0])
def test_resize_labels_keeps_objects_in_place(factor, contour_sigma):
    """Pixel-centre aligned: over many placements an object's centroid lands where the image
    puts it (no systematic drift; single placements differ by quantisation only)."""
    size = 60
    shape = (round(size * factor), round(size * factor))
    errors = []
    for start in range(5, 45):
        labels = np.zeros((size, size), np.int32)
        labels[start : start + 7, start : start + 7] = 1
        rows, cols = np.nonzero(resize_labels(labels, shape, contour_sigma) == 1)
        expected = (start + 3.5) * shape[0] / size
        errors += [rows.mean() + 0.5 - expected, cols.mean() + 0.5 - expected]
    assert abs(np.mean(errors)) < 0.1 and np.max(np.abs(errors)) < 0.5  # cv2 INTER_NEAREST: 0.25-0.45 drift


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_smooth_resize_draws_the_outline_between_coarse_pixels():
    """A disc segmented at 1/4 resolution comes back rounder than its nearest-neighbour staircase."""
    rows, cols = np.mgrid[:128, :128]
    disc = ((rows - 63.5) ** 2 + (cols - 63.5) ** 2 < 24**2).astype(np.int32)
    coarse = resize_labels(disc, (32, 32))
    staircase = resize_labels(coarse, (128, 128)) > 0
    smooth = resize_labels(coarse, (128, 128), contour_sigma=1.0) > 0
    assert _iou(smooth, disc > 0) > _iou(staircase, disc > 0) + 0.02
    assert abs(int(smooth.sum()) - int(disc.sum())) < 0.02 * disc.sum()  # the blur does not shrink a nucleus-sized object


def test_smooth_resize_keeps_numbers_touching_objects_and_tiny_objects():
    labels = np.zeros((20, 20), np.int32)
    labels[2:12, 2:8], labels[2:12, 8:14] = 5, 9  # touching along column 8
    labels[16, 16] = 7  # one pixel: its blurred peak stays below 0.5
    big = resize_labels(labels, (40, 40), contour_sigma=1.5)
    assert set(np.unique(big)) == {0, 5, 7, 9}
    assert (big[4:24, 14] == 5).all() and (big[4:24, 17] == 9).all()  # no gap where they touch
    assert (big[10:14, 4:28] > 0).all()
    assert np.argwhere(big == 7).tolist() == [[32, 32], [32, 33], [33, 32], [33, 33]]  # its 2 x 2 area, in place
