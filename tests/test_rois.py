import cv2
import numpy as np
from roifile import ROI_TYPE, roiread

from tests.synthetic import disks, nucleus_image
from workflow.cli import main
from workflow.core.labels import read_labels
from workflow.core.rois import write_rois


def test_each_nucleus_is_one_polygon_roi_named_by_label_that_redraws_its_mask(tmp_path):
    labels = disks((120, 140), ((30, 30), (30, 52), (80, 100)), 11)  # the first two touch
    labels[78:83, 97:104] = 0  # a hole: the ROI is the outer outline
    labels[110:113, 5:9] = 7  # a small object with a gap in the numbering
    write_rois(tmp_path / "r.zip", labels)
    rois = roiread(tmp_path / "r.zip")
    assert [roi.name for roi in rois] == ["1", "2", "3", "7"]
    for roi in rois:
        assert roi.roitype == ROI_TYPE.POLYGON
        drawn = np.zeros(labels.shape, np.uint8)
        cv2.fillPoly(drawn, [np.round(roi.coordinates()).astype(np.int32)], 1)
        truth = labels == int(roi.name)
        if roi.name == "3":
            truth = cv2.morphologyEx(truth.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8)).astype(bool)  # outline only
        overlap = (drawn.astype(bool) & truth).sum() / (drawn.astype(bool) | truth).sum()
        assert overlap > 0.95, (roi.name, overlap)
    write_rois(tmp_path / "none.zip", np.zeros((10, 10), np.int32))
    assert (tmp_path / "none.zip").is_file() and roiread(tmp_path / "none.zip") == []


def test_predict_writes_one_roi_zip_per_image_with_rois(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), nucleus_image(disks((128, 128), ((30, 30), (30, 90), (90, 60)), 12), seed=1))
    out = tmp_path / "out"
    assert main(["predict", str(images), "-o", str(out), "--method", "classic", "--rois"]) == 0
    rois = roiread(out / "rois" / "a.zip")
    assert sorted(int(r.name) for r in rois) == list(range(1, int(read_labels(out / "labels" / "a.tif").max()) + 1))
