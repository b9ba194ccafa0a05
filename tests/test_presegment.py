import json

import numpy as np
import pytest
import torch
from skimage.measure import label as connected_components
from skimage.measure import regionprops
from torch import nn
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler

from presegment.backends import detectron2_available, load_presegmenter
from presegment.config import Architecture, DetectConfig, SizeProbe, TrainConfig
from presegment.model import BACKBONES, REDUCED_PRECISION_PARTS, build_model
from presegment.pipeline import estimate_diameter, presegment
from presegment.predict import Detections, detect, dilate_labels, paint, paste, run_model, segment
from presegment.storage import load_model, save_model
from presegment.train import make_target, train
from tests.synthetic import TINY_PRESEGMENTER, disks, nucleus_image
from workflow.config import SizeConfig
from workflow.core.images import resize_image, to_rgb8
from workflow.core.labels import resize_labels
from workflow.core.metrics import score_image
from workflow.core.tiling import TilingConfig, tile_starts
from workflow.core.views import VIEWS, ViewsConfig, view_image
from workflow.predict import Prediction, Segmenter


class BrightBlobModel(nn.Module):
    """Stands in for Mask R-CNN: one detection per bright connected blob of the input tile."""

    mask_frame_offset = 0.0  # its masks are cut from the box itself

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.roi_heads = type("Heads", (), {})()
        self.calls = 0

    def forward(self, images):
        self.calls += 1
        gray = images[0].mean(0).numpy()
        boxes, scores, masks = [], [], []
        for region in regionprops(connected_components(gray > 0.5)):
            y0, x0, y1, x1 = region.bbox
            boxes.append([x0, y0, x1, y1])
            scores.append(0.9)
            masks.append(torch.nn.functional.interpolate(torch.tensor(region.image, dtype=torch.float32)[None, None], (28, 28))[0])
        if not boxes:
            return [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "masks": torch.zeros(0, 1, 28, 28)}]
        return [{"boxes": torch.tensor(boxes, dtype=torch.float32), "scores": torch.tensor(scores), "masks": torch.stack(masks)}]


def many_disks(shape=(400, 520), radius=9, spacing=34):
    centres = [(y, x) for y in range(20, shape[0] - 15, spacing) for x in range(20, shape[1] - 15, spacing)]
    return disks(shape, centres, radius)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n != "resnet18_fpn" else n for n in sorted(BACKBONES)])
def test_every_backbone_builds_and_runs(name):
    model = build_model(Architecture(backbone=name)).eval()
    with torch.inference_mode():
        out = model([torch.rand(3, 96, 128)])[0]
    assert set(out) >= {"boxes", "scores", "masks"}
    assert out["masks"].shape[-2:] == (28, 28)  # masks stay unpasted; predict.paint pastes them


def test_unknown_backbone_and_anchor_count():
    with pytest.raises(ValueError, match="unknown presegmenter backbone"):
        build_model(Architecture(backbone="vgg"))
    with pytest.raises(ValueError, match="anchor sizes"):
        build_model(Architecture(anchor_sizes=(16, 32)))


def test_make_target_boxes_and_masks():
    labels = np.zeros((20, 30), np.int32)
    labels[2:6, 3:10] = 1
    labels[10:12, 20:21] = 2  # 2 pixels: below min_pixels, not a target
    target = make_target(labels, min_pixels=4)
    assert target["boxes"].tolist() == [[3.0, 2.0, 10.0, 6.0]]
    assert target["masks"].shape == (1, 20, 30) and int(target["masks"].sum()) == 28
    assert make_target(np.zeros((8, 8), np.int32), 4)["boxes"].shape == (0, 4)


def test_tile_starts_cover_with_overlap():
    assert tile_starts(500, 768, 160) == [0]
    starts = tile_starts(2000, 768, 160)
    assert starts[0] == 0 and starts[-1] + 768 == 2000
    assert all(b - a <= 768 - 160 for a, b in zip(starts, starts[1:]))


def test_tiled_detection_neither_cuts_nor_duplicates_nuclei():
    truth = many_disks()
    image = to_rgb8(nucleus_image(truth))
    model = BrightBlobModel()
    cfg = DetectConfig(tile_size=128, tile_overlap=48, pad_fraction=0, dilate=0)
    found = detect(model, image, cfg)
    assert model.calls > 4  # really tiled
    assert len(found.scores) == truth.max()
    assert score_image(truth, paint(found, truth.shape)).ap50 == 1.0


