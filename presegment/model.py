"""Mask R-CNN presegmenter built by name from a small architecture description.

The architecture is a plain dict (saved in the model folder's `model.json`), so a
saved model can be rebuilt without code changes: adding a backbone is adding an
entry to `BACKBONES`.
"""

from __future__ import annotations

from typing import Callable

from torch import nn
from torchvision.models import mobilenet_v3_large, resnet18, resnet34, resnet50
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from presegment.config import Architecture


def _resnet_body(factory: Callable[..., nn.Module], levels: int) -> tuple[nn.Module, dict[str, str], list[int]]:
    """A ResNet trunk returning `levels` stages (from layer1), with trainable batch norm."""
    trunk = factory(weights=None, norm_layer=nn.BatchNorm2d)
    names = ["layer1", "layer2", "layer3", "layer4"][:levels]
    expansion = trunk.layer1[-1].expansion  # 1 for BasicBlock nets, 4 for Bottleneck nets
    channels = [64 * expansion * 2**i for i in range(levels)]
    return trunk, {name: str(i) for i, name in enumerate(names)}, channels


def _mobilenet_body(levels: int) -> tuple[nn.Module, dict[str, str], list[int]]:
    """MobileNetV3-Large features, returning the last `levels` stride changes."""
    trunk = mobilenet_v3_large(weights=None, norm_layer=nn.BatchNorm2d).features
    stage_ends = [i - 1 for i, block in enumerate(trunk) if getattr(block, "_is_cn", False)] + [len(trunk) - 1]
    chosen = stage_ends[-levels:]
    channels = [trunk[i].out_channels for i in chosen]
    return trunk, {str(i): str(k) for k, i in enumerate(chosen)}, channels


BACKBONES: dict[str, Callable[[], tuple[nn.Module, dict[str, str], list[int]]]] = {
    # name -> (trunk, return layers, channels); three pyramid levels + max-pool suit nuclei of 10-100 px
    "resnet18_fpn": lambda: _resnet_body(resnet18, 3),
    "resnet34_fpn": lambda: _resnet_body(resnet34, 3),
    "resnet50_fpn": lambda: _resnet_body(resnet50, 3),
    "mobilenet_v3_fpn": lambda: _mobilenet_body(3),
}


class FixedScaleTransform(GeneralizedRCNNTransform):
    """Normalise and batch, but never resize: nucflow rescales images by nucleus size itself.

    Masks are also left at the heads' 28 x 28 resolution: pasting hundreds of them into
    full-size tiles costs gigabytes, so `presegment.predict` pastes each into its box.
    """

    def resize(self, image, target=None):  # noqa: D102 - torchvision hook
        return image, target

    def postprocess(self, result, image_shapes, original_image_sizes):  # noqa: D102 - torchvision hook
        return result


def build_model(arch: Architecture) -> MaskRCNN:
    """A 2-class (background, nucleus) Mask R-CNN for `arch`, randomly initialised."""
    if arch.backbone not in BACKBONES:
        raise ValueError(f"unknown presegmenter backbone {arch.backbone!r}; choose one of {', '.join(BACKBONES)}")
    trunk, return_layers, channels = BACKBONES[arch.backbone]()
    backbone = BackboneWithFPN(trunk, return_layers, channels, arch.fpn_channels, extra_blocks=LastLevelMaxPool())
    levels = len(channels) + 1
    if len(arch.anchor_sizes) != levels:
        raise ValueError(f"{arch.backbone} has {levels} pyramid levels; give {levels} anchor sizes, not {len(arch.anchor_sizes)}")
    anchors = AnchorGenerator(tuple((s,) for s in arch.anchor_sizes), (tuple(arch.anchor_ratios),) * levels)
    resolution = 7
    model = MaskRCNN(
        backbone,
        num_classes=None,
        rpn_anchor_generator=anchors,
        box_head=TwoMLPHead(arch.fpn_channels * resolution**2, arch.box_head_width),
        box_predictor=FastRCNNPredictor(arch.box_head_width, 2),
        mask_head=MaskRCNNHeads(arch.fpn_channels, (arch.mask_head_width,) * 4, 1),
        mask_predictor=MaskRCNNPredictor(arch.mask_head_width, arch.mask_head_width, 2),
        rpn_pre_nms_top_n_train=2000,
        rpn_post_nms_top_n_train=1000,
        rpn_pre_nms_top_n_test=2000,
        rpn_post_nms_top_n_test=1500,
        box_detections_per_img=800,
    )
    model.transform = FixedScaleTransform(1, 1, list(arch.image_mean), list(arch.image_std))
    return model


# the torchvision Mask R-CNN's convolutional and fully connected parts: what runs in reduced precision
# (workflow.core.precision); anchors, box decoding, RoIAlign and thresholds stay in float32
REDUCED_PRECISION_PARTS = ("backbone", "rpn.head", "roi_heads.box_head", "roi_heads.box_predictor", "roi_heads.mask_head", "roi_heads.mask_predictor")


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (for model cards)."""
    return sum(p.numel() for p in model.parameters())
