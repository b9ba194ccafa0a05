"""Optional detectron2 presegmenter, wrapped to behave like the torchvision model.

Used only when detectron2 is importable. A detectron2 model folder holds `model.json`
(`"backend": "detectron2"`, `"config_file"`, `"weights_file"`, `"target_diameter"`) beside
the detectron2 config YAML and checkpoint it names.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class _Thresholds:
    """Maps the torchvision names set by `predict.configure` onto detectron2's box predictor."""

    def __init__(self, predictor):
        object.__setattr__(self, "_predictor", predictor)

    _names = {"score_thresh": "test_score_thresh", "nms_thresh": "test_nms_thresh", "detections_per_img": "test_topk_per_image"}

    def __setattr__(self, name, value):
        setattr(self._predictor, self._names[name], value)

    def __getattr__(self, name):
        return getattr(self._predictor, self._names[name])


class Detectron2Presegmenter(nn.Module):
    """forward(list of (3, H, W) RGB tensors in [0, 1]) -> torchvision-style dicts with 28 x 28 masks."""

    mask_frame_offset = 0.0  # detectron2 samples mask targets on the box itself (ROIAlign aligned=True)

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.roi_heads = _Thresholds(model.roi_heads.box_predictor)

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        inputs = [{"image": (img.flip(0) * 255).to(img.device), "height": img.shape[1], "width": img.shape[2]} for img in images]
        results = self.model.inference(inputs, do_postprocess=False)  # instances at input size, masks unpasted
        return [
            {"boxes": r.pred_boxes.tensor, "scores": r.scores, "masks": r.pred_masks if r.has("pred_masks") else torch.zeros(0, 1, 28, 28)} for r in results
        ]


def load_detectron2_model(folder: Path, card: dict, device: str) -> nn.Module:
    """Build the detectron2 network described by the folder and load its weights."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(str(folder / card["config_file"]))
    cfg.MODEL.DEVICE = device
    model = build_model(cfg)
    DetectionCheckpointer(model).load(str(folder / card["weights_file"]))
    return Detectron2Presegmenter(model.eval()).eval()
