"""pix2pix: a conditional GAN that turns a nucleus mask into an image of one style.

Generator: a segmentation-models-pytorch U-Net (mask channels in, RGB out through tanh).
Discriminator: the 70 x 70 PatchGAN of pix2pix. Loss: GAN (BCE on logits) + 100 L1; Adam
2e-4, beta1 0.5; learning rate constant for the first half, then linearly down to 0.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from style_transfer.config import GeneratorArchitecture, Pix2PixConfig
from workflow.core.augment import CropSampler
from workflow.core.files import atomic_path
from workflow.core.modelfiles import load_weights, read_card, save_weights
from workflow.core.tensors import image_tensor

log = logging.getLogger(__name__)
MASK_CHANNELS = 2  # foreground and object boundaries, so that touching nuclei stay apart


class Generator(nn.Module):
    """U-Net from mask channels to an RGB image in [-1, 1]."""

    def __init__(self, arch: GeneratorArchitecture):
        super().__init__()
        self.arch = arch
        self.unet = smp.Unet(
            arch.encoder, encoder_weights=None, encoder_depth=arch.depth, decoder_channels=arch.decoder_channels, in_channels=MASK_CHANNELS, classes=3
        )

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.unet(masks))

    @property
    def stride(self) -> int:
        return 2**self.arch.depth


def patch_discriminator(width: int = 64) -> nn.Module:
    """The 70 x 70 PatchGAN: one real/fake logit per overlapping 70 px patch of (mask, image)."""
    layers: list[nn.Module] = [nn.Conv2d(MASK_CHANNELS + 3, width, 4, 2, 1), nn.LeakyReLU(0.2)]
    channels = width
    for stride, factor in ((2, 2), (2, 4), (1, 8)):
        layers += [nn.Conv2d(channels, width * factor, 4, stride, 1, bias=False), nn.InstanceNorm2d(width * factor, affine=True), nn.LeakyReLU(0.2)]
        channels = width * factor
    layers.append(nn.Conv2d(channels, 1, 4, 1, 1))
    return nn.Sequential(*layers)


def mask_channels(labels: np.ndarray) -> np.ndarray:
    """(2, H, W) float32 generator input: foreground and inner boundaries of the label image."""
    labels = labels.astype(np.int32)
    eroded = cv2.erode(labels.astype(np.float32), np.ones((3, 3), np.uint8)).astype(np.int32)
    dilated = cv2.dilate(labels.astype(np.float32), np.ones((3, 3), np.uint8)).astype(np.int32)
    boundary = (labels > 0) & ((eroded != labels) | (dilated != labels))
    return np.stack([labels > 0, boundary]).astype(np.float32)


def _batch(sampler: CropSampler, count: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    crops = sampler.sample(count)
    masks = torch.from_numpy(np.stack([mask_channels(labels) for _, labels in crops])).to(device)
    images = image_tensor(np.stack([image for image, _ in crops]), device, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # in [-1, 1], as the generator draws
    return masks, images


def linear_decay(iteration: int, total: int) -> float:
    """Learning-rate factor: 1 for the first half, then linearly to 0 (pix2pix's schedule)."""
    half = total / 2
    return 1.0 if iteration < half else max(0.0, 1.0 - (iteration - half) / max(half, 1))


def train_pix2pix(
    pairs: list[tuple[np.ndarray, np.ndarray]], cfg: Pix2PixConfig, device: torch.device | str = "cpu", checkpoint: Path | None = None
) -> tuple[Generator, dict]:
    """Train on (rgb8 image, labels) pairs of one style; returns the generator and a training record.
    With a `checkpoint` path the state is saved there every `cfg.checkpoint_every` iterations and
    a rerun resumes from it.
    """
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    sampler = CropSampler(pairs, cfg.crop_size, rng, cfg.augment)
    generator, discriminator = Generator(cfg.generator).to(device).train(), patch_discriminator(cfg.discriminator_width).to(device).train()
    optimizers = [torch.optim.Adam(net.parameters(), lr=cfg.learning_rate, betas=(cfg.beta1, 0.999)) for net in (generator, discriminator)]
    schedules = [torch.optim.lr_scheduler.LambdaLR(o, lambda it: linear_decay(it, cfg.iterations)) for o in optimizers]
    parts = {
        "generator": generator,
        "discriminator": discriminator,
        "optimizer_g": optimizers[0],
        "optimizer_d": optimizers[1],
        "schedule_g": schedules[0],
        "schedule_d": schedules[1],
    }
    iteration = _resume(checkpoint, parts, rng, device)
    started, losses = time.monotonic(), {"generator": 0.0, "discriminator": 0.0, "l1": 0.0}
    while iteration < cfg.iterations and (cfg.max_minutes is None or time.monotonic() - started < cfg.max_minutes * 60):
        masks, real = _batch(sampler, cfg.batch_size, device)
        fake = generator(masks)
        real_logits, fake_logits = discriminator(torch.cat([masks, real], 1)), discriminator(torch.cat([masks, fake.detach()], 1))
        d_loss = 0.5 * (
            F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        )
        optimizers[1].zero_grad(set_to_none=True)
        d_loss.backward()
        optimizers[1].step()
        fooled = discriminator(torch.cat([masks, fake], 1))
        l1 = F.l1_loss(fake, real)
        g_loss = F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled)) + cfg.l1_weight * l1
        optimizers[0].zero_grad(set_to_none=True)
        g_loss.backward()
        optimizers[0].step()
        for schedule in schedules:
            schedule.step()
        iteration += 1
        for key, value in (("generator", g_loss), ("discriminator", d_loss), ("l1", l1)):
            losses[key] += float(value.detach()) / cfg.log_every
        if iteration % cfg.log_every == 0:
            log.info("pix2pix it %d/%d: G %.3f D %.3f L1 %.4f", iteration, cfg.iterations, losses["generator"], losses["discriminator"], losses["l1"])
            losses = dict.fromkeys(losses, 0.0)
        if checkpoint is not None and iteration % cfg.checkpoint_every == 0:
            _save_checkpoint(checkpoint, parts, rng, iteration)
    record = {"iterations": iteration, "minutes": round((time.monotonic() - started) / 60, 1), "images": len(pairs), "settings": asdict(cfg)}
    return generator.eval(), record


