import csv
import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests.conftest import DATA
from tests.synthetic import disks, nucleus_image
from workflow.cli import main
from workflow.core.labels import read_labels, write_labels


def test_help_lists_every_subcommand():
    result = subprocess.run([sys.executable, "-m", "workflow.cli", "--help"], capture_output=True, text=True, check=True)
    for command in ("evaluate", "predict", "train-presegment", "train", "param-search", "cluster", "import-kaggle"):
        assert command in result.stdout


def test_help_and_evaluate_start_without_torch(tmp_path):
    """Reading settings and scoring need no network: the command starts in a fraction of a second."""
    truth = tmp_path / "truth"
    write_labels(truth / "a.tif", disks((64, 64), ((20, 20), (40, 44)), 8))
    script = (
        "import sys\n"
        "from workflow.cli import main\n"
        f"status = main(['evaluate', {str(truth)!r}, {str(truth)!r}])\n"
        "import workflow.config\n"
        "workflow.config.load_config(overrides=['presegment.detect.zoom=1.5'])\n"
        "try:\n    main(['predict', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(status, 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines()[-1] == "0 False"


@pytest.fixture
def folders(tmp_path):
    """Two synthetic images, their ground truth, and a real DSB image with its mask."""
    images, truth = tmp_path / "my images ä", tmp_path / "truth"
    images.mkdir()
    for k, centres in enumerate((((30, 30), (30, 90), (90, 60)), ((40, 40), (90, 90)))):
        labels = disks((128, 128), centres, 12)
        cv2.imwrite(str(images / f"img{k}.png"), nucleus_image(labels, seed=k))
        write_labels(truth / f"img{k}.tif", labels)
    real = next((DATA / "images").glob("*.png"))
    shutil.copy(real, images / real.name)
    shutil.copy(DATA / "masks" / f"{real.stem}.tif", truth / f"{real.stem}.tif")
    return images, truth


def test_classic_predict_evaluate_and_resume(folders, tmp_path, capsys):
    images, truth = folders
    out = tmp_path / "out"
    assert main(["predict", str(images), "-o", str(out), "--method", "classic"]) == 0
    written = sorted(p.name for p in (out / "labels").iterdir())
    assert written == sorted(p.stem + ".tif" for p in images.iterdir())
    config = json.loads((out / "config.json").read_text())
    assert config["size"]["target_diameter"] == 40.0
    sizes = list(csv.DictReader((out / "sizes.csv").open()))
    assert {row["image"]: int(row["count"]) for row in sizes}["img0"] == 3

    first = read_labels(out / "labels" / "img0.tif")
    (out / "labels" / "img1.tif").unlink()  # as if the run had been killed before img1
    mtime = (out / "labels" / "img0.tif").stat().st_mtime_ns
    assert main(["predict", str(images), "-o", str(out), "--method", "classic"]) == 0
    assert (out / "labels" / "img0.tif").stat().st_mtime_ns == mtime  # skipped, not redone
    assert (out / "labels" / "img1.tif").is_file()
    np.testing.assert_array_equal(read_labels(out / "labels" / "img0.tif"), first)

    capsys.readouterr()
    assert main(["evaluate", str(out / "labels"), str(truth), "--csv", str(tmp_path / "scores.csv")]) == 0
    printed = capsys.readouterr().out
    assert "mean DSB score" in printed
    rows = list(csv.DictReader((tmp_path / "scores.csv").open()))
    assert rows[-1]["image"] == "mean" and len(rows) == 4
    assert float(next(r for r in rows if r["image"] == "img0")["dsb"]) > 0.8


def test_predict_takes_one_file_or_a_glob(folders, tmp_path):
    images, _ = folders
    one = tmp_path / "one"
    assert main(["predict", str(images / "img1.png"), "-o", str(one), "--method", "classic", "--no-report"]) == 0
    assert sorted(p.name for p in (one / "labels").iterdir()) == ["img1.tif"]
    matched = tmp_path / "matched"
    assert main(["predict", f"{images}/img*.png", "-o", str(matched), "--method", "classic", "--no-report"]) == 0
    assert sorted(p.name for p in (matched / "labels").iterdir()) == ["img0.tif", "img1.tif"]
    np.testing.assert_array_equal(read_labels(matched / "labels" / "img1.tif"), read_labels(one / "labels" / "img1.tif"))


def test_calibration_flows_from_an_ome_tiff_into_labels_and_measurements(folders, tmp_path):
    """An OME-TIFF's pixel size reaches the label TIFF (Fiji shows um) and the um columns; a PNG has
    none (columns left empty); --pixel-size gives one to every image."""
    import tifffile

    from workflow.core.calibration import read_pixel_size

    images, _ = folders
    plane = cv2.imread(str(images / "img0.png"), cv2.IMREAD_GRAYSCALE).astype(np.uint16) * 100
    tifffile.imwrite(images / "ome.ome.tif", plane, metadata={"axes": "YX", "PhysicalSizeX": 0.5, "PhysicalSizeXUnit": "µm"})
    out = tmp_path / "out"
    assert main(["predict", str(images), "-o", str(out), "--method", "classic", "--diameter", "24"]) == 0
    assert read_pixel_size(out / "labels" / "ome.ome.tif") == pytest.approx(0.5)
    assert read_pixel_size(out / "labels" / "img0.tif") is None
    rows = list(csv.DictReader((out / "measurements.csv").open()))
    calibrated = [r for r in rows if r["image"] == "ome.ome"]
    assert len(calibrated) == 3
    for row in calibrated:
        assert float(row["area_um2"]) == pytest.approx(int(row["area"]) * 0.25, rel=1e-3)
        assert float(row["equivalent_diameter_um"]) == pytest.approx(float(row["equivalent_diameter"]) * 0.5, rel=1e-3)
    assert all(r["area_um2"] == "" for r in rows if r["image"] == "img0")
    sizes = {r["image"]: r["pixel_size_um"] for r in csv.DictReader((out / "sizes.csv").open())}
    assert sizes["ome.ome"] == "0.5" and sizes["img0"] == ""
    page = (out / "report.html").read_text()
    median_um = np.median([float(r["equivalent_diameter"]) for r in calibrated]) * 0.5
    assert "<th>median diameter (µm)</th>" in page and "<td>ome.ome</td><td>3</td>" in page and f"<td>{median_um:.2f}</td><td>0.5</td>" in page

    given = tmp_path / "given"
    assert main(["predict", str(images / "img0.png"), "-o", str(given), "--method", "classic", "--pixel-size", "0.2", "--no-report"]) == 0
    assert read_pixel_size(given / "labels" / "img0.tif") == pytest.approx(0.2)
    assert json.loads((given / "config.json").read_text())["input"]["pixel_size"] == 0.2
    assert main(["predict", str(images), "-o", str(tmp_path / "bad"), "--pixel-size", "0"]) == 2


def test_evaluate_counts_missing_predictions_as_empty(folders, tmp_path, caplog):
    _, truth = folders
    pred = tmp_path / "pred"
    write_labels(pred / "img0.tif", read_labels(truth / "img0.tif"))
    assert main(["evaluate", str(pred), str(truth), "--csv", str(tmp_path / "s.csv")]) == 0
    rows = {r["image"]: r for r in csv.DictReader((tmp_path / "s.csv").open())}
    assert float(rows["img0"]["dsb"]) == 1.0 and float(rows["img1"]["dsb"]) == 0.0
    assert "no prediction" in caplog.text


def test_bad_image_in_batch_fails_alone(folders, tmp_path, caplog):
    images, _ = folders
    (images / "broken.png").write_text("not an image")
    out = tmp_path / "out"
    assert main(["predict", str(images), "-o", str(out), "--method", "classic"]) == 1
    assert "broken.png: cannot be decoded" in caplog.text
    assert (out / "labels" / "img0.tif").is_file() and not (out / "labels" / "broken.tif").exists()


def test_user_errors_exit_2_with_one_line(tmp_path, caplog):
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(tmp_path / "empty"), "-o", str(tmp_path / "o"), "--method", "classic"]) == 2
    assert "no images found" in caplog.text
    assert main(["predict", str(tmp_path), "-o", str(tmp_path / "o"), "--set", "size.nope=1"]) == 2
    assert main(["train", str(tmp_path / "empty"), "-o", str(tmp_path / "run"), "--stages", "unet,polish"]) == 2
    assert "unknown stage 'polish'" in caplog.text
    assert main(["predict", str(tmp_path / "empty"), "-o", str(tmp_path / "o"), "--models", str(tmp_path / "empty")]) == 2
    assert "not a models folder" in caplog.text


