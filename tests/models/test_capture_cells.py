"""Loops of nn.LSTMCell/GRUCell/RNNCell over time written in forward, read as one layer.

Expected values come from the module itself, ``module(x)``, run by torch, at a length
neither capture used.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError, compare, torch_to_keras  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn = torch.nn
CELLS = {
    "lstm": lambda bias: nn.LSTMCell(4, 5, bias=bias),
    "gru": lambda bias: nn.GRUCell(4, 5, bias=bias),
    "rnn_tanh": lambda bias: nn.RNNCell(4, 5, bias=bias),
    "rnn_relu": lambda bias: nn.RNNCell(4, 5, bias=bias, nonlinearity="relu"),
}


class Loop(nn.Module):
    """A voice-activity-detector-like loop: one cell over every step, then a Linear."""

    def __init__(self, kind: str, how: str = "sequence", bias: bool = True) -> None:
        super().__init__()
        torch.manual_seed(8)
        self.kind, self.how = kind, how
        self.cell = CELLS[kind](bias)
        self.fc = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], 5)
        c = torch.zeros(x.shape[0], 5)
        steps = 7 if self.how == "fixed" else x.shape[1]
        outputs = []
        for t in range(steps):
            if self.kind == "lstm":
                h, c = self.cell(x[:, t], (h, c))
            else:
                h = self.cell(x[:, t], h)
            outputs.append(h)
        if self.how == "last":
            return self.fc(h)
        if self.how == "cell_state":
            return self.fc(h + c)
        if self.how == "sum":
            return self.fc(sum(outputs))
        return self.fc(torch.stack(outputs, dim=1))


def _check(module: nn.Module) -> None:
    model = torch_to_keras(module)
    x = np.random.default_rng(9).standard_normal((3, 11, 4)).astype("float32")
    with torch.no_grad():
        expected = module.eval()(torch.from_numpy(x)).numpy()
    assert np.abs(np.asarray(model(x)) - expected).max() < 1e-5
    recurrent = [type(layer).__name__ for layer in model.layers]
    assert recurrent[1] in ("LSTM", "GRU", "SimpleRNN")


@pytest.mark.parametrize("kind", sorted(CELLS))
@pytest.mark.parametrize("how", ["sequence", "last"])
def test_a_cell_loop_is_read_as_its_layer(kind: str, how: str) -> None:
    _check(Loop(kind, how))


def test_a_cell_without_biases_is_read() -> None:
    _check(Loop("lstm", bias=False))


def test_compare_passes_on_a_cell_loop() -> None:
    report = compare(Loop("gru"), frameworks=["torch", "keras", "onnxruntime"])
    assert bool(report), "\n".join(report.lines())


@pytest.mark.parametrize(
    ("how", "refused"),
    [
        ("fixed", "it runs 7 steps over an input of 9 at the other input length"),
        ("cell_state", "uses a cell state c outside the loop"),
        ("sum", "uses its steps' outputs other than as torch.stack(outputs, dim=1)"),
    ],
)
def test_other_cell_loops_are_refused_naming_the_cell(how: str, refused: str) -> None:
    with pytest.raises(UnsupportedFeatureError) as caught:
        torch_to_keras(Loop("lstm", how), verify=False)
    message = str(caught.value)
    assert "calls 'cell' (nn.LSTMCell) in a loop not read as a layer" in message
    assert refused in message
    assert "use nn.LSTM/nn.GRU/nn.RNN(batch_first=True) instead" in message
