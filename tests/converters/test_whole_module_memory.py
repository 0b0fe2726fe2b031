"""A module of children converted to Keras: the arrays read from it leave as Keras takes them.

The graph read from the module holds copies of some weights (recurrent kernels, a Linear's
transposed kernel) and views of the others; each layer's arrays leave the graph once its
Keras layer holds its own, and every Keras variable is exactly the module's parameter in
Keras's orientation.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # before Keras/TensorFlow
keras = pytest.importorskip("keras")

from xframe_bilstm import torch_to_keras  # noqa: E402
from xframe_bilstm.models import torch_graph  # noqa: E402

from .read_arrays import alive_after_keras_build, record_arrays  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]


def _tagger() -> Any:
    """Embedding, a two-layer BiLSTM, a GRU (whose gate blocks move) and a Linear."""
    torch.manual_seed(3)
    nn = torch.nn
    return nn.Sequential(
        nn.Embedding(30, 6),
        nn.LSTM(6, 5, num_layers=2, batch_first=True, bidirectional=True),
        nn.GRU(10, 4, batch_first=True),
        nn.Linear(4, 3),
    ).eval()


@pytest.mark.parametrize("verify", [False, True])
def test_the_arrays_read_leave_as_keras_takes_them(
    verify: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _tagger()
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    read: list[weakref.ref[np.ndarray]] = []
    owned: list[bool] = []
    parameters = [p.detach().numpy() for p in module.parameters()]
    graph_from_torch = torch_graph.graph_from_torch

    def reading(*args: Any, **options: Any) -> Any:
        graph = graph_from_torch(*args, **options)
        for record in graph.layers:
            for array in record_arrays(record):
                read.append(weakref.ref(array))
                owned.append(not any(np.shares_memory(array, p) for p in parameters))
        return graph

    monkeypatch.setattr(torch_graph, "graph_from_torch", reading)
    alive = alive_after_keras_build(monkeypatch, read)
    torch_to_keras(module, verify=verify)
    # embedding 1, BiLSTM 2 layers x 2 directions x 3, GRU 3, Linear 2
    assert len(read) == 18
    assert 0 < sum(owned) < len(read), "the graph holds copies and views both"
    assert alive == [0], f"{alive} of {len(read)} arrays read outlive Keras's build"
    for name, parameter in module.named_parameters():  # the views lent were only let go
        assert torch.equal(parameter, before[name]), name


def _keras_oriented(module: Any) -> dict[str, list[np.ndarray]]:
    """The module's parameters as each Keras layer holds them, derived by hand: kernels
    transposed, an LSTM's two biases summed, a GRU's gate blocks from torch's r, z, n to
    Keras's z, r, h."""
    embedding, lstm, gru, linear = (child for child in module)

    def numpy(name: str, owner: Any) -> np.ndarray:
        return getattr(owner, name).detach().numpy()

    def lstm_layer(index: int) -> list[np.ndarray]:
        arrays = []
        for suffix in ("", "_reverse"):
            ih, hh, b_ih, b_hh = (
                numpy(f"{name}_l{index}{suffix}", lstm)
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            )
            arrays += [ih.T, hh.T, b_ih + b_hh]
        return arrays

    def zrh(array: np.ndarray) -> np.ndarray:
        r, z, n = np.split(array, 3, axis=0)
        return np.concatenate([z, r, n], axis=0)

    gru_weights = [
        zrh(numpy("weight_ih_l0", gru)).T,
        zrh(numpy("weight_hh_l0", gru)).T,
        np.stack([zrh(numpy("bias_ih_l0", gru)), zrh(numpy("bias_hh_l0", gru))]),
    ]
    return {
        "embedding_0": [numpy("weight", embedding)],
        "lstm_1": lstm_layer(0),
        "lstm_1_1": lstm_layer(1),
        "gru_2": gru_weights,
        "linear_3": [numpy("weight", linear).T, numpy("bias", linear)],
    }


@pytest.mark.parametrize("verify", [False, True])
def test_every_variable_is_the_parameter_in_keras_orientation(verify: bool) -> None:
    module = _tagger()
    model = torch_to_keras(module, verify=verify)
    expected = _keras_oriented(module)
    assert sorted(expected) == sorted(layer.name for layer in model.layers if layer.weights)
    for name, arrays in expected.items():
        variables = model.get_layer(name).weights
        assert len(variables) == len(arrays), name
        for variable, array in zip(variables, arrays):
            np.testing.assert_array_equal(variable.numpy(), array, err_msg=variable.path)
