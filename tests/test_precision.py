"""Inference precision: bfloat16 parts only where asked (or native), float32 outputs, the same nuclei as float32."""

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
from workflow.core.precision import ReducedPrecision, dtype_name, inference_dtype, reduce_precision
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
    assert inference_dtype("auto", CPU) == (torch.bfloat16 if native else torch.float32)
    assert inference_dtype("float32", CPU) == torch.float32
    assert inference_dtype("bfloat16", CPU) == torch.bfloat16
    assert [dtype_name(inference_dtype(p, CPU)) for p in ("float32", "bfloat16")] == ["float32", "bfloat16"]
    with pytest.raises(ValueError, match="half"):
        inference_dtype("half", CPU)


def test_an_unknown_precision_setting_is_a_one_line_error():
    with pytest.raises(InputError, match="precision.*auto, float32, bfloat16"):
        load_config(overrides=["precision=half"])


def test_reduced_parts_return_float32_close_to_float32_and_read_through_attributes():
    torch.manual_seed(0)
    plain = TwoOutputs().eval()
    x = torch.rand(1, 3, 16, 16)
    wrapped = ReducedPrecision(plain, torch.bfloat16)
    (features, (total, ints)), (expected, _) = wrapped(x), plain(x)
    assert isinstance(features, OrderedDict) and features["a"].dtype == torch.float32 and total.dtype == torch.float32
    assert ints.dtype == torch.int64  # integer outputs are left alone
    assert torch.allclose(features["a"], expected["a"], atol=0.05) and not torch.equal(features["a"], expected["a"])
    assert wrapped.out_channels == 4


def test_reduce_precision_wraps_the_named_parts_and_leaves_float32_models_alone():
    model = nn.Sequential(OrderedDict(head=nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 3, 1))), tail=nn.ReLU()))
    assert reduce_precision(model, ["head.conv"], torch.float32) is model and isinstance(model.head.conv, nn.Conv2d)
    reduced = reduce_precision(model, ["head.conv"], torch.bfloat16)
    assert reduced is model and isinstance(model.head.conv, ReducedPrecision) and isinstance(model.tail, nn.ReLU)
    assert model(torch.rand(1, 3, 4, 4)).dtype == torch.float32
    assert isinstance(reduce_precision(nn.Conv2d(3, 3, 1), [""], torch.bfloat16), ReducedPrecision)


@pytest.mark.slow
def test_the_shipped_full_path_finds_the_same_nuclei_in_bfloat16():
    image = to_rgb8(read_image(DATA / "images" / f"{HE_IMAGE}.png"))
    labels = {p: build_segmenter("full", load_config(overrides=["device=cpu", f"precision={p}"]))(image).labels for p in ("float32", "bfloat16")}
    agreement = score_image(labels["float32"], labels["bfloat16"])
    assert agreement.n_true > 10 and agreement.f1 > 0.9