def test_normalisation_flags_are_recorded_and_bad_percentiles_refused(folders, tmp_path, caplog):
    images, _ = folders
    out = tmp_path / "out"
    assert main(["predict", str(images), "-o", str(out), "--method", "classic", "--percentiles", "1", "99", "--per-channel", "--polarity", "auto"]) == 0
    assert json.loads((out / "config.json").read_text())["input"] == {
        "normalize": True,
        "stretch_percentiles": [1.0, 99.0],
        "per_channel": True,
        "stretch_8bit": False,
        "stretch_dim_dark": 64,
        "channel": None,
        "axes": None,
        "pixel_size": None,
        "polarity": "auto",
    }
    plain = tmp_path / "plain"
    assert main(["predict", str(images), "-o", str(plain), "--method", "classic", "--no-normalize"]) == 0
    assert json.loads((plain / "config.json").read_text())["input"]["normalize"] is False
    stretched = tmp_path / "stretched"
    assert main(["predict", str(images), "-o", str(stretched), "--method", "classic", "--stretch-8bit"]) == 0
    assert json.loads((stretched / "config.json").read_text())["input"]["stretch_8bit"] is True
    assert main(["predict", str(images), "-o", str(tmp_path / "bad"), "--method", "classic", "--percentiles", "99", "1"]) == 2
    assert "--percentiles: stretch_percentiles must satisfy 0 <= low < high <= 100, got [99.0, 1.0]" in caplog.text
    assert main(["predict", str(images), "-o", str(tmp_path / "bad"), "--set", "input.stretch_dim_dark=300"]) == 2
    assert "stretch_dim_dark must be a number of grey levels from 0 to 256, got 300" in caplog.text
    assert main(["predict", str(images), "-o", str(tmp_path / "bad"), "--set", "input.stretch_percentiles=[5, 200]"]) == 2
    assert "stretch_percentiles must satisfy" in caplog.text


