"""nn.Conv1d/nn.Conv2d children of a torch module, converted to Keras and checked against it."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from torch import nn  # noqa: E402

from xframe_bilstm import torch_to_keras  # noqa: E402
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

# Output lengths differ from filter counts: Keras 3 on TensorFlow adds a channels-first
# bias along the last axis when both are equal (see tests/models/test_port_convolution.py).
MODULES = {
    "same": lambda: nn.Sequential(
        nn.Conv1d(4, 6, 3), nn.ReLU(), nn.Conv1d(6, 3, 3, padding="same")
    ),
    "explicit": lambda: nn.Sequential(
        nn.Conv1d(4, 8, 3, stride=2, padding=2, groups=2), nn.Tanh(), nn.Conv1d(8, 4, 2, dilation=2)
    ),
    "conv2d": lambda: nn.Sequential(
        nn.Conv2d(3, 5, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(5, 2, (2, 3), padding="same", dilation=(2, 1), bias=False),
    ),
}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_torch_to_keras_matches_the_module(name: str) -> None:
    torch.manual_seed(0)
    module = MODULES[name]()
    model = torch_to_keras(module)  # checked against module(x) on 7 steps
    shape = (2, module[0].in_channels, *[11] * (2 if name == "conv2d" else 1))
    x = np.random.default_rng(1).standard_normal(shape).astype("float32")
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=0, atol=2e-5)


def test_records_keep_torchs_layout_and_padding() -> None:
    module = nn.Sequential(nn.Conv1d(2, 3, 3, padding=1), nn.Conv1d(3, 3, 3, stride=2, padding=1))
    records = graph_from_torch(module).layers
    assert [(r.kind, r.class_name) for r in records[1:]] == [
        ("conv", "Conv1d"),
        ("zero_padding", "ZeroPadding1D"),
        ("conv", "Conv1d"),
    ]
    assert records[1].options["padding"] == "same"  # stride 1: the same zeros as Keras's
    assert records[2].options["padding"] == ((1, 1),)
    assert {r.options["data_format"] for r in records[1:]} == {"channels_first"}
    kernel = records[1].weights["kernel"]
    assert kernel.shape == (3, 2, 3)  # Keras's (k, in, out)
    assert np.array_equal(kernel[:, 1, 2], module[0].weight.detach().numpy()[2, 1, :])


def test_padding_modes_other_than_zeros_are_refused_by_name() -> None:
    module = nn.Sequential(nn.Conv1d(2, 2, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(UnsupportedFeatureError, match="padding_mode='reflect'"):
        graph_from_torch(module)


def test_stride_with_dilation_is_refused_for_keras() -> None:
    module = nn.Sequential(nn.Conv1d(2, 2, 3, stride=2, dilation=2))
    with pytest.raises(UnsupportedFeatureError, match="dilation_rate above 1"):
        torch_to_keras(module)
