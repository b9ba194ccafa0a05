"""Batch prediction: the per-nucleus and per-run outputs, parallel runs, Dask, and resuming a killed run."""

import csv
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from tests.synthetic import disks, nucleus_image
from workflow import batch
from workflow.batch import predict_folder
from workflow.cli import main
from workflow.config import load_config
from workflow.core.labels import read_labels, rle_decode, write_labels

CENTRES = (((30, 30), (30, 90), (90, 60)), ((40, 40), (90, 90)), ((64, 64),), ((25, 25), (25, 100), (100, 25), (100, 100)))


def make_images(folder, count, side=128):
    folder.mkdir(parents=True, exist_ok=True)
    truth = folder.parent / "truth"
    for k in range(count):
        labels = disks((side, side), CENTRES[k % len(CENTRES)], 12)
        cv2.imwrite(str(folder / f"im{k:02d}.png"), nucleus_image(labels, seed=k))
        write_labels(truth / f"im{k:02d}.tif", labels)
    return folder, truth


def label_arrays(out):
    return {p.name: read_labels(p) for p in sorted((out / "labels").iterdir())}


def test_outputs_people_use(tmp_path):
    images, truth = make_images(tmp_path / "images", 3)
    out = tmp_path / "out"
    args = ["predict", str(images), "-o", str(out), "--method", "classic", "--overlays", "--kaggle-csv", "--truth", str(truth)]
    assert main(args) == 0

    rows = list(csv.DictReader((out / "measurements.csv").open()))
    pixel_columns = ["image", "label", "area", "centroid_y", "centroid_x", "equivalent_diameter", "eccentricity", "mean_intensity"]
    micrometre_columns = ["area_um2", "centroid_y_um", "centroid_x_um", "equivalent_diameter_um"]
    assert list(rows[0]) == pixel_columns + micrometre_columns
    assert all(r[c] == "" for r in rows for c in micrometre_columns)  # PNGs carry no pixel size
    assert [sum(r["image"] == f"im{k:02d}" for r in rows) for k in range(3)] == [3, 2, 1]
    single = next(r for r in rows if r["image"] == "im02")
    assert abs(float(single["centroid_y"]) - 64) < 1.5 and abs(float(single["equivalent_diameter"]) - 25) < 3
    assert float(single["mean_intensity"]) > 150  # the nucleus is bright (180) on a dark (20) background

    overlay = cv2.imread(str(out / "overlays" / "im02.png"))[:, :, ::-1]
    contour = np.all(overlay == (255, 255, 0), axis=2)
    assert contour[64, 64 - 12 : 64 + 13].any() and not contour[5:20, 5:20].any()

    submission = list(csv.DictReader((out / "submission.csv").open()))
    assert sum(r["ImageId"] == "im00" for r in submission) == 3
    decoded = sum(rle_decode(r["EncodedPixels"], (128, 128)) for r in submission if r["ImageId"] == "im00")
    np.testing.assert_array_equal(decoded > 0, read_labels(out / "labels" / "im00.tif") > 0)

    report = (out / "report.html").read_text()
    assert report.count("<figure>") == 3 and report.count("data:image/png;base64,") == 4  # 3 thumbnails + histograms
    assert report.count('<a href="overlays/') == 3 and '<a href="overlays/im02.png">' in report  # thumbnails open the full overlay
    assert "Mean DSB score over 3 images with ground truth" in report and "im01" in report


@pytest.mark.slow
def test_parallel_and_dask_runs_give_the_same_labels(tmp_path):
    images, _ = make_images(tmp_path / "images", 4)
    cfg = load_config(overrides=["method=classic", "output.report=false"])
    assert predict_folder(images, tmp_path / "one", cfg) == 0
    assert predict_folder(images, tmp_path / "two", cfg, jobs=2) == 0
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        assert predict_folder(images, tmp_path / "dask", cfg, scheduler=cluster.scheduler_address) == 0
    reference = label_arrays(tmp_path / "one")
    assert len(reference) == 4
    for run in ("two", "dask"):
        other = label_arrays(tmp_path / run)
        assert other.keys() == reference.keys()
        for name in reference:
            np.testing.assert_array_equal(other[name], reference[name])


def test_unreachable_dask_scheduler_is_a_one_line_error(tmp_path, monkeypatch, caplog):
    pytest.importorskip("distributed")
    images, _ = make_images(tmp_path / "images", 1)
    monkeypatch.setattr(batch, "DASK_CONNECT_TIMEOUT", "1s")
    assert main(["predict", str(images), "-o", str(tmp_path / "out"), "--method", "classic", "--dask-scheduler", "tcp://127.0.0.1:9"]) == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in caplog.text


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_outputs(tmp_path):
    images, _ = make_images(tmp_path / "images", 12, side=384)
    command = [sys.executable, "-m", "workflow.cli", "predict", str(images), "--method", "classic", "--no-report"]
    subprocess.run([*command, "-o", str(tmp_path / "whole")], check=True, capture_output=True)

    out = tmp_path / "killed"
    process = subprocess.Popen([*command, "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / "labels").is_dir() or len(list((out / "labels").glob("*.tif"))) < 3:
        assert time.monotonic() < deadline and process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = len(list((out / "labels").glob("*.tif")))
    assert 3 <= finished < 12

    assert subprocess.run([*command, "-o", str(out)], capture_output=True).returncode == 0
    whole, resumed = label_arrays(tmp_path / "whole"), label_arrays(out)
    assert resumed.keys() == whole.keys()
    for name in whole:
        np.testing.assert_array_equal(resumed[name], whole[name])
    assert not list(out.rglob("*.part"))  # a kill leaves no half-written file behind
    assert (out / "measurements.csv").read_text() == (tmp_path / "whole" / "measurements.csv").read_text()