@pytest.mark.parametrize(
    "setting, message",
    [
        ("tiling.tile_size=-256", "config key 'tiling.tile_size': -256 is out of range (must be > 0)"),
        ("tiling.tile_size=0", "config key 'tiling.tile_size': 0 is out of range (must be > 0)"),
        ("presegment.detect.score_threshold=1.5", "'presegment.detect.score_threshold': 1.5 is out of range (must be in [0, 1])"),
        ("presegment.train.augment.scale_range=[2, 1]", "'presegment.train.augment.scale_range': (2.0, 1.0) is not ordered"),
        ("size.min_scale=9", "size.min_scale = 9.0 and size.max_scale = 8.0: the first must not exceed the second"),
        ("presegment.train.iterations=-3", "'presegment.train.iterations': -3 is out of range (must be >= 0)"),  # 0: narrowed only
        ("unet.train.iterations=0", "'unet.train.iterations': 0 is out of range (must be > 0)"),
    ],
)
def test_out_of_range_settings_are_refused_before_any_work(folders, tmp_path, caplog, setting, message):
    images, _ = folders
    out = tmp_path / "out"
    assert main(["predict", str(images), "-o", str(out), "--method", "classic", "--set", setting]) == 2
    assert message in caplog.text and not out.exists()


@pytest.mark.parametrize("diameter", ["-5", "0"])
def test_a_diameter_that_is_not_positive_is_refused(folders, tmp_path, caplog, diameter):
    images, _ = folders
    assert main(["predict", str(images), "-o", str(tmp_path / "out"), "--method", "classic", "--diameter", diameter]) == 2
    assert "config key 'size.diameter'" in caplog.text and "must be > 0" in caplog.text


