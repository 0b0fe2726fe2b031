"""A torch module made of children, read as a model graph: compared as it runs, ported to Keras."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError, compare, torch_to_keras  # noqa: E402
from xframe_bilstm.comparison import derived_tolerance  # noqa: E402
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402
from xframe_bilstm.reference import run_model_reference  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]


class Tagger(torch.nn.Module):
    """A sequence tagger as people write it: its own forward, children applied in order."""

    def __init__(self, relu: bool = False) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.emb = torch.nn.Embedding(30, 8, padding_idx=0)
        self.lstm = torch.nn.LSTM(8, 6, num_layers=2, batch_first=True, bidirectional=True)
        self.drop = torch.nn.Dropout(0.3)
        self.fc = torch.nn.Linear(12, 5)
        self.relu = relu

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        features = self.drop(self.lstm(self.emb(ids))[0])
        return self.fc(torch.relu(features) if self.relu else features)


def test_the_graph_computes_what_forward_computes() -> None:
    tagger = Tagger().eval()
    graph = graph_from_torch(tagger)
    ids = np.random.default_rng(0).integers(0, 30, (3, 9))
    with torch.no_grad():
        expected = tagger(torch.from_numpy(ids)).numpy()
    (actual,) = run_model_reference(graph, [ids])
    tolerance = derived_tolerance(graph, [ids])
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tolerance)


def test_compare_runs_the_module_as_written_beside_every_port() -> None:
    tagger = Tagger()
    report = compare(tagger, frameworks=["torch", "keras"], steps=6)
    assert report, report.lines()
    labels = {pair.actual for pair in report.pairs} | {pair.expected for pair in report.pairs}
    assert {"torch[cpu,float32]@original", "keras[cpu,float32]"} <= labels
    assert tagger.training  # its own mode is put back


def test_a_plain_sequential_runs_with_recurrent_children_passing_on_their_output() -> None:
    torch.manual_seed(4)
    net = torch.nn.Sequential(torch.nn.GRU(3, 4, batch_first=True), torch.nn.Tanh())
    report = compare(net, frameworks=["torch"], steps=5)
    assert report, report.lines()
    assert any(pair.expected.endswith("@original") for pair in report.pairs)


def test_a_wrong_port_is_caught_against_the_module() -> None:
    tagger = Tagger()
    port = torch_to_keras(tagger)
    assert compare(tagger, against=port, frameworks=[])
    dense = port.get_layer("fc")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel[::-1], bias])  # the rows of two features swapped, say
    report = compare(tagger, against=port, frameworks=[])
    assert not report
    assert any("@against" in line and "FAILED" in line for line in report.lines())


def test_the_keras_port_keeps_dropout_rates_for_training() -> None:
    model = torch_to_keras(Tagger())
    rates = {layer.name: layer.rate for layer in model.layers if type(layer).__name__ == "Dropout"}
    assert rates == {"drop": pytest.approx(0.3)}
    stacked = torch.nn.Sequential(torch.nn.LSTM(3, 4, num_layers=2, dropout=0.25, batch_first=True))
    rates = {
        layer.name: layer.rate for layer in torch_to_keras(stacked).layers if "drop" in layer.name
    }
    assert rates == {"lstm_0_dropout_1": pytest.approx(0.25)}


def test_hardsigmoid_means_what_torch_computes() -> None:
    torch.manual_seed(5)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Hardsigmoid())
    with torch.no_grad():
        net[0].weight.mul_(4.0)  # reach the clipped ends and the slope between
    model = torch_to_keras(net)  # verified against net(x)
    x = np.linspace(-6, 6, 24, dtype=np.float32).reshape(6, 4)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=0, atol=1e-6)


def test_compare_runs_what_forward_does_besides_its_children() -> None:
    report = compare(Tagger(relu=True), frameworks=["torch", "keras"], steps=6)
    assert report, report.lines()
    assert any(pair.expected.endswith("@original") for pair in report.pairs)


def test_embedding_with_max_norm_is_refused_by_name() -> None:
    net = torch.nn.Sequential(torch.nn.Embedding(10, 4, max_norm=1.0))
    with pytest.raises(
        UnsupportedFeatureError, match=r"'embedding_0' is an Embedding with max_norm"
    ):
        graph_from_torch(net)
