"""Presegmenter inference on one size-normalised image: padding, tiling, painting labels."""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch
from torch import nn

from presegment.config import DetectConfig
from presegment.consensus import SoftInstance, vote
from workflow.core.labels import relabel
from workflow.core.modelfiles import device_of
from workflow.core.tensors import image_tensor
from workflow.core.tiling import in_core, windows
from workflow.core.views import view_image

# torchvision samples its mask targets with roi_align(aligned=False), half a pixel right of
# and below the box: that is where a torchvision model's masks belong when painted.
TORCHVISION_MASK_FRAME_OFFSET = 0.5


@dataclass
class Detections:
    """Instances found in one image: boxes (N, 4) as x0, y0, x1, y1, scores (N,), masks (N, m, m) in [0, 1]."""

    boxes: np.ndarray
    scores: np.ndarray
    masks: np.ndarray

    @classmethod
    def empty(cls, mask_size: int = 28) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, mask_size, mask_size), np.float32))

    def shifted(self, dx: float, dy: float) -> "Detections":
        return Detections(self.boxes + np.array([dx, dy, dx, dy], np.float32), self.scores, self.masks)

    def mirrored(self, shape: tuple[int, int], flip: str) -> "Detections":
        """Detections of the view `view_image(image, flip)` put back on the image of `shape`: undo the
        left-right ("h") and top-bottom ("v") mirrors on the view, then its transpose ("t")."""
        view_shape = (shape[1], shape[0]) if "t" in flip else shape
        boxes, masks = self.boxes.copy(), self.masks
        if "h" in flip:
            boxes[:, [0, 2]] = view_shape[1] - self.boxes[:, [2, 0]]
            masks = masks[:, :, ::-1]
        if "v" in flip:
            boxes[:, [1, 3]] = view_shape[0] - self.boxes[:, [3, 1]]
            masks = masks[:, ::-1, :]
        if "t" in flip:
            boxes = boxes[:, [1, 0, 3, 2]]
            masks = masks.transpose(0, 2, 1)
        return Detections(boxes, self.scores, np.ascontiguousarray(masks))

    def subset(self, keep: np.ndarray) -> "Detections":
        return Detections(self.boxes[keep], self.scores[keep], self.masks[keep])

    @classmethod
    def concatenate(cls, parts: list["Detections"]) -> "Detections":
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("boxes", "scores", "masks")))


def configure(model: nn.Module, cfg: DetectConfig) -> None:
    """Apply the inference thresholds to a torchvision Mask R-CNN."""
    model.roi_heads.score_thresh = cfg.score_threshold
    model.roi_heads.nms_thresh = cfg.nms_threshold
    model.roi_heads.detections_per_img = cfg.max_instances


@torch.inference_mode()
def run_model(model: nn.Module, rgb8: np.ndarray) -> Detections:
    """Raw detections of one (tile) image, each box moved onto the frame its mask was trained on."""
    device = device_of(model)
    output = model([image_tensor(rgb8, device)])[0]
    if len(output["scores"]) == 0:
        return Detections.empty()
    offset = getattr(model, "mask_frame_offset", TORCHVISION_MASK_FRAME_OFFSET)
    return Detections(
        output["boxes"].float().cpu().numpy() + np.float32(offset),
        output["scores"].float().cpu().numpy(),
        output["masks"][:, 0].float().cpu().numpy(),
    )


def detect(model: nn.Module, rgb8: np.ndarray, cfg: DetectConfig) -> Detections:
    """Detections of a whole image, tiled when large; each instance comes from the one tile owning its centre."""
    parts = []
    for window in windows(rgb8.shape, cfg.tile_size, cfg.tile_overlap):
        found = run_model(model, rgb8[window.slices]).shifted(window.x, window.y)
        cx = (found.boxes[:, 0] + found.boxes[:, 2]) / 2
        cy = (found.boxes[:, 1] + found.boxes[:, 3]) / 2
        parts.append(found.subset(in_core(cy, cx, window.core)))
    return Detections.concatenate(parts)


def paste(detections: Detections, shape: tuple[int, int]) -> list[SoftInstance]:
    """Each detection's mask resized into its box, as probabilities, cut to the image of `shape`."""
    height, width = shape
    instances = []
    for box, score, mask in zip(detections.boxes, detections.scores, detections.masks):
        x0, y0, x1, y1 = int(np.floor(box[0])), int(np.floor(box[1])), int(np.ceil(box[2])), int(np.ceil(box[3]))
        top, left, bottom, right = max(y0, 0), max(x0, 0), min(y1, height), min(x1, width)
        if bottom > top and right > left:
            pasted = cv2.resize(mask, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
            instances.append(SoftInstance(float(score), top, left, pasted[top - y0 : bottom - y0, left - x0 : right - x0]))
    return instances


def paint_instances(instances: list[SoftInstance], shape: tuple[int, int], mask_threshold: float) -> np.ndarray:
    """Label image of soft instances; higher scores are painted last, so they win overlaps."""
    labels = np.zeros(shape, dtype=np.int32)
    for label, instance in enumerate(sorted(instances, key=lambda i: i.score), start=1):
        labels[instance.window][instance.mask > mask_threshold] = label
    return relabel(labels)


def paint(detections: Detections, shape: tuple[int, int], mask_threshold: float = 0.5) -> np.ndarray:
    """Label image from detections; higher scores are painted last, so they win overlaps."""
    return paint_instances(paste(detections, shape), shape, mask_threshold)


def dilate_labels(labels: np.ndarray, radius: int) -> np.ndarray:
    """Grow every object by `radius` pixels into background only (objects never overwrite each other)."""
    if radius <= 0:
        return labels
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    grown = cv2.dilate(labels.astype(np.float32), kernel).astype(np.int32)  # max label nearby
    return np.where(labels == 0, grown, labels)


def detections_of_views(model: nn.Module, rgb8: np.ndarray, cfg: DetectConfig, views: tuple[str, ...] = ()) -> list[Detections]:
    """Detections of the image and of its `views` (workflow.core.views; put back on the image), down to
    `cfg.view_score_floor` then, since a view's weak detections can still add to a vote.
    """
    floor = min(cfg.view_score_floor, cfg.score_threshold) if views else cfg.score_threshold
    configure(model, replace(cfg, score_threshold=floor))
    return [detect(model, rgb8, cfg)] + [detect(model, view_image(rgb8, view), cfg).mirrored(rgb8.shape[:2], view) for view in views]


def segment(model: nn.Module, rgb8: np.ndarray, cfg: DetectConfig, views: tuple[str, ...] = ()) -> np.ndarray:
    """Label image of an (H, W, 3) uint8 image that is already at the model's nucleus scale.

    With `views` the detections of the image and its views vote (test-time augmentation); otherwise the plain detections count.
    """
    height, width = rgb8.shape[:2]
    pad_y, pad_x = round(cfg.pad_fraction * height), round(cfg.pad_fraction * width)
    padded = np.pad(rgb8, ((pad_y, pad_y), (pad_x, pad_x), (0, 0)), mode="reflect") if pad_y or pad_x else rgb8
    found = [paste(view, padded.shape[:2]) for view in detections_of_views(model, padded, cfg, views)]
    instances = vote(found, cfg.score_threshold) if views else found[0]
    labels = paint_instances(instances, padded.shape[:2], cfg.mask_threshold)[pad_y : pad_y + height, pad_x : pad_x + width]
    return relabel(dilate_labels(labels, cfg.dilate))
