"""`nucflow train` end to end on tiny settings: unlabeled images of two styles in, models that predict out."""

import csv
import json
import shutil
from dataclasses import replace

import cv2
import numpy as np
import pytest

from presegment.storage import DEFAULT_MODEL
from tests.synthetic import disks
from unet_ensemble.storage import DEFAULT_ENSEMBLE
from workflow.adapt import RunLayout, fine_tuning_minutes, replay_order
from workflow.cli import main
from workflow.config import load_config
from workflow.core.labels import read_labels, write_labels
from workflow.core.modelfiles import read_card
from workflow.replay import SHIPPED_REPLAY

TINY = [
    "device=cpu",
    "cluster.k=2",
    "synthetic.size=128",
    "adapt.masks_per_cluster=2",
    "adapt.style_images=2",
    "adapt.unet_iterations=2",
    "adapt.presegmenter_iterations=2",
    "adapt.pix2pix=true",
    "adapt.recoloured_per_cluster=3",
    "pix2pix.iterations=4",
    "pix2pix.batch_size=1",
    "pix2pix.crop_size=64",
    "pix2pix.discriminator_width=8",
    "pix2pix.generator.depth=3",
    "pix2pix.generator.decoder_channels=[32,16,8]",
    "unet.train.batch_size=1",
    "unet.train.crop_size=64",
    "presegment.train.batch_size=1",
    "presegment.train.crop_size=64",
]


