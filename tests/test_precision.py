"""Compute precision: bfloat16 parts only where asked (or native), float32 outputs, the same nuclei as float32,
and networks that train and save in it as they are."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from tests.conftest import DATA
from workflow.config import load_config
from workflow.core import precision
from workflow.core.files import InputError
from workflow.core.images import read_image, to_rgb8
from workflow.core.metrics import score_image
from workflow.core.precision import compute_in, dtype_name, precision_dtype, reduce_precision
from workflow.predict import build_segmenter

CPU = torch.device("cpu")
HE_IMAGE = "65c8527c16a016191118e8adc3d307fe3a73d37cbe05597a95aebd75daf8d051"


class TwoOutputs(nn.Module):
    """A convolution whose outputs come as a dict and a tuple, like a detector's parts."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.out_channels = 4

    def forward(self, x):
        y = self.conv(x)
        return OrderedDict(a=y), (y.sum(), torch.tensor([1, 2]))


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bfloat16_only_where_the_processor_computes_it(monkeypatch, native):
    monkeypatch.setattr(precision, "native_bfloat16", lambda device: native)
    assert precision_dtype("auto", CPU) == (torch.bfloat16 if native else torch.float32)
    assert precision_dtype("float32", CPU) == torch.float32
    assert precision_dtype("bfloat16", CPU) == torch.bfloat16
    assert [dtype_name(precision_dtype(p, CPU)) for p in ("float32", "bfloat16")] == ["float32", "bfloat16"]
    with pytest.raises(ValueError, match="half"):
        precision_dtype("half", CPU)


def test_an_unknown_precision_setting_is_a_one_line_error():
    with pytest.raises(InputError, match="precision.*auto, float32, bfloat16"):
        load_config(overrides=["precision=half"])


def test_reduced_parts_return_float32_close_to_float32_and_keep_the_module_as_it_is():
    torch.manual_seed(0)
    plain = TwoOutputs().eval()
    x = torch.rand(1, 3, 16, 16)
    (expected, _), keys = plain(x), list(plain.state_dict())
    reduced = compute_in(plain, torch.bfloat16)
    (features, (total, ints)) = reduced(x)
    assert reduced is plain and list(reduced.state_dict()) == keys and reduced.out_channels == 4
    assert isinstance(features, OrderedDict) and features["a"].dtype == torch.float32 and total.dtype == torch.float32
    assert ints.dtype == torch.int64  # integer outputs are left alone
    assert torch.allclose(features["a"], expected["a"], atol=0.05) and not torch.equal(features["a"], expected["a"])
    assert not torch.is_autocast_enabled("cpu")  # left after the forward


def test_the_autocast_is_left_when_a_forward_raises():
    reduced = compute_in(nn.Conv2d(3, 3, 1), torch.bfloat16)
    with pytest.raises(RuntimeError):
        reduced(torch.rand(1, 5, 4, 4))  # wrong channel count
    assert not torch.is_autocast_enabled("cpu")
    assert reduced(torch.rand(1, 3, 4, 4)).dtype == torch.float32


def test_reduce_precision_marks_the_named_parts_once_and_leaves_float32_models_alone():
    model = nn.Sequential(OrderedDict(head=nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 3, 1))), tail=nn.ReLU()))
    assert reduce_precision(model, ["head.conv"], torch.float32) is model and not model.head.conv._forward_hooks
    reduced = reduce_precision(model, ["head.conv"], torch.bfloat16)
    assert reduced is model and model.head.conv.compute_dtype == torch.bfloat16 and not model.tail._forward_hooks
    reduce_precision(model, ["head.conv"], torch.bfloat16)  # a second call adds no second autocast
    assert len(model.head.conv._forward_hooks) == 1
    assert model(torch.rand(1, 3, 4, 4)).dtype == torch.float32


def test_a_network_trains_in_bfloat16_and_saves_as_in_float32(tmp_path):
    """Training under the setting: the U-Net computes in bfloat16, its saved weights load into a plain network."""
    from tests.synthetic import disks, nucleus_image
    from unet_ensemble.config import UNetArchitecture, UNetTrainConfig
    from unet_ensemble.model import build_unet
    from unet_ensemble.storage import load_member
    from unet_ensemble.train import train_member

    arch = UNetArchitecture(encoder="resnet18", depth=3, decoder_channels=(32, 16, 8))
    labels = disks((96, 96), ((30, 30), (60, 70)), 10)
    pairs = [(to_rgb8(nucleus_image(labels, seed=s)), labels) for s in range(3)]
    cfg = UNetTrainConfig(iterations=2, batch_size=2, crop_size=64, val_every=2, warmup_iterations=1, log_every=1)
    best = train_member(pairs[:2], pairs[2:], arch, cfg, 0.5, 1, tmp_path / "m", {"target_diameter": 20}, dtype=torch.bfloat16)
    model, card = load_member(tmp_path / "m" / "model")
    assert 0 <= best["foreground_iou"] <= 1 and card["training"]["precision"] == "bfloat16"
    assert list(model.state_dict()) == list(build_unet(arch).state_dict()) and not model._forward_hooks


@pytest.mark.slow
def test_the_shipped_full_path_finds_the_same_nuclei_in_bfloat16():
    image = to_rgb8(read_image(DATA / "images" / f"{HE_IMAGE}.png"))
    labels = {p: build_segmenter("full", load_config(overrides=["device=cpu", f"precision={p}"]))(image).labels for p in ("float32", "bfloat16")}
    agreement = score_image(labels["float32"], labels["bfloat16"])
    assert agreement.n_true > 10 and agreement.f1 > 0.9