class TargetEchoModel(nn.Module):
    """Answers with the training targets torchvision would make of `labels` (roi_align, aligned=False)."""

    def __init__(self, labels):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.roi_heads = type("Heads", (), {})()
        self.target = make_target(labels, 1)

    def forward(self, images):
        from torchvision.models.detection.roi_heads import project_masks_on_boxes

        boxes = self.target["boxes"]
        masks = project_masks_on_boxes(self.target["masks"], boxes, torch.arange(len(boxes)), 28)
        return [{"boxes": boxes, "scores": torch.ones(len(boxes)), "masks": masks[:, None]}]


def test_masks_painted_where_torchvision_trained_them():
    """A torchvision model's masks are targets sampled half a pixel off the box: painted without
    that offset, the training targets themselves came back shifted (centroid -0.45 px)."""
    truth = disks((96, 96), [(40.3, 52.6), (61.8, 30.2)], 11)
    labels = paint(run_model(TargetEchoModel(truth), np.zeros((96, 96, 3), np.uint8)), truth.shape)
    for k in (1, 2):
        painted_label = np.bincount(labels[truth == k]).argmax()
        painted, true = np.argwhere(labels == painted_label), np.argwhere(truth == k)
        assert np.abs(painted.mean(0) - true.mean(0)).max() < 0.2
    assert score_image(truth, labels).mean_matched_iou > 0.93


def test_paint_higher_score_wins_and_dilate_fills_background_only():
    square = np.ones((1, 28, 28), np.float32)
    detections = Detections(np.array([[0, 0, 10, 10], [5, 5, 15, 15]], np.float32), np.array([0.95, 0.8], np.float32), np.repeat(square, 2, 0))
    labels = paint(detections, (20, 20))
    assert labels[7, 7] == labels[0, 0] and labels[12, 12] != labels[0, 0]
    grown = dilate_labels(labels, 1)
    assert (grown[labels > 0] == labels[labels > 0]).all() and (grown > 0).sum() > (labels > 0).sum()


def test_segment_pads_and_returns_image_size():
    truth = many_disks((150, 170))
    labels = segment(BrightBlobModel(), to_rgb8(nucleus_image(truth)), DetectConfig(dilate=0))
    assert labels.shape == truth.shape and score_image(truth, labels).dsb > 0.7


def test_presegment_at_the_estimated_size_and_unscaled_when_nothing_was_found():
    truth = many_disks((300, 300), radius=6, spacing=30)
    image = to_rgb8(nucleus_image(truth))
    diameter = estimate_diameter(BrightBlobModel(), image, DetectConfig(dilate=0), 26.0)
    assert abs(diameter - 13) < 1.5
    result = presegment(BrightBlobModel(), image, target_diameter=26.0, cfg=DetectConfig(dilate=0), diameter=diameter)
    assert result.scale == pytest.approx(26.0 / diameter)
    assert result.labels.shape == truth.shape and score_image(truth, result.labels).ap50 > 0.9
    assert estimate_diameter(BrightBlobModel(), np.zeros((64, 64, 3), np.uint8), DetectConfig(), 26.0) is None
    empty = presegment(BrightBlobModel(), np.zeros((64, 64, 3), np.uint8), 26.0, DetectConfig(), None)
    assert empty.diameter is None and empty.scale == 1.0 and empty.labels.max() == 0
    given = presegment(BrightBlobModel(), image, 26.0, DetectConfig(dilate=0), diameter=6.5)
    assert given.scale == pytest.approx(4.0)


