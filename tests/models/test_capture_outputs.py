"""What a captured ``forward`` returns with its batch and time axes merged, as a loss over
every step reads it (``out.view(-1, C)``): returned so by the port, step by step where the
code is time-major. Expected values are ``module(x)``, run by torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import compare, keras_to_torch, torch_to_keras  # noqa: E402
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402

from .every_framework import assert_agrees_everywhere  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn, F = torch.nn, torch.nn.functional


class TimeMajorLanguageModel(nn.Module):
    """pytorch/examples' word language model with its states left out: ids (time, batch),
    log-probabilities (time * batch, vocabulary), step by step."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(71)
        self.encoder = nn.Embedding(30, 8)
        self.rnn = nn.LSTM(8, 8, 2)
        self.decoder = nn.Linear(8, 30)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        output, _ = self.rnn(self.encoder(input))
        return F.log_softmax(self.decoder(output).view(-1, 30), dim=1)


class CharacterModel(nn.Module):
    """A character model as the char-RNN notebooks write it: one-hot characters (batch,
    time, letters), ``r_output.contiguous().view(-1, n_hidden)`` into the Linear, row by
    row."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(72)
        self.lstm = nn.LSTM(5, 8, 2, batch_first=True)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r_output, _ = self.lstm(x)
        return self.fc(r_output.contiguous().view(-1, 8))


def _input(module: nn.Module, rows: int, steps: int) -> np.ndarray:
    rng = np.random.default_rng(rows)
    if isinstance(module, TimeMajorLanguageModel):
        return rng.integers(0, 30, (steps, rows))
    return rng.standard_normal((rows, steps, 5)).astype("float32")


@pytest.mark.parametrize(
    ("make", "time_first"), [(TimeMajorLanguageModel, True), (CharacterModel, False)]
)
def test_rows_merged_are_returned_merged(make, time_first: bool, tmp_path: Path) -> None:
    module = make().eval()
    graph = graph_from_torch(module)
    (merged,) = [record for record in graph.layers if record.kind == "merged_rows"]
    assert graph.outputs == (merged.name,) and merged.options["time_first"] is time_first
    model = torch_to_keras(module)  # checked against module(x)
    x = _input(module, 3, 11)
    with torch.no_grad():
        expected = module(torch.as_tensor(x)).numpy()
    assert expected.shape[0] == 33
    np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=0, atol=2e-5)
    assert_agrees_everywhere(module, steps=6, batch=3)
    model.save(tmp_path / "merged.keras")
    with torch.no_grad():
        back = keras_to_torch(tmp_path / "merged.keras")(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(back, expected, rtol=0, atol=2e-5)


def test_gradients_flow_back_through_the_merged_rows() -> None:
    report = compare(CharacterModel().eval(), frameworks=["torch", "keras"], gradients=True)
    assert report, report.lines()