def two_styles(folder, masks_folder=None):
    """Four 160 px images: two fluorescence-like (bright on dark), two H&E-like (purple on pink)."""
    folder.mkdir()
    for index in range(4):
        rng = np.random.default_rng(index)
        centres = [(y + rng.integers(-4, 5), x + rng.integers(-4, 5)) for y in (30, 80, 130) for x in (30, 80, 130)]
        labels = disks((160, 160), centres, 11)
        if index < 2:
            image = np.where((labels > 0)[..., None], 200, 15) + rng.normal(0, 6, (160, 160, 1))
            image = np.repeat(image, 3, axis=2)
        else:
            image = np.where((labels > 0)[..., None], [90, 40, 150], [235, 180, 210]) + rng.normal(0, 6, (160, 160, 3))
        cv2.imwrite(str(folder / f"img{index}.png"), cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
        if masks_folder is not None:
            write_labels(masks_folder / f"img{index}.tif", labels)


def overrides():
    return [arg for setting in TINY for arg in ("--set", setting)]


@pytest.mark.slow
def test_train_on_unlabeled_images_then_predict_with_the_models(tmp_path):
    images, run = tmp_path / "images", tmp_path / "run"
    two_styles(images)
    ensemble = tmp_path / "ensemble"  # the shipped members, declared at a nucleus size other than the presegmenter's
    shutil.copytree(DEFAULT_ENSEMBLE, ensemble)
    for card_path in ensemble.glob("*/model.json"):
        card_path.write_text(json.dumps({**json.loads(card_path.read_text()), "target_diameter": 32.0}))
    assert read_card(DEFAULT_MODEL)["target_diameter"] != 32.0
    train = ["train", str(images), "-o", str(run), "--ensemble", str(ensemble), *overrides()]
    assert main(train) == 0

    assert len(list((run / "presegment" / "labels").glob("*.tif"))) == 4
    with (run / "clusters" / "clusters.csv").open() as handle:
        cluster_of = {row["image"]: row["cluster"] for row in csv.DictReader(handle)}
    assert cluster_of["img0"] == cluster_of["img1"] != cluster_of["img2"] == cluster_of["img3"]
    for cluster in (0, 1):
        synthetic = run / "synthetic" / f"cluster-{cluster}"
        masks, drawn = sorted((synthetic / "masks").glob("*.tif")), sorted((synthetic / "images").glob("*.png"))
        assert len(masks) == len(drawn) == 2
        assert read_labels(masks[0]).shape == (128, 128) and read_labels(masks[0]).max() > 0
        assert cv2.imread(str(drawn[0])).shape == (128, 128, 3)
        assert json.loads((run / "pix2pix" / f"cluster-{cluster}" / "model.json").read_text())["training"]["iterations"] == 4
        assert len(list((run / "recoloured" / f"cluster-{cluster}" / "images").glob("*.png"))) == 3
    models = run / "models"
    card = json.loads((models / "presegment" / "model.json").read_text())
    assert card["initialised_from"].endswith("default") and card["training"]["iterations"] == 2
    # labelled with the default --polarity choose; learned with images of dark nuclei gray-inverted, which choose offers
    labelled_with = json.loads((run / "presegment" / "config.json").read_text())["input"]["polarity"]
    assert json.loads((run / "config.json").read_text())["input"]["polarity"] == labelled_with == "choose"
    assert card["input"]["polarity"] == "auto"
    replayed = json.loads((SHIPPED_REPLAY / "replay.json").read_text())["images"]
    assert card["training_data"]["train_pairs"] + card["training_data"]["val_pairs"] == 2 * 2 + 2 * 3 + replayed  # synthetic, recoloured, replay
    budget = json.loads((run / "budget.json").read_text())  # the 90-minute default, less the stages before, in halves
    assert 0 < budget["presegmenter"] == budget["unet"] <= 45
    assert card["training"]["settings"]["max_minutes"] == budget["presegmenter"]
    assert card["initial_model"]["training"] == read_card(DEFAULT_MODEL)["training"]  # kept should the start be replaced
    assert sorted(p.name for p in (models / "unet").iterdir()) == ["member-0", "member-1", "member-2"]
    # each network is fine-tuned at its starting model's nucleus size (here they differ)
    assert card["target_diameter"] == read_card(DEFAULT_MODEL)["target_diameter"]
    member_cards = [json.loads((models / "unet" / f"member-{k}" / "model.json").read_text()) for k in range(3)]
    assert {member_card["target_diameter"] for member_card in member_cards} == {32.0}
    for k, member_card in enumerate(member_cards):
        assert member_card["initial_model"]["training"] == read_card(ensemble / f"member-{k}")["training"]
    assert json.loads((models / "params.json").read_text())["params"]

    generator_weights = run / "pix2pix" / "cluster-0" / "weights.safetensors"
    stamp = generator_weights.stat().st_mtime_ns
    assert main(train) == 0  # a rerun redoes nothing finished
    assert generator_weights.stat().st_mtime_ns == stamp
    assert main(["train", str(images), "-o", str(run), *overrides()]) == 2  # resumed from another ensemble: refused

    out = tmp_path / "out"
    assert main(["predict", str(images), "-o", str(out), "--full", "--models", str(models), "--set", "device=cpu"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["presegment"]["model"] == str(models / "presegment") and saved["unet"]["model"] == str(models / "unet")
    assert read_labels(out / "labels" / "img0.tif").shape == (160, 160)


def test_train_with_masks_single_experiment_and_chosen_stages(tmp_path):
    images, masks, run = tmp_path / "images", tmp_path / "masks", tmp_path / "run"
    masks.mkdir()
    two_styles(images, masks)
    args = [
        "train",
        str(images),
        "--masks",
        str(masks),
        "-o",
        str(run),
        "--single-experiment",
        "--stages",
        "cluster,masks",
        "--set",
        "adapt.single_experiment_masks=3",
        *overrides(),
    ]
    assert main(args) == 0
    assert not (run / "presegment").exists()  # the given masks are the labels
    with (run / "clusters" / "clusters.csv").open() as handle:
        assert {row["cluster"] for row in csv.DictReader(handle)} == {"0"}
    assert len(list((run / "synthetic" / "cluster-0" / "masks").glob("*.tif"))) == 3
    assert not (run / "pix2pix").exists() and not (run / "models" / "unet").exists()
    recorded = json.loads((run / "config.json").read_text())["adapt"]  # every flag that shaped the run
    assert (recorded["stages"], recorded["masks"], recorded["single_experiment"], recorded["val"]) == (["cluster", "masks"], str(masks), True, None)
    assert main([*args, "--stages", "cluster,paint"]) == 2  # an unknown stage (the last --stages counts): one line
    with pytest.raises(SystemExit):
        main(["train", str(images)])  # -o is required


@pytest.mark.parametrize(
    ("polarity", "nucleus", "background"),
    [("keep", [90, 40, 150], [235, 180, 210]), ("choose", [188] * 3, [55] * 3)],  # choose learns them gray-inverted
)
def test_recolour_stage_redraws_the_replay_sample_in_each_groups_colours_and_pix2pix_waits_for_a_gpu(tmp_path, polarity, nucleus, background):
    images, masks, run = tmp_path / "images", tmp_path / "masks", tmp_path / "run"
    masks.mkdir()
    two_styles(images, masks)
    settings = [s for s in TINY if not s.startswith("adapt.pix2pix")]
    args = ["train", str(images), "--masks", str(masks), "-o", str(run), "--stages", "cluster,recolour,masks,pix2pix,synthesize", "--polarity", polarity]
    assert main([*args, *[arg for setting in settings for arg in ("--set", setting)]]) == 0
    assert not (run / "synthetic").exists() and not (run / "pix2pix").exists()  # on a CPU by default
    with (run / "clusters" / "clusters.csv").open() as handle:
        cluster_of = {row["image"]: int(row["cluster"]) for row in csv.DictReader(handle)}
    stained = run / "recoloured" / f"cluster-{cluster_of['img2']}"
    drawn = sorted((stained / "images").glob("*.png"))
    assert len(drawn) == 3
    for path in drawn:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(float)
        inside = read_labels(stained / "masks" / f"{path.stem}.tif") > 0
        assert np.abs(np.median(image[inside], axis=0) - nucleus).max() < 25  # the H&E-like images' nucleus colour
        assert np.abs(np.median(image[~inside], axis=0) - background).max() < 25  # and their background


def test_fine_tuning_shares_the_minutes_the_first_stages_leave_and_a_resumed_run_keeps_them(tmp_path):
    run = RunLayout(tmp_path)
    cfg = load_config(overrides=["adapt.minutes=60", "adapt.presegmenter_share=0.75"])
    budget = fine_tuning_minutes(run, cfg, 20 * 60, ["unet", "presegmenter"])
    assert (budget["presegmenter"], budget["unet"]) == (30.0, 10.0)  # 40 minutes left after 20
    assert fine_tuning_minutes(run, cfg, 50 * 60, ["unet", "presegmenter"]) == budget  # resumed later: the same split
    assert fine_tuning_minutes(run, replace(cfg, adapt=replace(cfg.adapt, minutes=120)), 20 * 60, ["presegmenter"])["presegmenter"] == 100.0
    assert fine_tuning_minutes(RunLayout(tmp_path / "new"), replace(cfg, adapt=replace(cfg.adapt, minutes=None)), 0, ["unet"]) == {
        "unet": None,
        "presegmenter": None,
    }


def test_each_style_group_redraws_its_own_replay_pairs():
    small, other = replay_order(96, 64, seed=0, cluster=0), replay_order(96, 64, seed=0, cluster=1)
    assert sorted(set(small)) == list(range(64)) and len(small) == 96  # every pair once before any twice
    assert small[:64] != other[:64]
    large = [set(replay_order(96, 256, seed=0, cluster=c)) for c in range(3)]
    assert all(len(drawn) == 96 for drawn in large)  # no pair twice while others are unused
    assert large[0] != large[1] != large[2]  # a larger sample gives each group other pairs, not the first 96 again
    assert replay_order(96, 256, seed=0, cluster=2) == replay_order(96, 256, seed=0, cluster=2)
