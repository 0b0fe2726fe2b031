"""torch_to_keras of modules with children: their own forward is what the port must match.

Each module below has the children a Keras Sequential can hold; what differs is what its
``forward`` does with them. A forward that is not its children in order is captured with
torch.export and ported as it computes; what no Keras layer computes is refused by name.
Expected values come from the module itself, ``module(x)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import (  # noqa: E402
    ToleranceExceededError,
    UnsupportedFeatureError,
    torch_to_keras,
)

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn = torch.nn


class Tagger(nn.Module):
    """The issue's reproducer: an LSTM and a Linear, with a relu between them in forward."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lstm = nn.LSTM(4, 8, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.lstm(x)[0]))


class LanguageIdentifier(nn.Module):
    """Token ids to 20 language scores per sequence: forward sums over time."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.emb = nn.Embedding(50, 6)
        self.lstm = nn.LSTM(6, 8, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(16, 20)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.lstm(self.emb(ids))[0])).sum(dim=1)


def tagger_in_order(net: Tagger, x: torch.Tensor) -> torch.Tensor:
    """What a port that applies Tagger's children in order computes (no relu)."""
    return net.fc(net.lstm(x)[0])


def test_the_reproducer_differs_from_its_children_in_order() -> None:
    # The premise: reading Tagger as its children in order gives other numbers.
    net = Tagger().eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 7, 4)).astype("float32"))
    with torch.no_grad():
        assert (net(x) - tagger_in_order(net, x)).abs().max() > 0.05


def _matches(net: nn.Module, model, x: np.ndarray) -> None:
    """The Keras model computes what ``net(x)`` computes, at another batch and length."""
    net.eval()
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    actual = np.asarray(model(x.astype("int32") if x.dtype.kind == "i" else x, training=False))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)


def test_a_function_between_children_is_ported_as_forward_applies_it() -> None:
    net = Tagger()
    model = torch_to_keras(net)  # verified against net(x), not the children in order
    assert "relu" in [layer.name for layer in model.layers]
    _matches(net, model, np.random.default_rng(2).standard_normal((4, 10, 4)).astype("float32"))


def test_a_sum_over_time_is_ported() -> None:
    net = LanguageIdentifier().eval()
    ids = np.random.default_rng(1).integers(1, 50, (3, 9))
    with torch.no_grad():
        assert net(torch.from_numpy(ids)).shape == (3, 20)  # one score vector per sequence
    _matches(net, torch_to_keras(net), ids)


def _with_forward(forward: Callable[..., torch.Tensor]) -> nn.Module:
    """A LanguageIdentifier whose class's forward is ``forward``."""
    return type("Variant", (LanguageIdentifier,), {"forward": forward})()


@pytest.mark.parametrize(
    "forward",
    [
        pytest.param(lambda self, ids: self.fc(self.lstm(self.emb(ids))[0]), id="skipped-child"),
        pytest.param(
            lambda self, ids: self.fc(self.drop(self.lstm(self.emb(ids))[0][:, -1])),
            id="last-step",
        ),
        pytest.param(
            lambda self, ids: self.fc(self.lstm(self.drop(self.emb(ids)))[0]), id="out-of-order"
        ),
        pytest.param(
            lambda self, ids, lengths=None: self.fc(self.drop(self.lstm(self.emb(ids))[0])),
            id="second-input-left-to-its-default",
        ),
    ],
)
def test_a_forward_other_than_its_children_in_order_is_ported_as_written(forward) -> None:
    net = _with_forward(forward)
    _matches(net, torch_to_keras(net), np.random.default_rng(5).integers(1, 50, (4, 11)))


@pytest.mark.parametrize(
    ("forward", "named"),
    [
        pytest.param(
            lambda self, ids: self.fc(self.drop(self.lstm(self.emb(ids))[1][0][-1])),
            r"uses the final states of 'lstm'",
            id="final-state",
        ),
        pytest.param(
            lambda self, ids: self.fc(self.drop(self.lstm(self.emb(ids)))),
            r"passes on the \(output, states\) tuple of 'lstm'",
            id="tuple-passed-on",
        ),
        pytest.param(
            lambda self, ids: (self.fc(self.drop(self.lstm(self.emb(ids))[0])), ids),
            r"returns its input as result 1",
            id="two-outputs-one-the-input",
        ),
    ],
)
def test_what_forward_does_besides_its_children_is_named(forward, named: str) -> None:
    with pytest.raises(UnsupportedFeatureError, match=named):
        torch_to_keras(_with_forward(forward), verify=False)


def test_a_forward_set_on_the_instance_is_refused() -> None:
    net = LanguageIdentifier()
    net.forward = lambda ids: net.fc(net.lstm(net.emb(ids))[0])  # type: ignore[method-assign]
    with pytest.raises(UnsupportedFeatureError, match="forward of its own, set on the instance"):
        torch_to_keras(net, verify=False)