def test_unlistable_folder_csv_folder_and_file_as_output_get_one_line(folders, tmp_path, caplog, monkeypatch):
    images, truth = folders
    assert main(["evaluate", str(truth), str(truth), "--csv", str(tmp_path)]) == 2
    assert "--csv names a folder" in caplog.text
    blocker = tmp_path / "a file"
    blocker.write_text("")
    assert main(["predict", str(images), "-o", str(blocker), "--method", "classic"]) == 2
    assert "is a file, not a folder" in caplog.text

    def refuse(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(type(images), "iterdir", refuse)  # as a folder without read permission does for a non-root user
    assert main(["predict", str(images), "-o", str(tmp_path / "out"), "--method", "classic"]) == 2
    assert "cannot be listed (Permission denied)" in caplog.text


def test_nan_pixels_are_reported_and_the_image_still_segmented(tmp_path, caplog):
    images = tmp_path / "images"
    images.mkdir()
    image = nucleus_image(disks((128, 128), ((30, 30), (30, 90), (90, 60)), 12)).astype(np.float32) / 255
    image[0, :5] = np.nan
    image[1, 0] = np.inf
    import tifffile

    tifffile.imwrite(images / "float.tif", image)
    out = tmp_path / "out"
    assert main(["predict", str(images), "-o", str(out), "--method", "classic"]) == 0
    assert "float.tif: 6 non-finite pixels (NaN or inf) left out of the intensity stretch" in caplog.text
    assert read_labels(out / "labels" / "float.tif").max() == 3


def test_broken_link_counts_as_failed_and_named(folders, tmp_path, caplog):
    images, _ = folders
    (images / "gone.png").symlink_to(tmp_path / "nowhere.png")
    assert main(["predict", str(images), "-o", str(tmp_path / "out"), "--method", "classic"]) == 1
    assert "gone.png: broken symbolic link" in caplog.text


def test_a_failed_write_leaves_none_of_the_image_outputs_and_names_the_folder(folders, tmp_path, caplog, monkeypatch):
    import workflow.batch

    images, _ = folders

    def refuse(path, labels, pixel_size=None):
        raise PermissionError(13, "Permission denied", str(path.parent / ".img0.tif.abc.part"))

    monkeypatch.setattr(workflow.batch, "write_labels", refuse)
    out = tmp_path / "out"
    assert main(["predict", str(images), "-o", str(out), "--method", "classic"]) == 1
    assert f"{out / 'labels'}: cannot write the outputs of img0 here (Permission denied)" in caplog.text
    assert ".part" not in caplog.text and not list((out / "measurements").glob("*.csv"))


def test_evaluate_skips_a_bad_pair_scores_the_rest_and_says_so(folders, tmp_path, caplog):
    _, truth = folders
    pred = tmp_path / "pred"
    write_labels(pred / "img0.tif", read_labels(truth / "img0.tif"))
    write_labels(pred / "img1.tif", np.zeros((10, 10), np.uint16))  # wrong size
    write_labels(pred / "extra.tif", np.zeros((10, 10), np.uint16))  # no ground truth
    assert main(["evaluate", str(pred), str(truth), "--csv", str(tmp_path / "s.csv")]) == 1
    assert "img1.tif: size (10, 10) differs from ground truth (128, 128); not scored" in caplog.text
    assert "1 prediction(s) have no ground truth and were not scored: extra" in caplog.text
    rows = {r["image"]: r for r in csv.DictReader((tmp_path / "s.csv").open())}
    assert float(rows["img0"]["dsb"]) == 1.0 and "img1" not in rows


def test_predict_with_a_mismatched_truth_mask_still_reports(folders, tmp_path, caplog):
    images, truth = folders
    caplog.set_level("INFO")
    write_labels(truth / "img1.tif", np.zeros((10, 10), np.uint16))
    out = tmp_path / "out"
    assert main(["predict", str(images), "-o", str(out), "--method", "classic", "--truth", str(truth)]) == 0
    assert "report: " in caplog.text and "differs from ground truth" in caplog.text
    assert (out / "report.html").is_file() and "3 segmented, 0 skipped (already done), 0 failed" in caplog.text


def test_a_rerun_with_other_settings_is_refused_unless_overwrite(folders, tmp_path, caplog):
    images, _ = folders
    out = tmp_path / "out"
    assert main(["predict", str(images), "-o", str(out), "--method", "classic"]) == 0
    saved = (out / "config.json").read_text()
    assert main(["predict", str(images), "-o", str(out), "--method", "classic", "--set", "size.contour_sigma=0"]) == 2
    assert "holds outputs made with other settings (size.contour_sigma: 1.5 before, 0.0 now)" in caplog.text
    assert (out / "config.json").read_text() == saved
    caplog.set_level("INFO")
    training_only = ["--set", "adapt.minutes=120", "--set", "presegment.train.learning_rate=0.0002"]  # e.g. a resumed nucflow train
    assert main(["predict", str(images), "-o", str(out), "--method", "classic", *training_only]) == 0
    assert "3 skipped (already done)" in caplog.text
    assert main(["predict", str(images), "-o", str(out), "--method", "classic", "--set", "size.contour_sigma=0", "--overwrite"]) == 0
    assert json.loads((out / "config.json").read_text())["size"]["contour_sigma"] == 0.0


def kaggle_sample(root, name, truth, mask_shape=None):
    """A Kaggle DSB sample folder: <name>/images/<name>.png and one PNG per nucleus in <name>/masks/."""
    (root / name / "images").mkdir(parents=True)
    (root / name / "masks").mkdir()
    cv2.imwrite(str(root / name / "images" / f"{name}.png"), nucleus_image(truth, seed=1))
    for k in range(1, int(truth.max()) + 1):
        mask = (truth == k).astype(np.uint8) * 255
        cv2.imwrite(str(root / name / "masks" / f"m{k}.png"), mask if mask_shape is None else np.zeros(mask_shape, np.uint8))


def test_import_kaggle_writes_a_training_folder_skips_finished_and_names_bad_samples(tmp_path, caplog):
    source, out = tmp_path / "kaggle", tmp_path / "data"
    for k in range(4):
        kaggle_sample(source, f"s{k}", disks((64, 80), ((20, 20), (40, 50 + k)), 8))
    kaggle_sample(source, "broken", disks((64, 80), ((20, 20),), 8), mask_shape=(30, 30))
    (source / "notes").mkdir()  # a folder that is no sample is not counted
    assert main(["import-kaggle", str(source), "-o", str(out), "--val-fraction", "0.25"]) == 1
    assert "broken" in caplog.text and "does not match image size" in caplog.text
    assert sorted(p.stem for p in (out / "masks").iterdir()) == ["s0", "s1", "s2", "s3"]
    np.testing.assert_array_equal(read_labels(out / "masks" / "s2.tif"), disks((64, 80), ((20, 20), (40, 52)), 8))
    assert (out / "images" / "s0.png").read_bytes() == (source / "s0" / "images" / "s0.png").read_bytes()
    with (out / "split.csv").open() as handle:
        subsets = [row["subset"] for row in csv.DictReader(handle)]
    assert sorted(subsets) == ["train", "train", "train", "val"]
    shutil.rmtree(source / "broken")
    (source / "s0" / "masks" / "m1.png").unlink()  # a finished sample is not read again
    assert main(["import-kaggle", str(source), "-o", str(out), "--val-fraction", "0.25"]) == 0
    assert read_labels(out / "masks" / "s0.tif").max() == 2
    assert main(["import-kaggle", str(tmp_path / "data"), "-o", str(tmp_path / "x")]) == 2  # no samples: one line
    assert "no Kaggle samples" in caplog.text


def test_channel_picks_the_nuclear_channel_of_a_multichannel_tiff_and_of_rgb(tmp_path, caplog):
    """A 2-channel ImageJ TIFF (noise in channel 0, nuclei in channel 1) is refused without --channel,
    segmented on the right channel with it, and --channel records itself in config.json."""
    import tifffile

    truth = disks((128, 128), ((30, 30), (30, 90), (90, 60)), 12)
    nuclei = nucleus_image(truth, seed=3).astype(np.uint16) * 200
    noise = np.random.default_rng(0).integers(0, 60000, (128, 128)).astype(np.uint16)
    images = tmp_path / "images"
    images.mkdir()
    tifffile.imwrite(images / "two.tif", np.stack([noise, nuclei]), imagej=True, metadata={"axes": "CYX"})
    rgb = np.zeros((128, 128, 3), np.uint8)
    rgb[:, :, 2] = nucleus_image(truth, seed=4)  # nuclei in blue only (a DAPI overlay)
    rgb[:, :, 0] = np.random.default_rng(1).integers(0, 255, (128, 128))
    cv2.imwrite(str(images / "overlay.png"), rgb[:, :, ::-1])
    assert main(["predict", str(images), "-o", str(tmp_path / "none"), "--method", "classic"]) == 1
    assert any("two.tif" in r.getMessage() and "--channel 0..1" in r.getMessage() for r in caplog.records)
    out = tmp_path / "out"
    assert main(["predict", str(images), "-o", str(out), "--method", "classic", "--channel", "1", "--diameter", "24"]) == 0
    assert score_labels(out / "labels" / "two.tif", truth) > 0.8
    assert json.loads((out / "config.json").read_text())["input"]["channel"] == 1
    blue = tmp_path / "blue"
    assert main(["predict", str(images), "-o", str(blue), "--method", "classic", "--channel", "2", "--diameter", "24"]) == 1  # two.tif has 2
    assert score_labels(blue / "labels" / "overlay.tif", truth) > 0.8
    assert any("two.tif" in r.getMessage() and "--channel 2" in r.getMessage() for r in caplog.records)


def score_labels(path, truth):
    from workflow.core.metrics import score_image

    return score_image(truth, read_labels(path)).ap50
