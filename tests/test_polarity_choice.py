"""input.polarity "choose": the presegmenter's own confidence decides whether dark nuclei are shown gray and inverted."""

from pathlib import Path

import numpy as np
import pytest

from presegment import pipeline
from presegment.config import DetectConfig, SizeProbe
from presegment.pipeline import choose_polarity, confidence
from presegment.predict import Detections
from workflow.config import load_config
from workflow.core.images import InputConfig, read_image, to_rgb8, with_polarity
from workflow.predict import build_segmenter

SAMPLES = "tests/data/images"
FLUORESCENCE = f"{SAMPLES}/93c5638e7e6433b5c9cc87c152bcbe28873d2f9d6a392cca0642520807542a77.png"
STAINED_TISSUE = f"{SAMPLES}/65c8527c16a016191118e8adc3d307fe3a73d37cbe05597a95aebd75daf8d051.png"  # a stain the shipped model learned


def disks(dark: bool) -> np.ndarray:
    nuclei = np.zeros((64, 64), bool)
    nuclei[10:22, 10:22] = nuclei[40:52, 30:42] = True
    inside, outside = ((60, 30, 120), (230, 200, 220)) if dark else ((200, 200, 200), (10, 10, 10))
    return np.where(nuclei[..., None], inside, outside).astype(np.uint8)


def test_choose_leaves_images_alone_outside_the_segmenter():
    stained = disks(dark=True)
    assert InputConfig(polarity="choose").polarity == "choose"
    assert with_polarity(stained, "choose") is stained
    assert (to_rgb8(stained, InputConfig(polarity="choose")) == stained).all()


def test_bright_nuclei_are_never_shown_to_the_model_twice():
    fluorescence = disks(dark=False)
    shown, inverted = choose_polarity(None, fluorescence, DetectConfig(), SizeProbe())  # no model needed: it is not asked
    assert shown is fluorescence and not inverted


@pytest.mark.parametrize("kept, flipped, expect_inverted", [(0.9, 0.95, True), (0.95, 0.9, False), (0.9, 0.9, False)])
def test_the_more_confident_view_wins_and_a_tie_keeps_the_image(monkeypatch, kept, flipped, expect_inverted):
    stained = disks(dark=True)
    monkeypatch.setattr(pipeline, "confidence", lambda model, rgb8, cfg, probe: kept if rgb8 is stained else flipped)
    shown, inverted = choose_polarity(None, stained, DetectConfig(), SizeProbe())
    assert inverted == expect_inverted
    assert (shown == (with_polarity(stained, "invert") if expect_inverted else stained)).all()


@pytest.mark.slow
def test_shipped_presegmenter_inverts_a_negative_and_keeps_a_stain_it_knows():
    segmenter = build_segmenter("fast", load_config())  # choose is the default
    assert segmenter.orient is not None
    fluorescence = to_rgb8(read_image(FLUORESCENCE))
    negative = 255 - fluorescence  # dark gray nuclei on bright: no training image looks like this
    prediction = segmenter(negative)
    assert prediction.inverted and prediction.labels.shape == negative.shape[:2]
    assert (prediction.labels > 0).sum() > 0.5 * (build_segmenter("fast", load_config())(fluorescence).labels > 0).sum()
    assert not segmenter(to_rgb8(read_image(STAINED_TISSUE))).inverted
    assert build_segmenter("fast", load_config(overrides=["input.polarity=keep"])).orient is None  # no chooser


@pytest.mark.parametrize("scores, expected", [([], 0.0), ([0.2, 0.9], 0.55), (list(np.linspace(0.05, 1.0, 20)), np.linspace(0.05, 1.0, 20)[-10:].mean())])
def test_confidence_is_the_mean_of_the_ten_best_scores(monkeypatch, scores, expected):
    seen = {}
    monkeypatch.setattr(pipeline, "configure", lambda model, cfg: seen.setdefault("threshold", cfg.score_threshold))
    monkeypatch.setattr(
        pipeline,
        "detect",
        lambda model, window, cfg: (
            seen.setdefault("window", window.shape),
            Detections(np.zeros((len(scores), 4)), np.array(scores), np.zeros((len(scores), 28, 28))),
        )[1],
    )
    assert confidence(None, np.zeros((2000, 300, 3), np.uint8), DetectConfig(), SizeProbe(scale=1.5)) == pytest.approx(expected)
    assert seen["threshold"] == 0.05 and seen["window"] == (768, 450, 3)  # weak detections count; the window is bounded


def test_a_batch_says_which_images_were_segmented_inverted(monkeypatch, tmp_path, caplog):
    from workflow import batch
    from workflow.predict import Prediction

    monkeypatch.setattr(batch, "cached_segmenter", lambda cfg: lambda rgb8: Prediction(np.zeros(rgb8.shape[:2], np.int32), inverted=True))
    with caplog.at_level("INFO", logger="workflow.batch"):
        result = batch.segment_image(Path(STAINED_TISSUE), tmp_path, load_config(overrides=["input.polarity=choose"]))
    assert result.error is None
    assert "segmented gray-inverted" in caplog.text and Path(STAINED_TISSUE).name in caplog.text


def test_choose_is_the_default_and_classic_keeps_images_under_it(caplog):
    cfg = load_config()
    assert cfg.input.polarity == "choose"
    stained = np.kron(disks(dark=True), np.ones((2, 2, 1), np.uint8))  # 128 x 128, nuclei 24 px
    kept = build_segmenter("classic", load_config(overrides=["input.polarity=keep"]))(stained)
    with caplog.at_level("INFO"):
        chosen = build_segmenter("classic", cfg)(stained)
    assert (chosen.labels == kept.labels).all() and not chosen.inverted
    assert any("classic" in r.getMessage() and "as they are" in r.getMessage() for r in caplog.records)
