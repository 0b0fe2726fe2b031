"""torch_to_keras of modules whose forward does more than apply children in order.

Their forward is captured with torch.export; expected values come from the module itself,
``module(x)``, run by torch.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import (  # noqa: E402
    UnsupportedFeatureError,
    compare,
    keras_to_torch,
    to_onnx,
    torch_to_keras,
)
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402

from .every_framework import assert_agrees_everywhere  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn = torch.nn


class LanguageIdentifier(nn.Module):
    """Token ids to language scores: the mean (or sum) of a BiLSTM's outputs over time."""

    def __init__(self, pool: str = "mean") -> None:
        super().__init__()
        torch.manual_seed(1)
        self.emb = nn.Embedding(40, 6)
        self.lstm = nn.LSTM(6, 8, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(16, 5)
        self.pool = pool

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.emb(ids))
        pooled = torch.mean(out, dim=1) if self.pool == "mean" else out.sum(1)
        return self.fc(pooled)


class CRNN(nn.Module):
    """Conv2d, BatchNorm2d, MaxPool2d over (B, 1, H, W); the width becomes time."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.cnn = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d((7, 2))
        )
        with torch.no_grad():  # statistics of a trained network, not the defaults
            self.cnn[1].running_mean.uniform_(-0.5, 0.5)
            self.cnn[1].running_var.uniform_(0.5, 2.0)
        self.rnn = nn.LSTM(4, 5, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(10, 6)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.cnn(images).squeeze(2).permute(0, 2, 1)
        return self.fc(self.rnn(features)[0])


class Tagger(nn.Module):
    """docs/porting.md section 5: torch.relu between the LSTM and the Linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.lstm = nn.LSTM(4, 8, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.lstm(x)[0]))


class Residual(nn.Module):
    """A residual add around a GRU, then the two joined along the features."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.gru = nn.GRU(4, 4, batch_first=True)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.gru(x)[0] + x
        return torch.cat([self.fc(y), y * 0.5 - 1.0], dim=-1)


class LastStep(nn.Module):
    """The last step of an LSTM's outputs, ``out[:, -1]``, as most classifiers read it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.lstm = nn.LSTM(3, 6, num_layers=2, batch_first=True)
        self.head = nn.Sequential(nn.Linear(6, 4), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lstm(x)[0]
        return self.head(out[:, -1]) / 2 + out[:, 1:, :4].amax(dim=1)


def _input(module: nn.Module, batch: int, steps: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    if isinstance(module, LanguageIdentifier):
        return rng.integers(1, 40, (batch, steps))
    if isinstance(module, CRNN):
        return rng.standard_normal((batch, 1, 7, steps)).astype("float32")
    return rng.standard_normal((batch, steps, 4 if not isinstance(module, LastStep) else 3)).astype(
        "float32"
    )


MODULES = [
    pytest.param(LanguageIdentifier, id="language-identifier-mean"),
    pytest.param(lambda: LanguageIdentifier("sum"), id="language-identifier-sum"),
    pytest.param(CRNN, id="crnn"),
    pytest.param(Tagger, id="tagger-relu"),
    pytest.param(Residual, id="residual"),
    pytest.param(LastStep, id="last-step"),
]


@pytest.mark.parametrize("make", MODULES)
def test_the_keras_port_matches_the_module(make) -> None:
    module = make().eval()
    model = torch_to_keras(module)  # verified against module(x) at 3 rows of 7 steps
    x = _input(module, batch=4, steps=11)  # and at another batch and length here
    with torch.no_grad():
        expected = module(torch.as_tensor(x)).numpy()
    actual = np.asarray(model(x.astype("int32") if x.dtype.kind == "i" else x, training=False))
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=2e-5)


@pytest.mark.parametrize("make", MODULES)
def test_compare_passes_on_every_framework(make) -> None:
    module = make().eval()
    assert_agrees_everywhere(module, steps=8)


def test_the_onnx_export_matches_the_module() -> None:
    module = LastStep().eval()
    graph = to_onnx(module)
    import onnxruntime

    x = _input(module, batch=2, steps=9)
    session = onnxruntime.InferenceSession(graph.SerializeToString())
    (actual,) = session.run(None, {session.get_inputs()[0].name: x})
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(actual, expected, rtol=0, atol=2e-5)


def test_the_graph_reads_operations_as_layers() -> None:
    graph = graph_from_torch(CRNN().eval())
    kinds = [(record.name, record.kind) for record in graph.layers]
    assert kinds == [
        ("input", "input"),
        ("cnn_0", "conv"),
        ("cnn_1", "batch_norm"),
        ("cnn_2", "activation"),
        ("cnn_3", "pool"),
        ("squeeze", "reshape"),
        ("permute", "permute"),
        ("rnn", "recurrent"),
        ("fc", "dense"),
    ]
    # The image height is fixed by the convolutions; the width is time.
    assert graph.layer("input").options["shape"] == (1, 7, None)


class Attention(nn.Module):
    """An operation no layer record computes: a cumulative sum of attention scores."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lstm(x)[0]
        scores = out @ out.transpose(1, 2)
        return torch.cumsum(scores, 1).sum(1)


def test_unsupported_operations_are_listed_with_their_lines() -> None:
    with pytest.raises(UnsupportedFeatureError) as caught:
        torch_to_keras(Attention(), verify=False)
    message = str(caught.value)
    assert "Attention.forward cannot be read as Keras layers" in message
    assert "aten.matmul" not in message  # a batched matrix product is read
    assert "applies aten.cumsum at test_torch_capture.py:" in message
    assert "torch.cumsum(scores, 1).sum(1)" in message


class FinalState(nn.Module):
    """A final state, and a permute that puts the batch axis third (time-major tensors,
    with the batch axis second, are read: see test_capture_time_major)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 4, batch_first=True)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.lstm(x)[1][0][-1]) + self.fc(x[:, None].permute(1, 2, 0, 3)[0, -1])