def _resume(checkpoint: Path | None, parts: dict, rng: np.random.Generator, device: torch.device) -> int:
    """Load the saved training state into `parts` and `rng`; returns the iteration to go on from (0 without one)."""
    if checkpoint is None or not checkpoint.is_file():
        return 0
    saved = torch.load(checkpoint, map_location=device, weights_only=False)
    for name, part in parts.items():
        part.load_state_dict(saved[name])
    rng.bit_generator.state = saved["rng"]
    torch.set_rng_state(saved["torch_rng"])
    log.info("pix2pix resumed from %s at iteration %d", checkpoint, saved["iteration"])
    return saved["iteration"]


def _save_checkpoint(checkpoint: Path, parts: dict, rng: np.random.Generator, iteration: int) -> None:
    """Everything a rerun needs to go on, written atomically."""
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    state = {name: part.state_dict() for name, part in parts.items()}
    with atomic_path(checkpoint) as tmp:
        torch.save({**state, "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "iteration": iteration}, tmp)


@torch.inference_mode()
def synthesize(generator: Generator, labels: np.ndarray) -> np.ndarray:
    """The (H, W, 3) uint8 image the generator draws for a label image (padded to its stride)."""
    device = next(generator.parameters()).device
    height, width = labels.shape
    stride = generator.stride
    pad_y, pad_x = -height % stride, -width % stride
    masks = np.pad(mask_channels(labels), ((0, 0), (0, pad_y), (0, pad_x)), mode="reflect")
    image = generator(torch.from_numpy(masks)[None].to(device))[0, :, :height, :width]
    return image.add(1).mul(127.5).round().clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy()


def save_generator(folder: str | Path, generator: Generator, card: dict) -> Path:
    """fp16 weights and `model.json` (architecture + `card`)."""
    return save_weights(folder, generator, {"kind": "nucflow-pix2pix-generator", "architecture": asdict(generator.arch), **card})


def load_generator(folder: str | Path, device: torch.device | str = "cpu") -> Generator:
    card = read_card(folder)
    arch = GeneratorArchitecture(**{k: tuple(v) if isinstance(v, list) else v for k, v in card["architecture"].items()})
    return load_weights(Generator(arch), folder).to(device).eval()
