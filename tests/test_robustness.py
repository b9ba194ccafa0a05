"""A corpus of bad inputs, generated here, run through the commands a biologist uses: each
problem is one line naming the file, the good images still finish, and the exit status tells.
"""

import csv
import logging

import cv2
import numpy as np
import pytest
import tifffile

from tests.synthetic import disks, nucleus_image
from workflow.cli import main
from workflow.core.labels import read_labels, write_labels

BAD = {  # file name -> words its one-line error must contain
    "empty.png": "empty",
    "truncated.png": "truncated",
    "text.png": "cannot be decoded",
    "unnamed_axes.tif": "name the axes with --axes",
    "tiny.png": "too small",
}
DEGENERATE = ("black.png", "flat16.tif")  # valid images with nothing in them: no nucleus, no failure


@pytest.fixture
def corpus(tmp_path):
    """A folder with spaces and non-ASCII in its name: two good images, the bad ones, the degenerate ones."""
    folder = tmp_path / "Kerne ä ö" / "Bilder mit Leerzeichen"
    folder.mkdir(parents=True)
    for k in range(2):
        cv2.imwrite(str(folder / f"gut ü {k}.png"), nucleus_image(disks((96, 96), ((30, 30), (60, 70)), 10), seed=k))
    (folder / "empty.png").write_bytes(b"")
    cv2.imwrite(str(tmp_path / "whole.png"), nucleus_image(disks(), seed=5))
    (folder / "truncated.png").write_bytes((tmp_path / "whole.png").read_bytes()[:400])
    (folder / "text.png").write_text("this is a text file, not an image\n")
    tifffile.imwrite(folder / "unnamed_axes.tif", np.zeros((5, 64, 64), np.uint8), photometric="minisblack")  # planes or channels?
    tifffile.imwrite(folder / "stack.tif", np.zeros((5, 64, 64), np.uint8), metadata={"axes": "ZYX"})  # a Z-stack: segmented
    cv2.imwrite(str(folder / "tiny.png"), np.zeros((1, 1), np.uint8))
    cv2.imwrite(str(folder / "black.png"), np.zeros((80, 80), np.uint8))
    tifffile.imwrite(folder / "flat16.tif", np.full((80, 80), 1234, np.uint16))
    return folder


def error_lines(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("method", ["classic", "fast"])
def test_bad_images_fail_alone_with_one_line_each(corpus, tmp_path, caplog, method):
    caplog.set_level(logging.INFO)
    out = tmp_path / "out put ß"
    assert main(["predict", str(corpus), "-o", str(out), "--method", method, "--jobs", "2" if method == "classic" else "1"]) == 1
    errors = error_lines(caplog)
    for name, words in BAD.items():
        line = next(e for e in errors if name in e)
        assert words in line and "\n" not in line and "Traceback" not in line
    assert len(errors) == len(BAD)
    finished = sorted(p.stem for p in (out / "labels").iterdir())
    assert finished == sorted(["gut ü 0", "gut ü 1", "black", "flat16", "stack"])
    assert read_labels(out / "labels" / "black.tif").max() == 0 and read_labels(out / "labels" / "flat16.tif").max() == 0
    assert read_labels(out / "labels" / "gut ü 0.tif").max() >= 1
    assert "5 failed" in caplog.text and "5 segmented" in caplog.text
    sizes = {row["image"]: row["count"] for row in csv.DictReader((out / "sizes.csv").open())}
    assert sizes["black"] == "0" and sizes["gut ü 1"] != "0"


def test_unwritable_output_and_empty_folder_are_one_line_errors(corpus, tmp_path, caplog):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    assert main(["predict", str(corpus), "-o", str(blocker / "out"), "--method", "classic"]) == 2
    assert "not writable" in error_lines(caplog)[-1] and "a file" in error_lines(caplog)[-1]
    (tmp_path / "nothing here").mkdir()
    assert main(["predict", str(tmp_path / "nothing here"), "-o", str(tmp_path / "o"), "--method", "classic"]) == 2
    assert "no images found" in error_lines(caplog)[-1]


@pytest.mark.parametrize(
    "bad_mask, words",
    [
        (np.zeros((50, 50), np.uint16), "differs from ground truth"),
        (np.full((96, 96), -1, np.int16), "negative labels"),
        (np.full((96, 96), 1.5, np.float32), "float pixels"),
    ],
    ids=["size-mismatch", "negative", "float"],
)
def test_bad_masks_are_one_line_errors_naming_the_file(tmp_path, caplog, bad_mask, words):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    write_labels(pred / "m.tif", disks((96, 96), ((40, 40),), 10))
    truth.mkdir()
    if bad_mask.shape == (96, 96):
        tifffile.imwrite(truth / "m.tif", bad_mask)
    else:
        write_labels(truth / "m.tif", bad_mask)
    assert main(["evaluate", str(pred), str(truth)]) == 1  # the pair is skipped, the rest scored; 1: something failed
    line = next(line for line in error_lines(caplog) if "m.tif" in line)
    assert words in line and "m.tif" in line and "\n" not in line
