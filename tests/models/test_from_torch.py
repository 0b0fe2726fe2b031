"""torch_to_keras for nn.Sequential-like modules and for state_dict files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError, torch_to_keras  # noqa: E402
from xframe_bilstm.adapters.torch import torch_to_canonical  # noqa: E402
from xframe_bilstm.comparison import derived_tolerance  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]


def classifier() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Embedding(20, 4),
        torch.nn.LSTM(4, 3, num_layers=2, batch_first=True, bidirectional=True, dropout=0.2),
        torch.nn.Dropout(0.1),
        torch.nn.GRU(6, 5, batch_first=True),
        torch.nn.Linear(5, 3),
        torch.nn.ReLU(),
        torch.nn.Linear(3, 2),
        torch.nn.Softmax(dim=-1),
    ).eval()


def by_hand(net: torch.nn.Sequential, ids: torch.Tensor) -> np.ndarray:
    """``classifier()``'s layers one after another, each recurrent one passing on its output."""
    embedding, lstm, dropout, gru, first, relu, second, softmax = net
    with torch.no_grad():
        features = dropout(lstm(embedding(ids))[0])
        return softmax(second(relu(first(gru(features)[0])))).numpy()


def test_sequential_module_saves_as_keras_and_loads_back(tmp_path: Path) -> None:
    net = classifier()
    model = torch_to_keras(net)  # verified against the Sequential's own forward
    assert [type(layer).__name__ for layer in model.layers] == [
        "InputLayer",
        "Embedding",
        "Bidirectional",
        "Dropout",
        "Bidirectional",
        "Dropout",
        "GRU",
        "Dense",
        "Activation",
        "Dense",
        "Activation",
    ]
    path = tmp_path / "port.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    ids = np.random.default_rng(1).integers(0, 20, (3, 9)).astype("int32")
    expected = by_hand(net, torch.from_numpy(ids).long())
    actual = np.asarray(loaded(ids))
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("child", "named"),
    [
        pytest.param(torch.nn.Conv1d(4, 4, 3), "'conv1d_1' (Conv1d) reads", id="time-as-channels"),
        pytest.param(torch.nn.LSTM(4, 3), "batch_first=False", id="time-first-lstm"),
    ],
)
def test_unsupported_child_is_refused_by_name(child, named: str) -> None:
    net = torch.nn.Sequential(torch.nn.Embedding(20, 4), child)
    with pytest.raises(
        UnsupportedFeatureError, match=named.replace("(", r"\(").replace(")", r"\)")
    ):
        torch_to_keras(net)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_state_dict_file_becomes_the_keras_layers(tmp_path: Path, suffix: str) -> None:
    torch.manual_seed(1)
    gru = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    path = tmp_path / f"gru{suffix}"
    state = {f"encoder.{k}": v for k, v in gru.state_dict().items()}
    if suffix == ".pt":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    model = torch_to_keras(str(path))
    x = np.random.default_rng(2).standard_normal((2, 6, 3)).astype("float32")
    with torch.no_grad():
        expected = gru(torch.from_numpy(x))[0].numpy()
    tolerance = derived_tolerance(torch_to_canonical(gru), x)
    np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=0, atol=tolerance)