class SizeRecordingModel(BrightBlobModel):
    """Remembers the size of every image it was shown."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, images):
        self.seen.append(tuple(images[0].shape[-2:]))
        return super().forward(images)


def test_zoom_enlarges_what_mask_rcnn_sees_but_not_the_output():
    truth = many_disks((120, 100), radius=6, spacing=30)
    image = to_rgb8(nucleus_image(truth))
    model = SizeRecordingModel()
    result = presegment(model, image, 24.0, DetectConfig(zoom=1.5, pad_fraction=0, dilate=0), diameter=12.0)
    assert model.seen == [(360, 300)]  # 2x to the target size, then 1.5x
    assert result.scale == pytest.approx(2.0) and result.labels.shape == truth.shape
    assert score_image(truth, result.labels).ap50 == 1.0
    model.seen.clear()  # nothing found in the probe pass: the image is segmented as it is, not zoomed, and probed once
    size, tiling, detect = SizeConfig(target_diameter=24.0), TilingConfig(), DetectConfig(zoom=1.5, pad_fraction=0)

    def segmenter(probe):
        run = lambda rgb8, diameter: Prediction(presegment(model, rgb8, 24.0, detect, diameter).labels)  # noqa: E731
        return Segmenter(24.0, lambda rgb8: estimate_diameter(model, rgb8, detect, 24.0, probe), run, size, tiling)

    assert segmenter(SizeProbe(scale=1.0, octaves=0))(np.zeros((64, 64, 3), np.uint8)).diameter is None
    assert model.seen == [(64, 64), (64, 64)]
    model.seen.clear()  # the octave ladder tries more passes first, then still segments the image as it is
    segmenter(SizeProbe(octaves=3))(np.zeros((64, 64, 3), np.uint8))
    assert len(model.seen) == 2 + 3 + 1 and model.seen[-1] == (64, 64)  # first, one down, all up; then the image


def test_save_load_roundtrip_fp16(tmp_path):
    arch = Architecture(fpn_channels=32, box_head_width=32, mask_head_width=16)
    model = build_model(arch).eval()
    save_model(tmp_path / "m", model, arch, {"target_diameter": 30})
    card = json.loads((tmp_path / "m" / "model.json").read_text())
    assert card["architecture"]["fpn_channels"] == 32 and card["target_diameter"] == 30
    loaded, card = load_model(tmp_path / "m")
    name, tensor = next((n, t) for n, t in model.state_dict().items() if t.is_floating_point())
    assert torch.allclose(loaded.state_dict()[name], tensor.half().float())
    with pytest.raises(FileNotFoundError, match="not a nucflow model folder"):
        load_model(tmp_path)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny presegmenter trained for a few iterations on synthetic disks."""
    out = tmp_path_factory.mktemp("run")
    pairs = [(to_rgb8(nucleus_image(many_disks((96, 96), radius=8, spacing=30), seed=s)), many_disks((96, 96), radius=8, spacing=30)) for s in range(3)]
    arch = Architecture(fpn_channels=32, box_head_width=32, mask_head_width=16)
    cfg = TrainConfig(iterations=4, batch_size=2, crop_size=64, val_every=2, warmup_iterations=2, log_every=1)
    best = train(pairs[:2], pairs[2:], arch, cfg, out, {"target_diameter": 17.0})
    return out, pairs, arch, cfg, best


def test_training_writes_best_model_and_checkpoint(tiny_run):
    out, _, _, _, best = tiny_run
    assert (out / "model" / "weights.safetensors").is_file() and (out / "checkpoint.pt").is_file()
    card = json.loads((out / "model" / "model.json").read_text())
    assert card["training"]["iterations"] in (2, 4) and card["validation"]["dsb"] == best["dsb"]
    assert [h["iteration"] for h in torch.load(out / "checkpoint.pt", weights_only=False)["state"]["history"]] == [2, 4]


def test_training_resumes_from_checkpoint(tiny_run, caplog):
    out, pairs, arch, cfg, _ = tiny_run
    cfg6 = TrainConfig(**{**cfg.__dict__, "iterations": 6})
    with caplog.at_level("INFO"):
        train(pairs[:2], pairs[2:], arch, cfg6, out, {"target_diameter": 17.0})
    assert "resumed from" in caplog.text and "iteration 4" in caplog.text
    assert torch.load(out / "checkpoint.pt", weights_only=False)["state"]["iteration"] == 6


def test_heads_learn_from_the_configured_number_of_proposals_per_crop(tiny_run, tmp_path):
    """`box_samples_per_image` bounds the proposals sampled per crop for the box and mask heads (a faster step)."""
    _, pairs, arch, cfg, _ = tiny_run
    sampled = []

    class CountingSampler(BalancedPositiveNegativeSampler):
        def __call__(self, matched_idxs):
            positives, negatives = super().__call__(matched_idxs)
            sampled.extend(int(p.sum() + n.sum()) for p, n in zip(positives, negatives))
            return positives, negatives

    model = build_model(arch)
    model.roi_heads.fg_bg_sampler = CountingSampler(256, 0.25)
    one_step = TrainConfig(**{**cfg.__dict__, "iterations": 1, "val_every": 1, "box_samples_per_image": 16})
    train(pairs[:2], pairs[2:], arch, one_step, tmp_path, {"target_diameter": 17.0}, initial_model=model)
    assert len(sampled) == one_step.batch_size and max(sampled) == 16


