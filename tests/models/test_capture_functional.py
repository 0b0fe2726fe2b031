"""Functional calls in a forward (``F.max_pool1d``, ``F.adaptive_avg_pool1d``,
``F.layer_norm`` on tensors the module holds) read as the modules they stand for. Expected
values come from the module itself, ``module(x)``, run by torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError, torch_to_keras  # noqa: E402
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402

from .every_framework import assert_agrees_everywhere  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn = torch.nn
F = torch.nn.functional


class FunctionalFrontEnd(nn.Module):
    """A GRU, its outputs pooled over time by functions, a convolution, a layer norm by
    function, then max and mean over time by adaptive pooling functions."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(51)
        self.gru = nn.GRU(4, 6, batch_first=True)
        self.conv = nn.Conv1d(6, 5, 3, padding=1)
        self.gamma, self.beta = nn.Parameter(torch.rand(5) + 0.5), nn.Parameter(torch.randn(5))
        self.fc = nn.Linear(10, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.gru(x)[0].transpose(1, 2)  # (batch, channels, time)
        y = F.avg_pool1d(F.max_pool1d(h, 2), 3, stride=1, padding=1, count_include_pad=False)
        y = F.relu(self.conv(y)).transpose(1, 2)
        y = F.layer_norm(y, (5,), self.gamma, self.beta, eps=1e-3).transpose(1, 2)
        pooled = [F.adaptive_avg_pool1d(y, 1), F.adaptive_max_pool1d(y, 1)]
        return self.fc(torch.cat(pooled, dim=1).squeeze(-1))


def _frames(batch: int, steps: int) -> np.ndarray:
    return np.random.default_rng(9).standard_normal((batch, steps, 4)).astype("float32")


def test_the_keras_port_matches_the_module() -> None:
    module = FunctionalFrontEnd().eval()
    model = torch_to_keras(module)  # verified against module(x) at 3 rows of 7 steps
    x = _frames(4, 12)  # and at another batch and length here
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=1e-6, atol=2e-6)


def test_compare_passes_on_every_framework() -> None:
    # 12 steps, pooled to 6: Keras on TensorFlow adds a channels-first convolution's bias on
    # the wrong axis when its output is as long as its filters (5) (docs/porting.md)
    assert_agrees_everywhere(FunctionalFrontEnd().eval(), inputs=_frames(3, 12))


def test_each_call_reads_as_its_module() -> None:
    graph = graph_from_torch(FunctionalFrontEnd().eval())
    kinds = [(r.kind, r.class_name) for r in graph.layers]
    assert [k for k in kinds if k[0] in ("pool", "global_pool", "layer_norm")] == [
        ("pool", "MaxPool1d"),
        ("pool", "AvgPool1d"),
        ("layer_norm", "LayerNorm"),
        ("global_pool", "AdaptiveAvgPool1d"),
        ("global_pool", "AdaptiveMaxPool1d"),
    ]
    norm = graph.layer(next(r.name for r in graph.layers if r.kind == "layer_norm"))
    assert norm.options["epsilon"] == pytest.approx(1e-3)


class Refused(nn.Module):
    def __init__(self, body) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 6, batch_first=True)
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.lstm(x)[0].transpose(1, 2))


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (lambda h: F.max_pool1d(h, 2, ceil_mode=True), r"ceil_mode"),
        (lambda h: F.layer_norm(h, (7,), h[0, 0, :7] * 0 + 1), r"weight computed in forward"),
    ],
    ids=["ceil-mode", "computed-weight"],
)
def test_what_the_module_would_refuse_is_refused_with_its_line(body, says) -> None:
    with pytest.raises(UnsupportedFeatureError, match=says) as caught:
        torch_to_keras(Refused(body).eval())
    assert "test_capture_functional.py" in str(caught.value)


