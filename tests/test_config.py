import json

import pytest

from workflow.config import NucflowConfig, load_config
from workflow.core.files import InputError
from workflow.core.views import VIEWS


def test_defaults_follow_the_reference():
    cfg = load_config()
    assert cfg.size.target_diameter == 40.0
    assert cfg.presegment.detect.score_threshold == 0.7
    assert cfg.presegment.detect.nms_threshold == 0.2  # chosen on val (the reference: 0.35)
    assert cfg.presegment.detect.max_instances == 800
    assert cfg.views.full == VIEWS and cfg.views.fast == cfg.views.unet == ()  # the full path's first scale votes over all eight views


def test_file_then_flags_override(tmp_path):
    (tmp_path / "c.yaml").write_text("size:\n  target_diameter: 32\npresegment:\n  detect:\n    score_threshold: 0.5\n")
    cfg = load_config(tmp_path / "c.yaml", ["size.target_diameter=24", "presegment.train.val_limit=null", "input.stretch_percentiles=[1, 99]"])
    assert cfg.size.target_diameter == 24.0 and isinstance(cfg.size.target_diameter, float)
    assert cfg.presegment.detect.score_threshold == 0.5
    assert cfg.presegment.train.val_limit is None
    assert cfg.input.stretch_percentiles == (1.0, 99.0)


def test_overriding_one_key_keeps_the_sections_own_defaults():
    # a section whose default differs from its class's (pix2pix: geometric augmentation only; the presegmenter:
    # stretched crops) keeps it where an override names another key of it
    cfg = load_config(overrides=["pix2pix.augment.p_flip_rot=0.5", "presegment.train.augment.p_gamma=0.3"])
    assert cfg.pix2pix.augment.p_flip_rot == 0.5 and cfg.pix2pix.augment.p_contrast == 0.0 and cfg.pix2pix.augment.scale_range == (0.9, 1.1)
    assert cfg.presegment.train.augment.p_gamma == 0.3 and cfg.presegment.train.augment.p_stretch == 0.5
    assert cfg.unet.train.augment.p_stretch == 0.0


def test_exponent_notation_without_a_dot_is_a_float(tmp_path):
    # YAML 1.1 reads 5e-4 as text; a learning rate written that way must still work
    (tmp_path / "c.yaml").write_text("unet:\n  train:\n    weight_decay: 1e-5\n")
    cfg = load_config(tmp_path / "c.yaml", ["unet.train.learning_rate=5e-4"])
    assert cfg.unet.train.learning_rate == 0.0005 and cfg.unet.train.weight_decay == 1e-5


def test_json_config_and_save_roundtrip(tmp_path):
    cfg = load_config(overrides=["size.diameter=17.5"])
    path = cfg.save(tmp_path)
    assert path.name == "config.json"
    again = load_config(path)
    assert again == cfg and again.size.diameter == 17.5
    assert json.loads(path.read_text())["size"]["diameter"] == 17.5


@pytest.mark.parametrize(
    "override, message",
    [
        ("size.target_diameterr=3", "unknown config key"),
        ("size.target_diameter=big", "expected float"),
        ("presegment.train.iterations=1.5", "expected int"),
        ("nosuchthing", "bad override"),
        ("size=3", "must be a mapping"),
        ("views.full=[h, x]", "'views'.*views.full.*use each of h, v, hv, t, th, tv, thv at most once"),
        ("views.unet=[v, v]", "'views'.*at most once"),
        ("full.mrcnn_flips=[h]", "'full.mrcnn_flips' is now 'views.full'"),
        ("presegment.detect.flips=[h]", "is now 'views.fast'"),
        ("presegment.train.augment.max_aspect=0.5", "'presegment.train.augment'.*max_aspect.*>= 1"),
    ],
)
def test_bad_overrides_give_clear_errors(override, message):
    with pytest.raises(InputError, match=message):
        load_config(overrides=[override])


def test_bad_config_file(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_config(tmp_path / "bad.json")
    with pytest.raises(InputError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    assert isinstance(NucflowConfig().to_dict()["presegment"]["architecture"], dict)