def test_the_batch_axis_is_refused_by_name_and_a_final_state_is_read() -> None:
    with pytest.raises(UnsupportedFeatureError) as caught:
        torch_to_keras(FinalState(), verify=False)
    message = str(caught.value)
    assert "final states" not in message  # h_n[-1]: the layer's return_state output
    assert "aten.permute moves the batch axis" in message


class LogitsAndFeatures(nn.Module):
    """Several values returned, nested: the logits, then (the pooled features, the sequence)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.gru = nn.GRU(4, 6, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        out = self.gru(x)[0]
        features = out.mean(1)
        return self.fc(features), (features, out)


def _flat(result) -> list[np.ndarray]:
    if isinstance(result, torch.Tensor):
        return [result.numpy()]
    return [array for item in result for array in _flat(item)]


def test_each_returned_value_is_an_output_of_the_keras_port(tmp_path: Path) -> None:
    module = LogitsAndFeatures().eval()
    model = torch_to_keras(module)  # verified against module(x), output by output
    x = _input(module, batch=3, steps=10)
    with torch.no_grad():
        expected = _flat(module(torch.as_tensor(x)))
    actual = model(x, training=False)
    assert [tuple(a.shape) for a in actual] == [(3, 3), (3, 12), (3, 10, 12)]
    for got, want in zip(actual, expected, strict=True):
        np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=2e-5)
    graph = graph_from_torch(module)
    assert graph.outputs[0] == "fc" and graph.outputs[2] == "gru"
    # and back: the saved Keras model ports to torch, which returns all three
    path = tmp_path / "several.keras"
    model.save(path)
    with torch.no_grad():
        ported = _flat(keras_to_torch(path)(torch.as_tensor(x)))
    for got, want in zip(ported, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)


def test_compare_passes_on_every_returned_value() -> None:
    report = compare(
        LogitsAndFeatures().eval(), frameworks=["torch", "keras", "onnxruntime"], steps=8
    )
    assert report, report.lines()
    assert any("output 'fc'" in line or "output 'gru'" in line for line in report.lines())


def test_the_onnx_export_returns_every_value() -> None:
    module = LogitsAndFeatures().eval()
    proto = to_onnx(module)
    import onnxruntime

    x = _input(module, batch=2, steps=9)
    session = onnxruntime.InferenceSession(proto.SerializeToString())
    actual = session.run(None, {session.get_inputs()[0].name: x})
    with torch.no_grad():
        expected = _flat(module(torch.from_numpy(x)))
    assert len(actual) == 3
    for got, want in zip(actual, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)


class SameTwice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = torch.relu(self.fc(x))
        return y, y, self.fc.weight


def test_a_tensor_returned_twice_or_not_computed_from_the_input_is_refused() -> None:
    with pytest.raises(UnsupportedFeatureError) as caught:
        torch_to_keras(SameTwice(), verify=False)
    message = str(caught.value)
    assert "returns 'relu' again as result 1" in message
    assert (
        "returns a tensor its input does not reach (a parameter or buffer) as result 2" in message
    )


class FollowsLength(nn.Module):
    """An LSTM's outputs, then ``body`` of them, whose positions follow their length."""

    def __init__(self, body) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.lstm = nn.LSTM(3, 4, batch_first=True)
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.lstm(x)[0])


