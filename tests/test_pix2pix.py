"""pix2pix: shapes of the networks, the schedule, learning a simple style, and the model folder."""

import numpy as np
import pytest
import torch

from style_transfer import pix2pix
from style_transfer.config import GeneratorArchitecture, Pix2PixConfig
from style_transfer.pix2pix import linear_decay, load_generator, mask_channels, patch_discriminator, save_generator, synthesize, train_pix2pix
from tests.synthetic import disks

NUCLEUS, BACKGROUND = np.array([60, 20, 140]), np.array([230, 170, 200])  # purple nuclei on pink
TINY = GeneratorArchitecture(depth=3, decoder_channels=(32, 16, 8))


def styled(labels, seed):
    rng = np.random.default_rng(seed)
    image = np.where((labels > 0)[..., None], NUCLEUS, BACKGROUND) + rng.normal(0, 6, labels.shape + (3,))
    return np.clip(image, 0, 255).astype(np.uint8)


def test_mask_channels_mark_foreground_and_the_line_between_touching_nuclei():
    labels = np.zeros((20, 20), np.int32)
    labels[5:15, 2:10], labels[5:15, 10:18] = 1, 2
    fg, boundary = mask_channels(labels)
    assert fg.sum() == 160 and boundary[10, 9] == 1 and boundary[10, 10] == 1 and boundary[10, 5] == 0


def test_patchgan_gives_one_logit_per_patch_and_schedule_decays():
    logits = patch_discriminator(16)(torch.zeros(1, 5, 256, 256))
    assert logits.shape == (1, 1, 30, 30)  # the 70 x 70 PatchGAN's grid on 256 px
    assert linear_decay(0, 100) == 1 and linear_decay(49, 100) == 1 and linear_decay(75, 100) == pytest.approx(0.5) and linear_decay(100, 100) == 0


@pytest.mark.slow
def test_generator_learns_the_style_and_round_trips(tmp_path):
    pairs = []
    for seed in range(3):
        labels = disks((96, 96), [tuple(c) for c in np.random.default_rng(seed).integers(15, 80, (4, 2))], 9)
        pairs.append((styled(labels, seed), labels))
    cfg = Pix2PixConfig(iterations=60, batch_size=2, crop_size=64, learning_rate=2e-3, discriminator_width=8, log_every=20, generator=TINY)
    generator, record = train_pix2pix(pairs, cfg)
    assert record["iterations"] == 60
    mask = disks((80, 72), ((30, 30), (50, 50)), 10)
    image = synthesize(generator, mask)
    assert image.shape == (80, 72, 3) and image.dtype == np.uint8
    inside, outside = image[mask > 0].mean(axis=0), image[mask == 0].mean(axis=0)
    assert np.abs(inside - NUCLEUS).sum() < np.abs(inside - BACKGROUND).sum()  # nuclei drawn in the nucleus colour
    assert np.abs(outside - BACKGROUND).sum() < np.abs(outside - NUCLEUS).sum()
    save_generator(tmp_path / "g", generator, {"training": record})
    again = synthesize(load_generator(tmp_path / "g"), mask)
    assert np.abs(again.astype(int) - image).max() <= 2  # fp16 weights: the same image up to rounding


@pytest.mark.slow
def test_interrupted_training_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    labels = disks((64, 64), ((20, 20), (44, 40)), 8)
    pairs = [(styled(labels, 0), labels)]
    cfg = Pix2PixConfig(iterations=6, batch_size=1, crop_size=32, discriminator_width=8, log_every=3, checkpoint_every=3, generator=TINY)
    whole, _ = train_pix2pix(pairs, cfg)
    real_batch, calls = pix2pix._batch, []

    def interrupted_at_the_fifth_batch(*args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_batch(*args)

    monkeypatch.setattr(pix2pix, "_batch", interrupted_at_the_fifth_batch)
    with pytest.raises(KeyboardInterrupt):
        train_pix2pix(pairs, cfg, checkpoint=tmp_path / "ck.pt")
    assert torch.load(tmp_path / "ck.pt", weights_only=False)["iteration"] == 3
    monkeypatch.undo()
    resumed, record = train_pix2pix(pairs, cfg, checkpoint=tmp_path / "ck.pt")
    assert record["iterations"] == 6
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)
