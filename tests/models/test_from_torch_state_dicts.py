"""torch_to_keras, load_state_dict_module and the command line on state_dict files that hold
more (or other) than one recurrent module: whole models, checkpoints, TorchScript, cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import (  # noqa: E402
    UnsupportedFeatureError,
    WeightShapeError,
    compare,
    torch_to_keras,
)
from xframe_bilstm.cli import main  # noqa: E402
from xframe_bilstm.models.from_torch import load_state_dict_module  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn = torch.nn


class Classifier(nn.Module):
    """The whole model of the issue: an embedding, an LSTM and a classifier head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(40, 6)
        self.lstm = nn.LSTM(6, 5, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(10, 3)


class CnnBiLstm(nn.Module):
    """Convolutions with batch norms (int64 num_batches_tracked buffers) before a BiLSTM."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(4):
            layers += [nn.Conv1d(4, 4, 3, padding=1), nn.BatchNorm1d(4)]
        self.cnn = nn.Sequential(*layers)
        self.lstm = nn.LSTM(4, 3, batch_first=True, bidirectional=True)


def lstm_output(lstm: nn.LSTM, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return lstm(torch.from_numpy(x))[0].numpy()


def test_a_whole_model_state_dict_is_refused_with_the_keys_left_out(tmp_path: Path) -> None:
    path = tmp_path / "classifier.pt"
    torch.save(Classifier().state_dict(), path)
    pattern = (
        r"classifier\.pt: .*'emb' \(emb\.weight\), 'fc' \(fc\.weight, fc\.bias\) would not be "
        r"converted.*submodule='lstm'.*--torch-submodule lstm"
    )
    for attempt in (torch_to_keras, load_state_dict_module, compare):
        with pytest.raises(UnsupportedFeatureError, match=pattern):
            attempt(path)


def test_the_recurrent_part_converts_when_asked_for_and_says_so(tmp_path: Path) -> None:
    net = Classifier()
    path = tmp_path / "classifier.pt"
    torch.save(net.state_dict(), path)
    layer = torch_to_keras(path, submodule="lstm")
    assert (layer.name, layer.converted_part) == ("lstm", "lstm")
    module = load_state_dict_module(path, submodule="lstm")
    assert module.converted_part == "lstm"
    x = np.random.default_rng(0).standard_normal((2, 5, 6)).astype("float32")
    np.testing.assert_allclose(np.asarray(layer(x)), lstm_output(net.lstm, x), rtol=0, atol=1e-5)


def test_a_part_that_is_not_there_is_refused_with_the_modules(tmp_path: Path) -> None:
    path = tmp_path / "classifier.pt"
    torch.save(Classifier().state_dict(), path)
    with pytest.raises(
        UnsupportedFeatureError, match=r"no key starts with 'gru\.'.*'emb', 'fc', 'lstm'"
    ):
        torch_to_keras(path, submodule="gru")


def test_the_command_line_refuses_a_whole_model_and_compares_its_part(
    tmp_path: Path, capsys
) -> None:
    path = tmp_path / "classifier.pt"
    torch.save(Classifier().state_dict(), path)
    assert main(["--torch", str(path), "--steps", "4"]) == 2
    error = capsys.readouterr().err.strip()
    assert "would not be converted" in error and "--torch-submodule lstm" in error
    assert "\n" not in error
    assert main(["--torch", str(path), "--torch-submodule", "lstm", "--steps", "4"]) == 0
    assert "equivalent" in capsys.readouterr().out


def test_cnn_bilstm_state_dict_names_the_modules_around_the_lstm(tmp_path: Path) -> None:
    path = tmp_path / "cnn_bilstm.pt"
    state = CnnBiLstm().state_dict()
    assert state["cnn.7.num_batches_tracked"].dtype == torch.int64  # what used to be blamed
    torch.save(state, path)
    count = sum(1 for key in state if key.startswith("cnn."))
    with pytest.raises(
        UnsupportedFeatureError,
        match=rf"module 'cnn' \({count} keys: cnn\.0\.weight, .*cnn\.7\.num_batches_tracked\) "
        r"would not be converted.*submodule='lstm'",
    ):
        torch_to_keras(path)
    assert torch_to_keras(path, submodule="lstm").converted_part == "lstm"


@pytest.mark.parametrize("key", ["model_state_dict", "state_dict", "model"])
def test_training_checkpoints_are_read_and_say_which_key(tmp_path: Path, key: str) -> None:
    torch.manual_seed(3)
    gru = nn.GRU(3, 4, batch_first=True)
    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 3, key: gru.state_dict(), "optimizer_state_dict": {"lr": 0.1}}, path)
    layer = torch_to_keras(path)
    assert layer.checkpoint_key == key
    assert load_state_dict_module(path).checkpoint_key == key
    x = np.random.default_rng(1).standard_normal((2, 6, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(layer(x)), lstm_output(gru, x), rtol=0, atol=1e-5)


def test_a_checkpoint_without_a_known_key_lists_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 3, "weights": nn.LSTM(3, 2).state_dict()}, path)
    with pytest.raises(WeightShapeError, match=r"found a dict with the keys 'epoch', 'weights'"):
        torch_to_keras(path)


def test_data_parallel_prefix_and_a_checkpoint_of_a_whole_model(tmp_path: Path) -> None:
    net = Classifier()
    path = tmp_path / "checkpoint.pt"
    state = {f"module.{name}": value for name, value in net.state_dict().items()}
    torch.save({"epoch": 1, "state_dict": state}, path)
    with pytest.raises(UnsupportedFeatureError, match=r"checkpoint\.pt\['state_dict'\]: .*'emb'"):
        torch_to_keras(path)
    layer = torch_to_keras(path, submodule="lstm")
    x = np.random.default_rng(2).standard_normal((2, 4, 6)).astype("float32")
    np.testing.assert_allclose(np.asarray(layer(x)), lstm_output(net.lstm, x), rtol=0, atol=1e-5)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("suffix", [".pt", ".jit", ".ts"])
def test_a_torchscript_archive_is_refused_by_name_without_running_it(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"lstm{suffix}"
    torch.jit.script(nn.LSTM(3, 2)).save(str(path))
    for attempt in (torch_to_keras, load_state_dict_module, compare):
        with pytest.raises(
            UnsupportedFeatureError, match=r"a TorchScript archive .*torch\.jit\.load"
        ) as caught:
            attempt(path)
        assert "weights_only=False" not in str(caught.value)


@pytest.mark.parametrize(
    ("cell", "named"),
    [
        (nn.LSTMCell(3, 2), r"nn\.LSTMCell\(3, 2\).*nn\.LSTM\(3, 2, batch_first=True\)"),
        (nn.GRUCell(3, 2), r"nn\.GRUCell\(3, 2\).*nn\.GRU\(3, 2, batch_first=True\)"),
    ],
)
def test_cell_weights_are_named_with_what_to_do(tmp_path: Path, cell, named: str) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "cell.safetensors"
    save_file(dict(cell.state_dict()), str(path))
    with pytest.raises(UnsupportedFeatureError, match=named + r".*weight_ih -> weight_ih_l0"):
        torch_to_keras(path)


def test_cell_weights_renamed_as_the_message_says_compute_the_cell_over_time(
    tmp_path: Path,
) -> None:
    # The message's claim, checked: the cell run step by step from zero states is the
    # one-layer module with the renamed keys.
    torch.manual_seed(4)
    cell = nn.LSTMCell(3, 2)
    path = tmp_path / "cell.pt"
    torch.save({f"{name}_l0": value for name, value in cell.state_dict().items()}, path)
    layer = torch_to_keras(path)
    x = np.random.default_rng(3).standard_normal((2, 5, 3)).astype("float32")
    h = c = torch.zeros(2, 2)
    steps = []
    with torch.no_grad():
        for t in range(5):
            h, c = cell(torch.from_numpy(x[:, t]), (h, c))
            steps.append(h)
    expected = torch.stack(steps, dim=1).numpy()
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=0, atol=1e-5)


def test_several_recurrent_modules_are_named(tmp_path: Path) -> None:
    path = tmp_path / "seq2seq.pt"
    state = {
        **{f"encoder.{k}": v for k, v in nn.GRU(3, 4).state_dict().items()},
        **{f"decoder.{k}": v for k, v in nn.GRU(4, 4).state_dict().items()},
    }
    torch.save(state, path)
    with pytest.raises(
        UnsupportedFeatureError, match=r"2 recurrent modules \('decoder', 'encoder'\)"
    ):
        torch_to_keras(path)
    assert torch_to_keras(path, submodule="encoder").converted_part == "encoder"