@pytest.mark.parametrize(
    ("body", "op"),
    [
        (lambda h: h[:, : h.size(1) // 2].mean(1), "aten.slice"),
        (lambda h: torch.nn.functional.pad(h, (0, 0, 0, 20 - h.size(1))).flatten(1), "pad"),
        (lambda h: h[:, h.size(1) // 2], "aten.select"),
    ],
    ids=["first-half", "padded-to-20", "middle-step"],
)
def test_positions_that_follow_the_length_are_refused_not_frozen(body, op: str) -> None:
    """Read from one capture, the port kept these positions at every length: a silent
    difference at any other length, which the check at the capture's length missed."""
    with pytest.raises(UnsupportedFeatureError, match=rf"{op}\w* at positions that follow"):
        torch_to_keras(FollowsLength(body).eval())


@pytest.mark.parametrize(
    "body",
    [
        lambda h: h.sum(1) / h.shape[1],  # a mean written by hand
        lambda h: h * (h.size(1) ** -0.5),
        lambda h: h.std(1) * (h.size(1) / (h.size(1) - 1)) ** 0.5,
    ],
    ids=["mean-by-hand", "scaled-by-length", "std-corrected"],
)
def test_numbers_computed_from_the_length_are_refused_not_frozen(body) -> None:
    """A number computed from the sizes is one number in each capture: read from one, the
    port kept it at every length (compare() then failed, naming no cause)."""
    with pytest.raises(UnsupportedFeatureError, match=r"with a number computed from the input"):
        compare(FollowsLength(body).eval(), frameworks=["torch"])


@pytest.mark.parametrize(
    "body",
    [
        lambda h: h[:, : h.size(1) - 2] + h[:, 2:],
        lambda h: h[:, h.size(1) - 2],
        lambda h: h[:, h.size(1) - 3 : h.size(1)].mean(1),
    ],
    ids=["difference-of-steps", "second-last-step", "last-three-steps"],
)
def test_positions_the_length_less_a_number_are_counted_from_the_end(body) -> None:
    _assert_port_matches(FollowsLength(body).eval(), features=3)


def _assert_port_matches(module: nn.Module, features: int) -> None:
    """``torch_to_keras(module)`` matches ``module(x)`` at 15 steps, a length no capture or
    check ran at."""
    model = torch_to_keras(module)
    x = np.random.default_rng(4).standard_normal((2, 15, features)).astype("float32")
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=0, atol=1e-5)


class WeightNormed(nn.Module):
    """A vocoder-style front end: a weight-normed convolution (``g * v / ||v||``, as
    HiFi-GAN and MelGAN write them) before an LSTM, and a weight-normed Linear."""

    def __init__(self, weight_norm) -> None:
        super().__init__()
        torch.manual_seed(6)
        self.conv = weight_norm(nn.Conv1d(8, 8, 3, padding=1))
        self.lstm = nn.LSTM(8, 6, batch_first=True)
        self.fc = weight_norm(nn.Linear(6, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.leaky_relu(self.conv(x.transpose(1, 2)), 0.2).transpose(1, 2)
        return self.fc(self.lstm(h)[0])


@pytest.mark.filterwarnings("error:The tensor attribute")  # nothing of torch.export's leaks
@pytest.mark.parametrize(
    "weight_norm",
    [torch.nn.utils.parametrizations.weight_norm, torch.nn.utils.weight_norm],
    ids=["parametrizations", "deprecated-hook"],
)
def test_weight_normed_modules_port_with_their_computed_weights(weight_norm) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the hook's own deprecation
        module = WeightNormed(weight_norm).eval()
    _assert_port_matches(module, features=8)


class TextRecognizer(nn.Module):
    """deep-text-recognition-benchmark's feature path: convolution features (B, C, H, W)
    permuted to (B, W, C, H), the height averaged away by ``AdaptiveAvgPool2d((None, 1))``
    and squeezed, beside the height's maximum of the first channel by
    ``AdaptiveMaxPool2d((1, None))`` on (B, W, H, C), then a BiLSTM over the columns."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d((None, 1))
        self.peak = nn.AdaptiveMaxPool2d((1, None))
        self.lstm = nn.LSTM(9, 6, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        columns = torch.relu(self.conv(x)).permute(0, 3, 1, 2)  # (B, W, C, H)
        average = self.pool(columns).squeeze(3)  # (B, W, C)
        peak = self.peak(columns.transpose(2, 3)).squeeze(2)[..., :1]  # (B, W, 1)
        return self.fc(self.lstm(torch.cat([average, peak], -1))[0])


def test_adaptive_pools_keeping_an_axis_are_reductions() -> None:
    module = TextRecognizer().eval()
    graph = graph_from_torch(module, input_shape=(1, 8, None))
    assert [r.options for r in graph.layers if r.kind == "reduce"] == [
        {"op": "mean", "axes": (3,), "keepdims": True},
        {"op": "max", "axes": (2,), "keepdims": True},
    ]
    x = np.random.default_rng(7).standard_normal((2, 1, 8, 19)).astype("float32")
    assert_agrees_everywhere(module, inputs=x)
