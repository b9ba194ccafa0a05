"""A generated corpus of bad or unusual inputs and settings, each run through the command a biologist
would type. Every case asserts the exit status, the one-line message (no traceback, the file or key
named) and what was or was not written. The classic method keeps it fast: no network is loaded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest
import tifffile
import yaml

from tests.synthetic import disks, nucleus_image
from workflow.cli import main
from workflow.core.labels import write_labels

GOOD_LABELS = disks((96, 96), ((30, 30), (60, 70)), 10)


@dataclass
class Case:
    """`make(tmp)` builds the inputs and returns the command's arguments; the run must end with `status`,
    an error or warning line matching each of `says`, labels written for exactly `written` (None: not checked)."""

    make: Callable[[Path], list[str]]
    status: int
    says: tuple[str, ...] = ()
    written: tuple[str, ...] | None = None
    level: int = logging.ERROR
    extra: Callable[[Path], None] | None = field(default=None)
    patch: Callable[[pytest.MonkeyPatch, Path], None] | None = None  # what the OS would do to a non-root user


def good_folder(tmp: Path, name: str = "images") -> Path:
    folder = tmp / name
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "good.png"), nucleus_image(GOOD_LABELS, seed=1))
    return folder


def predict_with(writer: Callable[[Path], None], *flags: str) -> Callable[[Path], list[str]]:
    """A folder holding one good image and whatever `writer` adds, segmented by the classic method."""

    def make(tmp: Path) -> list[str]:
        folder = good_folder(tmp)
        writer(folder)
        return ["predict", str(folder), "-o", str(tmp / "out"), "--method", "classic", *flags]

    return make


def tif(name: str, array: np.ndarray, **kwargs) -> Callable[[Path], None]:
    return lambda folder: tifffile.imwrite(folder / name, array, **kwargs)


def raw(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_bytes(data)


def png(name: str, array: np.ndarray) -> Callable[[Path], None]:
    return lambda folder: cv2.imwrite(str(folder / name), array)


def truncated(name: str) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        cv2.imwrite(str(folder / "whole.tmp.png"), nucleus_image(disks(), seed=5))
        (folder / name).write_bytes((folder / "whole.tmp.png").read_bytes()[:300])
        (folder / "whole.tmp.png").unlink()

    return write


def nan_image(fraction: float) -> np.ndarray:
    image = nucleus_image(GOOD_LABELS, seed=2).astype(np.float32) / 255
    rng = np.random.default_rng(0)
    image[rng.random(image.shape) < fraction] = np.nan
    return image


def broken_link(folder: Path) -> None:
    (folder / "gone.png").symlink_to(folder / "nowhere.png")


def multi_page(folder: Path) -> None:
    """Pages written one by one without metadata (as many programs do): tifffile reads them as a sequence (I)."""
    with tifffile.TiffWriter(folder / "pages.tif") as writer:
        for value in range(4):
            writer.write(np.full((48, 48), value, np.uint8), metadata=None)


def folder_named_like_an_image(folder: Path) -> None:
    (folder / "folder.png").mkdir()


# one bad file beside a good image: the run goes on, exit 1, the file named with the problem
BAD_FILES = {
    "empty png": (raw("empty.png", b""), "empty.png", "empty"),
    "empty tif": (raw("empty.tif", b""), "empty.tif", "empty"),
    "truncated png": (truncated("cut.png"), "cut.png", "truncated"),
    "text as png": (raw("text.png", b"not an image\n"), "text.png", "cannot be decoded"),
    "text as tif": (raw("text.tif", b"not an image either\n"), "text.tif", "cannot be read"),
    "text as jpg": (raw("text.jpg", b"plain text\n"), "text.jpg", "cannot be decoded"),
    "text as bmp": (raw("text.bmp", b"plain text\n"), "text.bmp", "cannot be decoded"),
    "one pixel": (png("dot.png", np.zeros((1, 1), np.uint8)), "dot.png", "too small"),
    "one row": (png("row.png", np.zeros((1, 300), np.uint8)), "row.png", "too small"),
    "3-d stack, axes not recorded": (
        tif("unnamed.tif", np.zeros((5, 64, 64), np.uint8), photometric="minisblack"),
        "unnamed.tif",
        "meaning the file does not record (axes QYX, shape (5, 64, 64)); name the axes with --axes, e.g. --axes ZYX",
    ),
    "multi-page tiff, axes not recorded": (multi_page, "pages.tif", "name the axes with --axes"),
    "five channels": (tif("five.tif", np.zeros((5, 64, 64), np.uint8), metadata={"axes": "CYX"}), "five.tif", "channel"),
    "two channels": (tif("two.tif", np.zeros((2, 64, 64), np.uint16), imagej=True, metadata={"axes": "CYX"}), "two.tif", "channel"),
    "three-channel composite (not RGB)": (
        tif("three.tif", np.zeros((3, 64, 64), np.uint8), imagej=True, metadata={"axes": "CYX"}),
        "three.tif",
        "--channel 0..2",
    ),
    "four-channel composite (not RGBA)": (
        tif("four.tif", np.zeros((4, 64, 64), np.uint8), imagej=True, metadata={"axes": "CYX"}),
        "four.tif",
        "--channel 0..3",
    ),
    "complex pixels": (tif("complex.tif", np.zeros((32, 32), np.complex64)), "complex.tif", "complex"),
    "all NaN": (tif("nan.tif", np.full((64, 64), np.nan, np.float32)), "nan.tif", "no finite"),
    "broken link": (broken_link, "gone.png", "broken"),
}

# valid images with nothing (or little) in them: segmented, no failure
DEGENERATE = {
    "empty z stack": tif("stack.tif", np.zeros((5, 64, 64), np.uint8), imagej=True, metadata={"axes": "ZYX"}),
    "empty time series": tif("movie.tif", np.zeros((3, 64, 64), np.uint16), imagej=True, metadata={"axes": "TYX"}),
    "empty 4-d hyperstack": tif("hyper.tif", np.zeros((2, 3, 32, 32), np.uint8), imagej=True, metadata={"axes": "TZYX"}),
    "black png": png("black.png", np.zeros((80, 80), np.uint8)),
    "white png": png("white.png", np.full((80, 80), 255, np.uint8)),
    "flat 16-bit": tif("flat16.tif", np.full((80, 80), 1234, np.uint16)),
    "flat float": tif("flatf.tif", np.full((80, 80), 0.5, np.float32)),
    "bool image": tif("mask.tif", GOOD_LABELS > 0),
    "negative float": tif("neg.tif", -nucleus_image(GOOD_LABELS, seed=3).astype(np.float32)),
    "int32 image": tif("int32.tif", nucleus_image(GOOD_LABELS, seed=3).astype(np.int32) - 100),
    "RGBA png": png("rgba.png", np.dstack([nucleus_image(GOOD_LABELS, seed=4)] * 3 + [np.full((96, 96), 255, np.uint8)])),
    "planar RGB tif (samples, not channels)": tif("planar.tif", np.stack([nucleus_image(GOOD_LABELS, seed=4)] * 3), photometric="rgb", planarconfig="separate"),
    "RGB 16-bit tif": tif("rgb16.tif", (np.dstack([nucleus_image(GOOD_LABELS, seed=4)] * 3).astype(np.uint16) * 200), photometric="rgb"),
    "dim 8-bit": png("dim.png", (nucleus_image(GOOD_LABELS, seed=6) // 8).astype(np.uint8)),
    "non-ASCII name": png("Kern ä ö ß.png", nucleus_image(GOOD_LABELS, seed=7)),
    "name with spaces": png("my image (1).png", nucleus_image(GOOD_LABELS, seed=8)),
    "upper-case suffix": png("LOUD.PNG", nucleus_image(GOOD_LABELS, seed=9)),
    "a folder named .png beside it (not a file: not listed)": folder_named_like_an_image,
    "thin but valid": png("thin.png", nucleus_image(disks((24, 400), ((12, 40), (12, 200)), 8), seed=1)),
}

SETTINGS_OUT_OF_RANGE = [
    "tiling.tile_size=0",
    "tiling.tile_size=-256",
    "tiling.overlap=-1",
    "size.target_diameter=0",
    "size.min_scale=0",
    "size.max_scale=-1",
    "size.contour_sigma=-1",
    "presegment.detect.score_threshold=1.5",
    "presegment.detect.nms_threshold=-0.1",
    "presegment.detect.mask_threshold=2",
    "presegment.detect.max_instances=0",
    "presegment.detect.zoom=0",
    "presegment.detect.pad_fraction=-0.1",
    "presegment.train.iterations=-3",
    "presegment.train.batch_size=0",
    "presegment.train.learning_rate=-1",
    "presegment.train.augment.p_hue=1.5",
    "unet.train.iterations=0",
    "unet.predict.tile_size=0",
    "cluster.k=0",
    "cluster.max_side=-5",
    "adapt.val_fraction=1.5",
    "synthetic.touching_probability=2",
    "classic.smoothing_sigma=-1",
    "pix2pix.l1_weight=0",
]

SETTINGS_REFUSED = {  # other bad settings: the words of the one-line refusal
    "size.target_diameter=big": "expected float",
    "presegment.train.iterations=1.5": "expected int",
    "size.target_diameterr=3": "unknown config key",
    "nosuchthing": "bad override",
    "size=3": "must be a mapping",
    "views.full=[h, x]": "use each of",
    "full.mrcnn_flips=[h]": "is now 'views.full'",
    "presegment.train.augment.scale_range=[2.0, 1.0]": "scale_range",
    "input.stretch_percentiles=[90, 10]": "percentiles",
    "cluster.k_min=9": "k_min",
    "method=slow": "method",
}


def run_case(case: Case, tmp: Path, caplog, monkeypatch) -> list[str]:
    caplog.clear()
    caplog.set_level(logging.INFO)
    args = case.make(tmp)
    if case.patch:
        case.patch(monkeypatch, tmp)
    status = main(args)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= case.level]
    assert status == case.status, lines
    for words in case.says:
        assert any(words in line for line in lines), (words, lines)
    for line in lines:
        assert "\n" not in line and "Traceback" not in line, line
    if case.written is not None:
        labels = tmp / "out" / "labels"
        assert sorted(p.stem for p in labels.glob("*.tif")) == sorted(case.written) if labels.is_dir() else not case.written
    if case.extra:
        case.extra(tmp)
    return lines


CASES: dict[str, Case] = {}
for name, (writer, file, words) in BAD_FILES.items():
    CASES[f"file: {name}"] = Case(predict_with(writer), 1, (file, words), ("good",))
for name, writer in DEGENERATE.items():
    CASES[f"image: {name}"] = Case(predict_with(writer), 0, written=None)
for setting in SETTINGS_OUT_OF_RANGE:
    key = setting.split("=")[0]
    CASES[f"range: {setting}"] = Case(predict_with(lambda folder: None, "--set", setting), 2, (f"'{key}'", "out of range"), ())
for setting, words in SETTINGS_REFUSED.items():
    CASES[f"setting: {setting}"] = Case(predict_with(lambda folder: None, "--set", setting), 2, (words,), ())


def classic(tmp: Path, *flags: str, images: Path | None = None) -> list[str]:
    return ["predict", str(images or good_folder(tmp)), "-o", str(tmp / "out"), "--method", "classic", *flags]


def config_file(text: str) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        (tmp / "settings.yaml").write_text(text)
        return classic(tmp, "--config", str(tmp / "settings.yaml"))

    return make


def evaluate_pair(truth: np.ndarray | None, pred: np.ndarray | None = GOOD_LABELS, *flags: str, extra_pred: bool = False) -> Callable[[Path], list[str]]:
    """A prediction folder and a truth folder: a good pair plus the pair `bad` made of `pred` and `truth`."""

    def make(tmp: Path) -> list[str]:
        write_labels(tmp / "pred" / "good.tif", GOOD_LABELS)
        write_labels(tmp / "truth" / "good.tif", GOOD_LABELS)
        if pred is not None:
            write_labels(tmp / "pred" / "bad.tif", pred)
        if truth is not None:
            tifffile.imwrite(tmp / "truth" / "bad.tif", truth)
        if extra_pred:
            write_labels(tmp / "pred" / "orphan.tif", GOOD_LABELS)
        return ["evaluate", str(tmp / "pred"), str(tmp / "truth"), *flags]

    return make


def training_folder(tmp: Path, split: str | None = "image_id,subset\ngood,train\nval,val\n", mask: bool = True) -> Path:
    data = tmp / "data"
    good_folder(data, "images")
    cv2.imwrite(str(data / "images" / "val.png"), nucleus_image(GOOD_LABELS, seed=3))
    if mask:
        write_labels(data / "masks" / "good.tif", GOOD_LABELS)
        write_labels(data / "masks" / "val.tif", GOOD_LABELS)
    if split is not None:
        (data / "split.csv").write_text(split)
    return data


def unlistable(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> None:
    """The images folder without read permission."""
    real = Path.iterdir

    def iterdir(self):
        if self.name == "images":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)


def read_only_labels(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> None:
    """OUT/labels without write permission: the label file cannot be written."""
    import workflow.batch

    def refuse(path, labels, pixel_size=None):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(workflow.batch, "write_labels", refuse)


def rerun_with_other_settings(tmp: Path) -> list[str]:
    assert main(classic(tmp)) == 0
    return classic(tmp, "--diameter", "30")


def out_is_a_file(tmp: Path) -> list[str]:
    (tmp / "out").write_text("I am a file\n")
    return classic(tmp)


def cluster_k(k: int, count: int = 3) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        folder = tmp / "images"
        folder.mkdir()
        for s in range(count):
            cv2.imwrite(str(folder / f"i{s}.png"), nucleus_image(GOOD_LABELS, seed=s))
        return ["cluster", str(folder), "-o", str(tmp / "clusters"), "--k", str(k)]

    return make


def cluster_with_nan(tmp: Path) -> list[str]:
    folder = tmp / "images"
    folder.mkdir()
    for s in range(3):
        cv2.imwrite(str(folder / f"i{s}.png"), nucleus_image(GOOD_LABELS, seed=s))
    tifffile.imwrite(folder / "nan.tif", np.full((64, 64), np.nan, np.float32))
    return ["cluster", str(folder), "-o", str(tmp / "clusters")]


CASES.update(
    {
        # command-line flags
        "flag: --diameter 0": Case(lambda t: classic(t, "--diameter", "0"), 2, ("'size.diameter'", "out of range"), ()),
        "flag: --diameter -5": Case(lambda t: classic(t, "--diameter", "-5"), 2, ("'size.diameter'",), ()),
        "flag: --diameter inf": Case(lambda t: classic(t, "--diameter", "inf"), 2, ("'size.diameter'",), ()),
        "flag: --diameter nan": Case(lambda t: classic(t, "--diameter", "nan"), 2, ("'size.diameter'",), ()),
        "flag: --jobs 0": Case(lambda t: classic(t, "--jobs", "0"), 2, ("--jobs",), ()),
        "flag: --percentiles 90 10": Case(lambda t: classic(t, "--percentiles", "90", "10"), 2, ("--percentiles",), ()),
        "flag: --percentiles -1 50": Case(lambda t: classic(t, "--percentiles", "-1", "50"), 2, ("--percentiles",), ()),
        "flag: --diameter given": Case(lambda t: classic(t, "--diameter", "20"), 0, written=("good",)),
        "flag: --no-normalize": Case(lambda t: classic(t, "--no-normalize"), 0, written=("good",)),
        "flag: --model missing": Case(lambda t: classic(t, "--model", str(t / "nowhere")), 0, written=("good",)),  # classic loads no model
        "flag: --models missing": Case(lambda t: classic(t, "--models", str(t / "nowhere")), 2, ("nowhere", "not a models folder"), ()),
        "flag: --config missing": Case(lambda t: classic(t, "--config", str(t / "none.yaml")), 2, ("none.yaml",), ()),
        "flag: --truth missing": Case(lambda t: classic(t, "--truth", str(t / "no truth")), 2, ("no truth",), ()),
        "warning: a few NaN pixels": Case(
            predict_with(tif("holes.tif", nan_image(0.01))), 0, ("holes.tif", "non-finite pixels"), ("good", "holes"), logging.WARNING
        ),
        "warning: no nucleus found": Case(
            predict_with(png("black.png", np.zeros((80, 80), np.uint8))),
            0,
            ("black.png: no nucleus found; wrote an empty label image",),
            ("good", "black"),
            logging.WARNING,
        ),
        "rerun: other settings refused": Case(rerun_with_other_settings, 2, ("--overwrite",), ("good",)),
        "folder: images unreadable (no permission)": Case(lambda t: classic(t), 2, ("images", "cannot be listed"), patch=unlistable),
        "folder: labels read-only": Case(lambda t: classic(t), 1, ("labels", "cannot write the outputs of good"), (), patch=read_only_labels),
        "evaluate: truth labels with gaps (1, 5, 9)": Case(
            evaluate_pair(np.where(GOOD_LABELS > 0, GOOD_LABELS * 4 - 3, 0).astype(np.uint16), np.where(GOOD_LABELS > 0, GOOD_LABELS * 4 - 3, 0)), 0
        ),
        "warning: a 4th channel that is not alpha": Case(
            predict_with(png("data in alpha.png", np.dstack([np.zeros((96, 96, 3), np.uint8), nucleus_image(GOOD_LABELS, seed=5)]))),
            0,
            ("data in alpha.png", "4th channel"),
            ("good", "data in alpha"),
            logging.WARNING,
        ),
        # folders
        "folder: images missing": Case(lambda t: classic(t, images=t / "absent"), 2, ("absent",), ()),
        "folder: images empty": Case(lambda t: classic(t, images=(t / "empty").mkdir() or t / "empty"), 2, ("empty", "no images"), ()),
        "folder: only bad images": Case(predict_with(lambda f: ((f / "good.png").unlink(), raw("x.png", b"")(f))), 1, ("x.png",), ()),
        "folder: -o is a file": Case(out_is_a_file, 2, ("is a file, not a folder",)),
        "folder: -o inside a file": Case(lambda t: (t / "f").write_text("x") and classic(t)[:3] + [str(t / "f" / "out")] + classic(t)[4:], 2, ("f",)),
        # configuration files
        "config: invalid YAML": Case(config_file("size: [unclosed\n"), 2, ("settings.yaml",), ()),
        "config: a list": Case(config_file("- 1\n- 2\n"), 2, ("settings.yaml", "must hold a mapping"), ()),
        "config: unknown key": Case(config_file("size:\n  diametr: 3\n"), 2, ("unknown config key",), ()),
        "config: wrong type": Case(config_file("size:\n  target_diameter: [1, 2]\n"), 2, ("size.target_diameter",), ()),
        "config: out of range": Case(config_file(yaml.safe_dump({"tiling": {"tile_size": 0}})), 2, ("'tiling.tile_size'",), ()),
        "config: renamed key": Case(config_file("full:\n  mrcnn_flips: [h]\n"), 2, ("is now 'views.full'",), ()),
        "config: empty file": Case(config_file(""), 0, written=("good",)),
        # evaluate
        "evaluate: size mismatch": Case(evaluate_pair(np.zeros((40, 40), np.uint16)), 1, ("bad.tif", "size")),
        "evaluate: float truth": Case(evaluate_pair(GOOD_LABELS.astype(np.float32) + 0.5), 1, ("bad.tif",)),
        "evaluate: negative truth": Case(evaluate_pair(-GOOD_LABELS.astype(np.int32)), 1, ("bad.tif",)),
        "evaluate: RGB truth": Case(evaluate_pair(np.dstack([GOOD_LABELS.astype(np.uint8)] * 3)), 1, ("bad.tif",)),
        "evaluate: missing prediction scored empty": Case(evaluate_pair(GOOD_LABELS.astype(np.uint16), pred=None), 0, ("bad",), level=logging.WARNING),
        "evaluate: prediction without truth": Case(evaluate_pair(None, extra_pred=False), 0, ("bad",), level=logging.WARNING),
        "evaluate: --csv is a folder": Case(
            lambda t: (t / "csvdir").mkdir() or evaluate_pair(GOOD_LABELS.astype(np.uint16), GOOD_LABELS, "--csv", str(t / "csvdir"))(t), 2, ("csvdir",)
        ),
        "evaluate: truth folder missing": Case(lambda t: ["evaluate", str(good_folder(t)), str(t / "no truth")], 2, ("no truth",)),
        "evaluate: prediction folder missing": Case(lambda t: ["evaluate", str(t / "no pred"), str(good_folder(t))], 2, ("no pred",)),
        # training
        "train-presegment: no split.csv": Case(lambda t: ["train-presegment", str(training_folder(t, None)), "-o", str(t / "run")], 2, ("split.csv",)),
        "train-presegment: no val rows": Case(
            lambda t: ["train-presegment", str(training_folder(t, "image_id,subset\ngood,train\n")), "-o", str(t / "run")], 2, ("val",)
        ),
        "train-presegment: no masks": Case(lambda t: ["train-presegment", str(training_folder(t, mask=False)), "-o", str(t / "run")], 2, ("mask",)),
        "train-presegment: data missing": Case(lambda t: ["train-presegment", str(t / "nodata"), "-o", str(t / "run")], 2, ("nodata",)),
        "train-presegment: iterations -3": Case(
            lambda t: ["train-presegment", str(training_folder(t)), "-o", str(t / "run"), "--set", "presegment.train.iterations=-3"],
            2,
            ("'presegment.train.iterations'",),
        ),
        "train-presegment: --start-from missing": Case(
            lambda t: ["train-presegment", str(training_folder(t)), "-o", str(t / "run"), "--start-from", str(t / "nomodel")], 2, ("nomodel",)
        ),
        "train: unknown stage": Case(
            lambda t: ["train", str(good_folder(t)), "-o", str(t / "run"), "--stages", "cluster,paint"], 2, ("unknown stage 'paint'",)
        ),
        "train: images missing": Case(lambda t: ["train", str(t / "none"), "-o", str(t / "run")], 2, ("none",)),
        # clustering
        "cluster: k 0": Case(cluster_k(0), 2, ("clusters must be at least 1",)),
        "cluster: k above the image count": Case(cluster_k(5), 0, ("k 5 asked for, but 3 images",), level=logging.WARNING),
        "cluster: an all-NaN image": Case(cluster_with_nan, 1, ("nan.tif", "no finite")),
        "cluster: folder missing": Case(lambda t: ["cluster", str(t / "none"), "-o", str(t / "c")], 2, ("none",)),
        # import-kaggle
        "import-kaggle: no samples": Case(lambda t: ["import-kaggle", str(good_folder(t)), "-o", str(t / "data")], 2, ("no Kaggle samples",)),
        "import-kaggle: source missing": Case(lambda t: ["import-kaggle", str(t / "none"), "-o", str(t / "data")], 2, ("none",)),
        "import-kaggle: --val-fraction 1.5": Case(
            lambda t: ["import-kaggle", str(good_folder(t)), "-o", str(t / "d"), "--val-fraction", "1.5"], 2, ("--val-fraction",)
        ),
        # parameter search
        "param-search: masks missing": Case(lambda t: ["param-search", str(good_folder(t)), str(t / "nomasks"), "-o", str(t / "s")], 2, ("nomasks",)),
        "param-search: trials -1": Case(
            lambda t: ["param-search", str(training_folder(t) / "images"), str(t / "data" / "masks"), "-o", str(t / "s"), "--trials", "-1"], 2, ("--trials",)
        ),
        "param-search: jobs 0": Case(
            lambda t: ["param-search", str(training_folder(t) / "images"), str(t / "data" / "masks"), "-o", str(t / "s"), "--jobs", "0"], 2, ("--jobs",)
        ),
    }
)


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 80


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, tmp_path, caplog, monkeypatch):
    run_case(CASES[name], tmp_path, caplog, monkeypatch)