def test_a_torchscript_module_is_refused_with_what_to_do(tmp_path) -> None:
    """A scripted or loaded TorchScript module has no Python forward to read; exporting it
    to ONNX and converting the file, as the refusal says, works."""
    pytest.importorskip("onnxruntime")
    from xframe_bilstm import compare, onnx_to_torch

    module = LanguageIdentifier().eval()
    scripted = torch.jit.script(module)
    for call in (torch_to_keras, compare):
        with pytest.raises(UnsupportedFeatureError, match="LanguageIdentifier is a TorchScript"):
            call(scripted)
    with pytest.raises(UnsupportedFeatureError, match="LSTM is a TorchScript module"):
        torch_to_keras(torch.jit.script(nn.LSTM(2, 3)))
    path = tmp_path / "scripted.onnx"
    axes = {"ids": {0: "batch", 1: "time"}}
    example = (torch.tensor([[1, 2, 3]]),)
    torch.onnx.export(scripted, example, path, input_names=["ids"], dynamic_axes=axes, dynamo=False)
    ids = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    converted = onnx_to_torch(path, inputs=[ids])  # verified against onnxruntime on these ids
    with torch.no_grad():
        expected = module(torch.from_numpy(ids)).numpy()
        np.testing.assert_allclose(converted(torch.from_numpy(ids)).numpy(), expected, atol=1e-5)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 4, batch_first=True)
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.fc(self.lstm(x)[0]))


def test_a_child_called_twice_is_ported_as_one_layer_called_twice() -> None:
    net = Residual()
    model = torch_to_keras(net)
    (fc,) = [layer for layer in model.layers if "fc" in layer.name]
    assert len(fc._inbound_nodes) == 2 and len(fc.weights) == 2  # its weights held once
    _matches(net, model, np.random.default_rng(6).standard_normal((2, 5, 4)).astype("float32"))


class ZeroStates(nn.Module):
    """The tutorials' explicit zero initial states, built in ``forward`` from the batch size."""

    def __init__(self, fill=torch.zeros) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.lstm = nn.LSTM(4, 5, num_layers=2, batch_first=True)
        self.gru = nn.GRU(5, 3, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(6, 2)
        self.fill = fill

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = self.fill(2, x.size(0), 5).to(x.device)
        c0 = x.new_zeros(2, x.size(0), 5)
        h, _ = self.lstm(x, (h0, c0))
        h, _ = self.gru(h, torch.full((2, x.size(0), 3), 0.0))
        return self.fc(h)


def test_zero_initial_states_built_in_forward_port_as_none() -> None:
    net = ZeroStates().eval()
    model = torch_to_keras(net)  # verified against net(x)
    _matches(net, model, np.random.default_rng(8).standard_normal((3, 6, 4)).astype("float32"))


def test_zeros_for_some_initial_states_only_are_named() -> None:
    with pytest.raises(
        UnsupportedFeatureError,
        match=r"passes 'lstm' zeros for some of its initial states.*test_torch_forward\.py",
    ):
        torch_to_keras(ZeroStates(fill=torch.ones).eval())


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 5, batch_first=True)
        self.fc = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(self.lstm(x)[0])
        return y if bool(y.sum() > 0) else -y


def test_a_forward_that_cannot_be_read_is_refused_with_what_to_do() -> None:
    with pytest.raises(
        UnsupportedFeatureError,
        match=r"Branchy\.forward could not be read .*nn\.Sequential.*submodule='lstm'",
    ):
        torch_to_keras(Branchy(), verify=False)


class Chain(nn.Module):
    """A forward that is exactly its children in order, unpacking the LSTM's result."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.emb = nn.Embedding(30, 5)
        self.lstm = nn.LSTM(5, 6, batch_first=True, num_layers=2)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(6, 3)
        self.act = nn.Tanh()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        output, (_h, _c) = self.lstm(self.emb(ids))
        return self.act(self.fc(self.drop(output)))


def test_a_forward_that_is_its_children_in_order_converts() -> None:
    net = Chain().train()
    model = torch_to_keras(net)
    assert net.training  # put back after the verification ran it in eval mode
    ids = np.random.default_rng(3).integers(0, 30, (4, 8))
    net.eval()
    with torch.no_grad():
        expected = net(torch.from_numpy(ids)).numpy()
    actual = np.asarray(model(ids.astype("int32"), training=False))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)


def test_verification_runs_the_module_itself() -> None:
    # A forward hook changes what module(x) returns without showing in forward's code: only
    # running the module sees it.
    net = Chain()
    net.fc.register_forward_hook(lambda _module, _inputs, output: output * 2)
    with pytest.raises(ToleranceExceededError, match="greatest absolute difference"):
        torch_to_keras(net)
    assert torch_to_keras(net, verify=False) is not None


def test_a_submodule_converts_alone_and_says_so() -> None:
    net = Tagger()
    part = torch_to_keras(net, submodule="lstm")
    assert (part.name, part.converted_part) == ("lstm", "lstm")
    x = np.random.default_rng(4).standard_normal((2, 6, 4)).astype("float32")
    with torch.no_grad():
        expected = net.lstm(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(np.asarray(part(x)), expected, rtol=0, atol=1e-5)


def test_a_missing_submodule_is_refused_with_the_children() -> None:
    with pytest.raises(UnsupportedFeatureError, match=r"no submodule 'gru'.*'lstm', 'fc'"):
        torch_to_keras(Tagger(), submodule="gru")
