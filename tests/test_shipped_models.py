"""The default models and parameters that ship with nucflow: consistent, small, and working on a real image."""

from pathlib import Path

import pytest

from postprocess.params import DEFAULT_PARAMS, load_params
from presegment.storage import DEFAULT_MODEL
from tests.conftest import DATA
from unet_ensemble.storage import DEFAULT_ENSEMBLE, load_ensemble
from workflow.config import load_config
from workflow.core.images import read_image, to_rgb8
from workflow.core.labels import read_labels
from workflow.core.metrics import score_image
from workflow.core.modelfiles import read_card
from workflow.predict import build_segmenter

BUDGET_MB = 60
HE_IMAGE = "65c8527c16a016191118e8adc3d307fe3a73d37cbe05597a95aebd75daf8d051"


def test_defaults_agree_and_fit_the_size_budget():
    presegmenter = read_card(DEFAULT_MODEL)
    members = load_ensemble(None)
    assert len(members) >= 3
    # one nucleus size for the whole ensemble; the full path runs it at that size, whatever the presegmenter's
    assert len({card["target_diameter"] for _, card in members}) == 1 and presegmenter["target_diameter"] > 0
    for _, card in members:
        assert card["validation"]["foreground_iou"] > 0.7 and card["training"]["iterations"] > 0
    assert {card["target_sigma"] for _, card in members} == {0.0, 0.5, 1.0}
    files = [p for folder in (DEFAULT_MODEL, DEFAULT_ENSEMBLE) for p in Path(folder).rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < BUDGET_MB * 1e6
    load_params(None)
    assert "mean_dsb" in DEFAULT_PARAMS.read_text()  # found by the search, not the reference's guesses


@pytest.mark.slow
def test_full_path_with_shipped_defaults_segments_a_real_image():
    image = to_rgb8(read_image(DATA / "images" / f"{HE_IMAGE}.png"))
    truth = read_labels(DATA / "masks" / f"{HE_IMAGE}.tif")
    prediction = build_segmenter("full", load_config(overrides=["device=cpu"]))(image)
    assert prediction.labels.shape == truth.shape
    scores = score_image(truth, prediction.labels)
    assert scores.f1 > 0.6 and 0.5 * scores.n_true < scores.n_pred < 1.5 * scores.n_true
