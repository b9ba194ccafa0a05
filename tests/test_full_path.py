"""The full path end to end with tiny models trained by nucflow's own commands."""

import json
import logging
import shutil

import cv2
import numpy as np
import pytest
import tifffile
import torch

from tests.synthetic import TINY_PRESEGMENTER, disks, nucleus_image
from unet_ensemble.storage import load_member
from workflow.cli import main
from workflow.core.labels import read_labels, write_labels

TINY = [
    *TINY_PRESEGMENTER,
    "unet.architecture.depth=3",
    "unet.architecture.decoder_channels=[16, 8, 8]",
    "unet.sigmas=[0, 1]",
    "unet.seeds=[0, 1]",
    "unet.train.iterations=2",
    "unet.train.batch_size=2",
    "unet.train.crop_size=64",
    "unet.train.val_every=2",
]


def flags(overrides):
    return [a for o in overrides for a in ("--set", o)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    data = root / "data"
    (data / "images").mkdir(parents=True)
    rows = ["image_id,subset"]
    for k in range(4):
        truth = disks((96, 96), ((25, 25), (25, 70), (70, 45)), 9)
        cv2.imwrite(str(data / "images" / f"im{k}.png"), nucleus_image(truth, seed=k))
        write_labels(data / "masks" / f"im{k}.tif", truth)
        rows.append(f"im{k},{'val' if k == 3 else 'train'}")
    (data / "split.csv").write_text("\n".join(rows) + "\n")
    assert main(["train-presegment", str(data), "-o", str(root / "preseg"), *flags(TINY)]) == 0
    assert main(["train-unet", str(data), "-o", str(root / "unet"), *flags(TINY)]) == 0
    return root, data


@pytest.mark.slow
def test_train_unet_collects_an_ensemble(trained):
    root, _ = trained
    members = sorted(p.name for p in (root / "unet" / "ensemble").iterdir())
    assert members == ["member-0", "member-1"]
    card = json.loads((root / "unet" / "ensemble" / "member-1" / "model.json").read_text())
    assert card["target_sigma"] == 1.0 and card["seed"] == 1 and card["target_diameter"] == 20.0


@pytest.mark.slow
def test_full_predict_writes_labels_of_image_size(trained, tmp_path):
    root, data = trained
    models = ["--model", str(root / "preseg" / "model"), "--ensemble", str(root / "unet" / "ensemble")]
    assert main(["predict", str(data / "images"), "-o", str(tmp_path / "out"), "--full", *models, *flags(TINY)]) == 0
    for k in range(4):
        assert read_labels(tmp_path / "out" / "labels" / f"im{k}.tif").shape == (96, 96)
    assert not (tmp_path / "out" / "intermediate").exists()
    assert (
        main(
            [
                "predict",
                str(data / "images"),
                "-o",
                str(tmp_path / "o2"),
                "--full",
                "--model",
                str(root / "preseg" / "model"),
                "--ensemble",
                str(tmp_path / "missing"),
            ]
        )
        == 2
    )


@pytest.mark.slow
def test_an_ensemble_of_mixed_nucleus_sizes_is_a_one_line_error(trained, tmp_path, caplog):
    root, data = trained
    mixed = tmp_path / "mixed"
    shutil.copytree(root / "unet" / "ensemble", mixed)
    card = json.loads((mixed / "member-1" / "model.json").read_text())
    (mixed / "member-1" / "model.json").write_text(json.dumps({**card, "target_diameter": 30.0}))
    models = ["--model", str(root / "preseg" / "model"), "--ensemble", str(mixed)]
    assert main(["predict", str(data / "images"), "-o", str(tmp_path / "out"), "--full", *models, *flags(TINY)]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "different nucleus sizes [20.0, 30.0]" in errors[-1] and "mixed" in errors[-1] and "\n" not in errors[-1]


@pytest.mark.slow
def test_param_search_writes_best_params_that_predict_reads(trained, tmp_path):
    root, data = trained
    models = ["--model", str(root / "preseg" / "model"), "--ensemble", str(root / "unet" / "ensemble")]
    out = tmp_path / "search"
    assert (
        main(
            [
                "param-search",
                str(data / "images"),
                str(data / "masks"),
                "-o",
                str(out),
                "--trials",
                "4",
                "--jobs",
                "2",
                *models,
                *flags(TINY),
                "--set",
                "search.seed=7",
            ]
        )
        == 0
    )
    best = json.loads((out / "best_params.json").read_text())
    assert best["seed"] == 7 and best["trials"] == 4 and best["images"] == 4 and set(best["params"]) >= {"scale_th", "median"}
    assert (out / "search.png").is_file() and (out / "cache.pkl").is_file()
    assert main(["param-search", str(data / "images"), str(data / "masks"), "-o", str(out), "--trials", "2", *models, *flags(TINY)]) == 0
    assert json.loads((out / "best_params.json").read_text())["trials"] == 6  # resumed study, cached outputs
    pred = tmp_path / "pred"
    assert main(["predict", str(data / "images"), "-o", str(pred), "--full", "--params", str(out / "best_params.json"), *models, *flags(TINY)]) == 0
    assert json.loads((pred / "config.json").read_text())["full"]["params"] == str(out / "best_params.json")
    assert np.all([read_labels(p).shape == (96, 96) for p in (pred / "labels").iterdir()])


def params_file(path, **changes):
    from postprocess.refine import RefineParams

    path.write_text(json.dumps({"params": {**RefineParams().to_dict(), **changes}}))
    return str(path)


@pytest.mark.slow
def test_keep_intermediate_writes_the_maps_post_processing_saw(trained, tmp_path):
    root, data = trained
    models = ["--model", str(root / "preseg" / "model"), "--ensemble", str(root / "unet" / "ensemble")]
    out = tmp_path / "out"
    merging = params_file(tmp_path / "merge.json", median=1000.0)  # every image merges both scales
    assert main(["predict", str(data / "images"), "-o", str(out), "--full", "--keep-intermediate", "--params", merging, *models, *flags(TINY)]) == 0
    names = sorted(p.name for p in (out / "intermediate").iterdir())
    assert names == sorted(f"im{k}_{m}.tif" for k in range(4) for m in ("probability", "mrcnn_x1", "mrcnn_x2"))
    probability = tifffile.imread(out / "intermediate" / "im0_probability.tif")
    assert probability.shape == (96, 96) and probability.dtype == np.uint16 and probability.max() > probability.min()
    assert read_labels(out / "intermediate" / "im0_mrcnn_x2.tif").shape == (96, 96)
    assert json.loads((out / "config.json").read_text())["output"]["keep_intermediate"] is True
    # when the parameters use only the first scale (nuclei above `median`), the second is never computed
    first_only = params_file(tmp_path / "first.json", median=1.0)
    out = tmp_path / "first"
    assert (
        main(
            [
                "predict",
                str(data / "images"),
                "-o",
                str(out),
                "--full",
                "--keep-intermediate",
                "--params",
                first_only,
                "--set",
                "size.diameter=18",
                *models,
                *flags(TINY),
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (out / "intermediate").iterdir()) == sorted(f"im{k}_{m}.tif" for k in range(4) for m in ("probability", "mrcnn_x1"))


@pytest.mark.slow
def test_warm_start_members_begin_from_the_previous_member(trained, tmp_path):
    _, data = trained
    frozen = ["unet.warm_start=true", "unet.train.learning_rate=0", "unet.train.iterations=1", "unet.train.val_every=1"]
    assert main(["train-unet", str(data), "-o", str(tmp_path / "warm"), *flags(TINY), *flags(frozen)]) == 0
    ensemble = tmp_path / "warm" / "ensemble"
    assert json.loads((ensemble / "member-1" / "model.json").read_text())["initialised_from"] == "member-0"
    assert json.loads((ensemble / "member-0" / "model.json").read_text())["initialised_from"] == "random"
    first, second = (load_member(ensemble / f"member-{k}")[0] for k in range(2))
    torch.testing.assert_close(second.encoder.conv1.weight, first.encoder.conv1.weight)  # learning rate 0: unchanged start


@pytest.mark.slow
def test_a_presegmenter_fine_tuned_from_a_model_says_so_in_its_card(trained, tmp_path, caplog):
    root, data = trained
    source = root / "preseg" / "model"
    other_size = ["--set", "size.target_diameter=30"]  # fine-tuning keeps the model's own nucleus size
    assert main(["train-presegment", str(data), "-o", str(tmp_path / "tuned"), "--start-from", str(source), *flags(TINY), *other_size]) == 0
    card = json.loads((tmp_path / "tuned" / "model" / "model.json").read_text())
    assert card["target_diameter"] == 20.0
    assert json.loads((tmp_path / "tuned" / "config.json").read_text())["presegment"]["start_from"] == str(source)
    assert card["initialised_from"] == str(source) and card["initial_model"]["initialised_from"] == "random"
    assert card["initial_model"]["training"]["iterations"] == 2 and card["initial_model"]["target_diameter"] == 20.0
    assert main(["train-presegment", str(data), "-o", str(tmp_path / "bad"), "--start-from", str(tmp_path / "nowhere"), *flags(TINY)]) == 2
    assert main(["train-presegment", str(data), "-o", str(tmp_path / "tuned"), *flags(TINY)]) == 2  # resumed without its start
    assert f"started from {source.resolve()} at 20 px" in caplog.text and card == json.loads((tmp_path / "tuned" / "model" / "model.json").read_text())
    assert main(["train-presegment", str(data), "-o", str(tmp_path / "tuned"), "--start-from", str(source), *flags(TINY)]) == 0
    moved = ["--set", "size.fine_tune_at_target=true"]  # asked for explicitly: fine-tuned at the configured size
    assert main(["train-presegment", str(data), "-o", str(tmp_path / "moved"), "--start-from", str(source), *flags(TINY), *other_size, *moved]) == 0
    assert json.loads((tmp_path / "moved" / "model" / "model.json").read_text())["target_diameter"] == 30.0


@pytest.mark.slow
def test_a_presegmenter_fine_tune_keeps_the_architecture_of_its_model(trained, tmp_path, caplog):
    root, data = trained
    source = root / "preseg" / "model"
    training_only = [flag for flag in TINY if not flag.startswith("presegment.architecture.")]  # settings ask for the default one
    assert main(["train-presegment", str(data), "-o", str(tmp_path / "tuned"), "--start-from", str(source), *flags(training_only)]) == 0
    saved = json.loads((tmp_path / "tuned" / "model" / "model.json").read_text())["architecture"]
    assert saved == json.loads((source / "model.json").read_text())["architecture"] and saved["fpn_channels"] == 32
    assert json.loads((tmp_path / "tuned" / "config.json").read_text())["presegment"]["architecture"]["fpn_channels"] == 32
    other = [*TINY, "presegment.architecture.fpn_channels=64"]  # wider than the model's: refused
    assert main(["train-presegment", str(data), "-o", str(tmp_path / "other"), "--start-from", str(source), *flags(other)]) == 2
    assert "cannot be widened: fpn_channels 32 -> 64" in caplog.text


@pytest.mark.slow
def test_a_presegmenter_fine_tune_can_narrow_its_model(trained, tmp_path, caplog):
    root, data = trained
    source = root / "preseg" / "model"
    training_only = [flag for flag in TINY if not flag.startswith("presegment.architecture.")]
    narrower = ["presegment.architecture.fpn_channels=16", "presegment.architecture.box_head_width=32", "presegment.architecture.mask_head_width=8"]
    untrained = ["presegment.detect.score_threshold=0.01"]  # two iterations of training: let its weak detections calibrate the mask head
    narrowing = ["train-presegment", str(data), "-o", str(tmp_path / "narrow"), "--start-from", str(source), *flags(training_only + narrower + untrained)]
    assert main(narrowing) == 0
    card = json.loads((tmp_path / "narrow" / "model" / "model.json").read_text())
    assert card["architecture"]["fpn_channels"] == 16 and card["architecture"]["mask_head_width"] == 8
    assert card["narrowed"] == {"from": {"fpn_channels": 32, "mask_head_width": 16}, "calibration_images": 3, "calibration_zoom": 1.25}
    caplog.clear()  # a rerun resumes from the checkpoint, whose weights replace the start: not narrowed again
    with caplog.at_level(logging.INFO):
        assert main(narrowing) == 0
    assert "resumed from" in caplog.text and "narrowing the starting model" not in caplog.text
    as_it_is = [*training_only, *narrower, *untrained, "presegment.train.iterations=0"]  # narrowed, not trained: validated and kept
    assert main(["train-presegment", str(data), "-o", str(tmp_path / "only"), "--start-from", str(source), *flags(as_it_is)]) == 0
    card = json.loads((tmp_path / "only" / "model" / "model.json").read_text())
    assert card["training"]["iterations"] == 0 and card["validation"]["iteration"] == 0 and card["architecture"]["fpn_channels"] == 16
    assert main(["train-presegment", str(data), "-o", str(tmp_path / "random"), *flags(as_it_is)]) == 2  # nothing to keep
    assert "iterations 0 keeps a starting model as it is" in caplog.text
    distilled = [*training_only, *narrower, *untrained, "presegment.train.distill=true"]  # learns the source's outputs
    assert main(["train-presegment", str(data), "-o", str(tmp_path / "distilled"), "--start-from", str(source), *flags(distilled)]) == 0
    card = json.loads((tmp_path / "distilled" / "model" / "model.json").read_text())
    assert card["distilled_from"] == str(source) and card["training"]["settings"]["distill"] is True and card["training"]["iterations"] == 2
    assert main(["train-presegment", str(data), "-o", str(tmp_path / "no-teacher"), *flags(distilled)]) == 2
    assert "presegment.train.distill learns from the starting model's outputs: give --start-from MODEL" in caplog.text
    other = ["presegment.architecture.fpn_channels=16", "presegment.architecture.box_head_width=16"]  # not a narrowing
    assert main(["train-presegment", str(data), "-o", str(tmp_path / "other"), "--start-from", str(source), *flags(training_only + other)]) == 2
    assert "narrowing changes only fpn_channels and mask_head_width, not box_head_width (32 -> 16)" in caplog.text


@pytest.mark.slow
def test_a_centerness_member_fine_tuned_from_a_member_feeds_the_full_path(trained, tmp_path, caplog):
    root, data = trained
    source = root / "unet" / "ensemble" / "member-0"
    tune = [
        "unet.architecture.centerness=true",
        f"unet.start_from={source}",
        "unet.sigmas=[0]",
        "unet.seeds=[0]",
        "unet.train.learning_rate=0",
        "unet.train.iterations=1",
        "unet.train.val_every=1",
    ]
    assert main(["train-unet", str(data), "-o", str(tmp_path / "tuned"), *flags(TINY), *flags(tune), "--set", "size.target_diameter=30"]) == 0
    member = tmp_path / "tuned" / "ensemble" / "member-0"
    card = json.loads((member / "model.json").read_text())
    assert card["target_diameter"] == 20.0  # the starting member's nucleus size, not the configured 30
    assert card["initialised_from"] == str(source) and card["architecture"]["centerness"] is True and "centre_iou" in card["validation"]
    assert card["initial_model"]["training"] == json.loads((source / "model.json").read_text())["training"]
    torch.testing.assert_close(load_member(member)[0].encoder.conv1.weight, load_member(source)[0].encoder.conv1.weight)
    out = tmp_path / "out"
    adding = params_file(tmp_path / "add.json", add_th=0.5)
    models = ["--model", str(root / "preseg" / "model"), "--ensemble", str(tmp_path / "tuned" / "ensemble")]
    assert main(["predict", str(data / "images"), "-o", str(out), "--full", "--keep-intermediate", "--params", adding, *models, *flags(TINY)]) == 0
    centerness = tifffile.imread(out / "intermediate" / "im0_centerness.tif")
    assert centerness.shape == (96, 96) and centerness.max() > centerness.min()
    assert read_labels(out / "labels" / "im0.tif").shape == (96, 96)
    missing = [f"unet.start_from={tmp_path / 'nowhere'}"]
    assert main(["train-unet", str(data), "-o", str(tmp_path / "bad"), *flags(TINY), *flags(tune), *flags(missing)]) == 2
    unstarted = [t for t in tune if not t.startswith("unet.start_from")]
    assert main(["train-unet", str(data), "-o", str(tmp_path / "tuned"), *flags(TINY), *flags(unstarted)]) == 2  # resumed without its start
    assert "started from" in caplog.text
    assert json.loads((member / "model.json").read_text()) == card


def test_full_path_zooms_only_when_the_nucleus_size_is_known():
    from tests.test_presegment import SizeRecordingModel
    from unet_ensemble.config import UNetArchitecture
    from unet_ensemble.model import build_unet
    from workflow.config import load_config
    from workflow.full import Models, network_outputs

    cfg = load_config(overrides=["presegment.detect.zoom=1.5", "presegment.detect.pad_fraction=0", "views.full=[]", "full.mrcnn_scales=[1.0]"])
    arch = UNetArchitecture(depth=3, decoder_channels=(16, 8, 8))
    models = Models(SizeRecordingModel(), 24.0, [(build_unet(arch).eval(), {"architecture": arch.to_dict()})])
    outputs = network_outputs(models, np.zeros((64, 64, 3), np.uint8), cfg, None)  # no nucleus size known
    assert outputs.diameter is None and models.presegmenter.seen[-1] == (64, 64)  # segmented as it is, not zoomed
    models.presegmenter.seen.clear()
    outputs = network_outputs(models, np.zeros((40, 30, 3), np.uint8), cfg, diameter=12.0)
    assert outputs.probability.shape == (80, 60) and models.presegmenter.seen == [(120, 90)]  # 2x to the target size, then 1.5x


def test_unets_see_nuclei_at_their_own_training_size():
    """A presegmenter trained at 24 px and U-Nets trained at 12 px: the U-Nets get the common image at half size, and their map comes back to it."""
    from tests.test_presegment import SizeRecordingModel
    from unet_ensemble.config import UNetArchitecture
    from unet_ensemble.model import build_unet
    from workflow.config import load_config
    from workflow.full import Models, network_outputs

    cfg = load_config(overrides=["presegment.detect.zoom=1.0", "views.full=[]", "full.mrcnn_scales=[1.0]"])
    arch = UNetArchitecture(depth=3, decoder_channels=(16, 8, 8))
    unet, seen = build_unet(arch).eval(), []
    unet.register_forward_pre_hook(lambda module, inputs: seen.append(tuple(inputs[0].shape[-2:])))
    card = {"architecture": arch.to_dict(), "target_diameter": 12.0}
    outputs = network_outputs(Models(SizeRecordingModel(), 24.0, [(unet, card)], 12.0), np.zeros((40, 30, 3), np.uint8), cfg, diameter=12.0)
    assert outputs.probability.shape == (80, 60)  # the common resolution: nuclei at 24 px
    assert seen and all(shape[0] >= 40 and shape[1] >= 30 for shape in seen) and max(s[0] for s in seen) < 80  # the 40 x 30 image (padded), not 80 x 60
    seen.clear()
    network_outputs(Models(SizeRecordingModel(), 24.0, [(unet, card)]), np.zeros((40, 30, 3), np.uint8), cfg, diameter=12.0)
    assert max(s[0] for s in seen) >= 80
