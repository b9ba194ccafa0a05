"""Colour transfer (style_transfer.colour) and the replay sample it redraws (workflow.replay)."""

import json

import cv2
import numpy as np

from style_transfer.colour import recolour, style_of
from tests.synthetic import disks
from workflow.core.labels import write_labels
from workflow.replay import balanced_choice, load_replay, make_replay_sample


def largest_diameter(labels):
    """The equivalent diameter of the largest object (crops cut the others at their edges)."""
    return float(np.sqrt(4 * np.bincount(labels.ravel())[1:].max() / np.pi))


CENTRES = [(y, x) for y in (20, 60, 100) for x in (20, 60, 100)]


def painted(labels, nucleus, background, noise=4.0, seed=0):
    rng = np.random.default_rng(seed)
    image = np.where((labels > 0)[..., None], nucleus, background) + rng.normal(0, noise, labels.shape + (3,))
    return np.clip(image, 0, 255).astype(np.uint8)


def test_a_fluorescence_image_takes_the_nucleus_and_background_colours_of_a_stained_one():
    labels = disks((120, 120), CENTRES, 9)
    fluorescence = painted(labels, [210, 210, 210], [12, 12, 12])
    stained = painted(disks((120, 120), [(30, 30), (80, 90)], 12), [90, 40, 150], [235, 180, 210], seed=1)
    style = style_of(stained, disks((120, 120), [(30, 30), (80, 90)], 12))
    drawn = recolour(fluorescence, labels, style)
    assert drawn.shape == fluorescence.shape and drawn.dtype == np.uint8
    assert np.abs(np.median(drawn[labels > 0], axis=0) - [90, 40, 150]).max() <= 3  # polarity flipped: dark nuclei now
    assert np.abs(np.median(drawn[labels == 0], axis=0) - [235, 180, 210]).max() <= 3
    assert drawn[labels == 0].std() > 1  # the source's texture is kept, not painted flat


def test_no_colours_without_nuclei_and_no_redrawing_without_contrast():
    labels = disks((80, 80), [(40, 40)], 10)
    assert style_of(painted(labels, [90, 40, 150], [235, 180, 210]), np.zeros_like(labels)) is None
    flat = painted(labels, [100, 100, 100], [100, 100, 100], noise=0)
    assert recolour(flat, labels, style_of(painted(labels, [90, 40, 150], [235, 180, 210]), labels)) is None


def test_balanced_choice_takes_the_types_in_turn():
    stems = [f"f{i}" for i in range(10)] + ["s0", "s1"]
    types = ["fluorescence"] * 10 + ["stained"] * 2
    chosen = balanced_choice(stems, types, 6, np.random.default_rng(0))
    assert len(chosen) == len(set(chosen)) == 6 and {"s0", "s1"} <= set(chosen)


def test_replay_sample_is_written_at_the_nucleus_size_and_rescaled_on_loading(tmp_path):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for index in range(3):
        labels = disks((200, 200), [(y, x) for y in (40, 100, 160) for x in (40, 100, 160)], 10)  # 21 px nuclei
        cv2.imwrite(str(data / "images" / f"im{index}.png"), painted(labels, [200, 200, 200], [10, 10, 10], seed=index))
        write_labels(data / "masks" / f"im{index}.tif", labels)
    (data / "split.csv").write_text("image_id,subset\nim0,train\nim1,train\nim2,val\n")
    sample = make_replay_sample(data, tmp_path / "replay", count=5, target=30.0, crop=128)
    card = json.loads((sample / "replay.json").read_text())
    assert (card["images"], card["target_diameter"], card["types"]) == (2, 30.0, {"unknown": 2})  # train images only
    pairs = load_replay(sample, 30.0)
    assert len(pairs) == 2 and pairs[0][0].shape == (128, 128, 3)
    assert abs(largest_diameter(pairs[0][1]) - 30.0) < 2
    bigger = load_replay(sample, 45.0)
    assert bigger[0][0].shape == (192, 192, 3) and abs(largest_diameter(bigger[0][1]) - 45.0) < 3
