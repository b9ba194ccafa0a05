import numpy as np
import pytest
import tifffile

from workflow.core.calibration import read_pixel_size
from workflow.core.labels import read_labels, write_labels


@pytest.fixture
def plane():
    return np.arange(64 * 48, dtype=np.uint16).reshape(64, 48)


def test_imagej_calibration_in_microns_or_nanometres(tmp_path, plane):
    tifffile.imwrite(tmp_path / "um.tif", plane, imagej=True, resolution=(1 / 0.325, 1 / 0.325), metadata={"unit": "micron"})
    tifffile.imwrite(tmp_path / "nm.tif", plane, imagej=True, resolution=(1 / 650, 1 / 650), metadata={"unit": "nm"})
    assert read_pixel_size(tmp_path / "um.tif") == pytest.approx(0.325)
    assert read_pixel_size(tmp_path / "nm.tif") == pytest.approx(0.65)


def test_ome_tiff_physical_size(tmp_path, plane):
    tifffile.imwrite(tmp_path / "a.ome.tif", plane, metadata={"axes": "YX", "PhysicalSizeX": 0.1625, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": 0.1625})
    tifffile.imwrite(tmp_path / "b.ome.tif", plane, metadata={"axes": "YX", "PhysicalSizeX": 325, "PhysicalSizeXUnit": "nm"})
    assert read_pixel_size(tmp_path / "a.ome.tif") == pytest.approx(0.1625)
    assert read_pixel_size(tmp_path / "b.ome.tif") == pytest.approx(0.325)


def test_resolution_in_centimetres_counts_and_print_dpi_does_not(tmp_path, plane):
    tifffile.imwrite(tmp_path / "cm.tif", plane, resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit="CENTIMETER")
    tifffile.imwrite(tmp_path / "dpi.tif", plane, resolution=(72, 72), resolutionunit="INCH")
    tifffile.imwrite(tmp_path / "bare.tif", plane)
    assert read_pixel_size(tmp_path / "cm.tif") == pytest.approx(0.5)
    assert read_pixel_size(tmp_path / "dpi.tif") is None
    assert read_pixel_size(tmp_path / "bare.tif") is None
    (tmp_path / "a.png").write_bytes(b"not read")
    assert read_pixel_size(tmp_path / "a.png") is None


@pytest.mark.parametrize("count", [3, 70000])  # uint16 (ImageJ metadata) and uint32 (resolution tags)
def test_label_images_keep_the_calibration(tmp_path, count):
    labels = (np.arange(count).reshape(2, count // 2) + 1) if count > 100 else np.array([[0, 1], [2, 3]])
    write_labels(tmp_path / "labels.tif", labels, pixel_size=0.325)
    assert read_pixel_size(tmp_path / "labels.tif") == pytest.approx(0.325)
    np.testing.assert_array_equal(read_labels(tmp_path / "labels.tif"), labels)
    if count < 100:
        with tifffile.TiffFile(tmp_path / "labels.tif") as tif:
            assert tif.imagej_metadata["unit"] == "um"  # Fiji: Image > Properties shows micrometres
