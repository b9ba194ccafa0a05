"""Nuclei as ImageJ / Fiji polygon ROIs (roifile): one ROI per nucleus, named by its label,
in a zip that Fiji's ROI Manager opens (File > Open, or drag and drop)."""

from __future__ import annotations

import os
import zipfile

import cv2
import numpy as np
from roifile import ROI_TYPE, ImagejRoi, roiwrite
from scipy import ndimage as ndi

from workflow.core.files import atomic_path


def nucleus_outlines(labels: np.ndarray) -> dict[int, np.ndarray]:
    """Label -> (N, 2) polygon (x, y) tracing the centres of the nucleus' outer boundary pixels
    (its largest part, when a label has several)."""
    outlines = {}
    for index, window in enumerate(ndi.find_objects(labels), start=1):
        if window is None:
            continue
        mask = np.pad((labels[window] == index).astype(np.uint8), 1)  # a border, so outlines close inside it
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        points = max(contours, key=cv2.contourArea)[:, 0, :]
        outlines[index] = points + np.array([window[1].start - 1, window[0].start - 1])
    return outlines


def write_rois(path: str | os.PathLike, labels: np.ndarray) -> None:
    """All nuclei of `labels` as polygon ROIs named by label ('1', '2', ...) in a zip, written atomically."""
    rois = []
    for index, points in nucleus_outlines(labels).items():
        roi = ImagejRoi.frompoints(points.astype(np.int32), name=str(index))
        roi.roitype = ROI_TYPE.POLYGON
        rois.append(roi)
    with atomic_path(path) as tmp:
        if rois:
            roiwrite(tmp, rois, mode="w")
        else:  # an image without nuclei: an empty zip, so every finished image has its file
            zipfile.ZipFile(tmp, "w").close()