def test_training_in_bfloat16_reduces_the_inference_parts_and_says_so(tiny_run, tmp_path):
    """On an AMX CPU (precision auto) the parts that infer in bfloat16 train in it; boxes and losses stay float32."""
    _, pairs, arch, cfg, _ = tiny_run
    model = build_model(arch)
    one_step = TrainConfig(**{**cfg.__dict__, "iterations": 1, "val_every": 1})
    train(pairs[:2], pairs[2:], arch, one_step, tmp_path, {"target_diameter": 17.0}, initial_model=model, dtype=torch.bfloat16)
    assert [model.get_submodule(part).compute_dtype for part in REDUCED_PRECISION_PARTS] == [torch.bfloat16] * len(REDUCED_PRECISION_PARTS)
    assert getattr(model.roi_heads, "compute_dtype", None) is None
    card = json.loads((tmp_path / "model" / "model.json").read_text())
    assert card["training"]["precision"] == "bfloat16" and load_model(tmp_path / "model")[0] is not None


def test_backends_by_name(tiny_run):
    model, card = load_presegmenter("torchvision", tiny_run[0] / "model", "cpu")
    assert card["target_diameter"] == 17.0 and not model.training
    with pytest.raises(ValueError, match="unknown presegmenter backend"):
        load_presegmenter("yolo", None)


@pytest.mark.skipif(detectron2_available(), reason="detectron2 is installed")
def test_detectron2_backend_says_it_is_missing():
    with pytest.raises(ImportError, match="detectron2 is not installed"):
        load_presegmenter("detectron2", None)


def test_fast_predict_cli_with_a_model_folder(tiny_run, tmp_path):
    from tests.conftest import DATA
    from workflow.cli import main
    from workflow.core.labels import read_labels

    out = tmp_path / "fast"
    assert main(["predict", str(DATA / "images"), "-o", str(out), "--fast", "--model", str(tiny_run[0] / "model")]) == 0
    for image in (DATA / "images").iterdir():
        labels = read_labels(out / "labels" / f"{image.stem}.tif")
        assert labels.shape == read_labels(DATA / "masks" / f"{image.stem}.tif").shape
    assert (out / "sizes.csv").read_text().count("\n") == 3
    assert main(["predict", str(DATA / "images"), "-o", str(tmp_path / "o2"), "--fast", "--model", str(tmp_path / "none")]) == 2


def test_train_presegment_command_end_to_end(tmp_path, monkeypatch):
    """The CLI trains from an images/ + masks/ + split.csv folder and records fast-path val scores;
    validation during training detects with the run's own thresholds (without its extra views)."""
    import cv2

    import presegment.train
    from workflow.cli import main

    seen = []
    real_validate = presegment.train.validate
    monkeypatch.setattr(presegment.train, "validate", lambda model, pairs, detect: seen.append(detect) or real_validate(model, pairs, detect))
    from workflow.core.labels import write_labels

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    rows = ["image_id,subset"]
    for k in range(4):
        truth = many_disks((96, 96), radius=6, spacing=30)
        cv2.imwrite(str(data / "images" / f"im{k}.png"), nucleus_image(truth, seed=k))
        write_labels(data / "masks" / f"im{k}.tif", truth)
        rows.append(f"im{k},{'val' if k == 3 else 'train'}")
    (data / "split.csv").write_text("\n".join(rows) + "\n")
    settings = [*TINY_PRESEGMENTER, "presegment.detect.score_threshold=0.55", "presegment.detect.mask_threshold=0.45", "views.fast=[h]"]
    assert main(["train-presegment", str(data), "-o", str(tmp_path / "run"), *[a for o in settings for a in ("--set", o)]]) == 0
    assert seen and all((d.score_threshold, d.mask_threshold) == (0.55, 0.45) for d in seen)
    card = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    assert card["target_diameter"] == 20.0 and card["training_data"]["train_images"] == 3
    assert card["validation_fast_path"]["images"] == 1 and 0.0 <= card["validation_fast_path"]["dsb"] <= 1.0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["presegment"]["train"]["iterations"] == 2
    (data / "split.csv").write_text("image_id,subset\nim0,train\n")
    assert main(["train-presegment", str(data), "-o", str(tmp_path / "run2")]) == 2  # no val rows: one-line error


