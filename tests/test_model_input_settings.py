"""A model's card records the input settings it learned with; predicting with others is said in one line per setting."""

import json
import logging
import shutil

from presegment.storage import DEFAULT_MODEL
from workflow.config import load_config
from workflow.core.images import InputConfig
from workflow.predict import input_differences, load_models


def test_differences_name_the_setting_and_the_flag_that_matches_it():
    trained = {"polarity": "auto", "stretch_8bit": True, "stretch_percentiles": [0.1, 99.9], "per_channel": False}
    polarity, stretch = sorted(input_differences(trained, InputConfig(polarity="keep")))
    assert "input.polarity=auto, this run uses keep" in polarity and "--polarity" in polarity
    assert "input.stretch_8bit=True, this run uses False" in stretch and "--stretch-8bit" in stretch
    assert input_differences(trained, InputConfig(polarity="auto", stretch_8bit=True)) == []
    assert "--percentiles" in input_differences({"stretch_percentiles": [1, 99]}, InputConfig())[0]


def test_inverting_at_prediction_only_and_old_cards_are_not_differences():
    assert input_differences({"polarity": "keep"}, InputConfig(polarity="auto")) == []  # what --polarity auto is for
    assert input_differences({"polarity": "choose"}, InputConfig(polarity="choose")) == []
    assert input_differences({"polarity": "auto"}, InputConfig(polarity="choose")) == []  # choose offers the inverted view
    assert input_differences({"polarity": "invert"}, InputConfig(polarity="choose")) != []  # but not for every image
    assert input_differences({}, InputConfig(polarity="invert", stretch_8bit=True)) == []  # a card that records nothing


def test_loading_a_model_trained_on_inverted_images_warns_when_the_run_keeps_them(tmp_path, caplog):
    model = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL, model)
    card = json.loads((model / "model.json").read_text())
    (model / "model.json").write_text(json.dumps({**card, "input": {**card.get("input", {}), "polarity": "auto"}}))
    with caplog.at_level(logging.WARNING):
        load_models(load_config(overrides=[f"presegment.model={model}", "device=cpu", "input.polarity=keep"]), ensemble=False)
    assert any("presegmenter was trained with input.polarity=auto" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_models(load_config(overrides=[f"presegment.model={model}", "device=cpu"]), ensemble=False)  # choose: what nucflow train gives
    assert not [r for r in caplog.records if "was trained with" in r.getMessage()]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_models(load_config(overrides=["device=cpu"]))  # the shipped models with the defaults: nothing to say
    assert not [r for r in caplog.records if "was trained with" in r.getMessage()]