class GroupedFrontEnd(nn.Module):
    """A convolution, ``F.group_norm`` with a held scale only, ``F.instance_norm`` with and
    without held running statistics, then a GRU over the steps."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(52)
        self.conv = nn.Conv1d(4, 6, 3, padding=1)
        self.scale = nn.Parameter(torch.rand(6) + 0.5)
        self.register_buffer("mean", torch.randn(6))
        self.register_buffer("variance", torch.rand(6) + 0.5)
        self.gru = nn.GRU(6, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.group_norm(self.conv(x.transpose(1, 2)), 3, self.scale, eps=1e-3)
        y = F.instance_norm(F.instance_norm(y), self.mean, self.variance, use_input_stats=False)
        return self.gru(y.transpose(1, 2))[0]


def test_group_and_instance_norm_read_as_their_modules() -> None:
    module = GroupedFrontEnd().eval()
    graph = graph_from_torch(module)
    kinds = [(r.kind, r.class_name) for r in graph.layers if r.kind.endswith("_norm")]
    assert kinds == [
        ("group_norm", "GroupNorm"),
        ("group_norm", "InstanceNorm1d"),
        ("batch_norm", "InstanceNorm1d"),  # the running statistics: BatchNorm's computation
    ]
    grouped = graph.layer(next(r.name for r in graph.layers if r.kind == "group_norm"))
    assert grouped.options == {"axis": 1, "groups": 3, "epsilon": pytest.approx(1e-3)}
    np.testing.assert_array_equal(grouped.weights["beta"], np.zeros(6, "float32"))
    assert_agrees_everywhere(module, inputs=_frames(3, 9))


class FunctionalConvolutions(nn.Module):
    """``F.conv1d`` (strided, padded), ``F.batch_norm`` and ``F.conv_transpose1d`` on
    tensors the module holds, around a GRU: an encoder and decoder written with functions."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(53)
        self.encode = nn.Parameter(torch.randn(6, 4, 3) * 0.3)
        self.bias = nn.Parameter(torch.randn(6))
        self.decode = nn.Parameter(torch.randn(5, 2, 4) * 0.3)  # (in, out, kernel)
        self.register_buffer("mean", torch.randn(6))
        self.register_buffer("variance", torch.rand(6) + 0.5)
        self.gru = nn.GRU(6, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv1d(x.transpose(1, 2), self.encode, self.bias, stride=2, padding=2)
        y = F.batch_norm(y, self.mean, self.variance, bias=self.bias, eps=1e-3)
        h = self.gru(F.relu(y).transpose(1, 2))[0].transpose(1, 2)
        return F.conv_transpose1d(h, self.decode, stride=2)


def test_functional_convolutions_read_as_their_modules() -> None:
    module = FunctionalConvolutions().eval()
    graph = graph_from_torch(module, input_shape=(None, 4))  # not the GRU's 6 features
    read = [r for r in graph.layers if r.kind in ("conv", "batch_norm", "conv_transpose")]
    assert [(r.kind, r.class_name) for r in read] == [
        ("conv", "Conv1d"),
        ("batch_norm", "BatchNorm1d"),
        ("conv_transpose", "ConvTranspose1d"),
    ]
    norm = graph.layer(read[1].name)
    assert norm.options["epsilon"] == pytest.approx(1e-3)
    assert_agrees_everywhere(module, inputs=_frames(3, 13))


class GroupedTranspose(nn.Module):
    """``F.conv_transpose1d`` of two groups on a held weight: (in, out / groups, kernel)."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 4, batch_first=True)
        self.weight = nn.Parameter(torch.randn(4, 3, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.gru(x)[0].transpose(1, 2)
        return F.conv_transpose1d(h, self.weight, stride=2, groups=2)


def test_a_grouped_transposed_convolution_is_refused_by_name() -> None:
    with pytest.raises(UnsupportedFeatureError, match=r"ConvTranspose1d.*groups=2"):
        graph_from_torch(GroupedTranspose().eval())