def test_detections_of_every_view_paint_back_onto_the_image():
    rng = np.random.default_rng(0)
    shape = (50, 60)
    for flip in VIEWS:
        view_shape = view_image(np.zeros((*shape, 3), np.uint8), flip).shape[:2]
        corners = rng.uniform(-5, min(view_shape) - 5, (12, 2))
        boxes = np.concatenate([corners, corners + rng.uniform(4, 15, (12, 2))], 1).astype(np.float32)
        found = Detections(boxes, rng.uniform(0.5, 1, 12).astype(np.float32), rng.uniform(0, 1, (12, 28, 28)).astype(np.float32))
        on_image = paint(found.mirrored(shape, flip), shape)
        assert on_image.shape == shape and on_image.max() > 0
        assert (view_image(on_image, flip) == paint(found, view_shape)).all(), flip


class LeftHalfModel(BrightBlobModel):
    """Finds only the blobs whose centre lies in the left half of its input: it sees differently in a mirror."""

    def forward(self, images):
        out = super().forward(images)[0]
        keep = (out["boxes"][:, 0] + out["boxes"][:, 2]) / 2 < images[0].shape[-1] / 2
        return [{key: value[keep] for key, value in out.items()}]


def test_flipped_views_vote_and_land_where_they_belong():
    truth = many_disks((150, 170))
    image = to_rgb8(nucleus_image(truth))
    plain = segment(LeftHalfModel(), image, DetectConfig(pad_fraction=0))
    assert 0 < plain.max() < truth.max()
    # mirrored top-bottom the model still sees the left half: every object is confirmed, in place
    # (up to the fake model's nearest-neighbour masks, which are not mirror-symmetric)
    confirmed = score_image(plain, segment(LeftHalfModel(), image, DetectConfig(pad_fraction=0), ("v",)))
    assert confirmed.ap50 == 1.0 and confirmed.mean_matched_iou > 0.95
    # mirrored left-right it sees the other half: no object is found in both views (score 0.9 / 2 < 0.7)
    assert segment(LeftHalfModel(), image, DetectConfig(pad_fraction=0), ("h",)).max() == 0
    # transposed it sees the top half: only the top-left quarter is found in both views
    quarter = segment(LeftHalfModel(), image, DetectConfig(pad_fraction=0), ("t",))
    top = [region.label for region in regionprops(plain) if region.centroid[0] < image.shape[0] / 2]
    assert 0 < len(top) < plain.max()
    assert score_image(np.where(np.isin(plain, top), plain, 0), quarter).ap50 == 1.0
    for bad in (("x",), ("h", "h"), ("vt",)):
        with pytest.raises(ValueError, match="use each of h, v, hv, t, th, tv, thv at most once"):
            ViewsConfig(fast=bad)


def test_paste_cuts_masks_at_the_border_instead_of_squeezing_them():
    left_half = np.zeros((1, 28, 28), np.float32)
    left_half[:, :, :14] = 1  # the left half of the box is nucleus
    (instance,) = paste(Detections(np.array([[-10, 0, 10, 10]], np.float32), np.ones(1, np.float32), left_half), (20, 20))
    assert (instance.left, instance.mask.shape) == (0, (10, 10)) and instance.mask.max() < 0.1  # what lies inside is background


def test_contour_smoothing_is_measured_in_size_normalised_pixels():
    """`contour_sigma` is given at the target size; Mask R-CNN's labels are at the zoomed size, so they are smoothed by sigma x zoom."""
    truth = many_disks((120, 100), radius=12, spacing=40)
    image = to_rgb8(nucleus_image(truth))
    cfg = DetectConfig(zoom=1.5, pad_fraction=0, dilate=0)
    result = presegment(BrightBlobModel(), image, 12.0, cfg, diameter=24.0, contour_sigma=1.0)
    zoomed = segment(BrightBlobModel(), resize_image(image, (90, 75)), cfg)  # 0.5 x 1.5 of the image
    np.testing.assert_array_equal(result.labels, resize_labels(zoomed, truth.shape, contour_sigma=1.5))
    assert not np.array_equal(result.labels, resize_labels(zoomed, truth.shape, contour_sigma=1.0))
