"""One path for every source: read once, planned by what each framework supports, paired and
profiled alike for a recurrent stack and a whole model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

import xframe_bilstm.keras_files as keras_files  # noqa: E402
from xframe_bilstm import compare, keras_to_torch  # noqa: E402
from xframe_bilstm.canonical import RecurrentStack  # noqa: E402
from xframe_bilstm.frameworks import KerasOnnxFramework  # noqa: E402
from xframe_bilstm.graph import ModelGraph  # noqa: E402
from xframe_bilstm.sources import read_source, source_type  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

LENGTHS = [5, 2, 4]


@pytest.fixture(scope="module")
def tagger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Embedding(mask_zero) → Bidirectional(LSTM) returning sequences, as the output."""
    keras.utils.set_random_seed(5)
    ids = keras.Input((None,), dtype="int32")
    embedded = keras.layers.Embedding(20, 3, mask_zero=True)(ids)
    lstm = keras.layers.LSTM(4, return_sequences=True)
    tags = keras.layers.Bidirectional(lstm, name="tags")(embedded)
    path = tmp_path_factory.mktemp("one-path") / "tagger.keras"
    keras.Model(ids, tags).save(path)
    return path


@pytest.fixture(scope="module")
def bilstm_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keras.utils.set_random_seed(6)
    model = keras.Sequential(
        [keras.Input((None, 3)), keras.layers.Bidirectional(keras.layers.GRU(2))]
    )
    path = tmp_path_factory.mktemp("one-path") / "bigru.keras"
    model.save(path)
    return path


def test_source_types_are_tried_in_order(tagger: Path, bilstm_file: Path) -> None:
    assert source_type(str(tagger)) == "Keras file"
    assert isinstance(read_source(str(tagger)).reading, ModelGraph)
    assert isinstance(read_source(str(bilstm_file)).reading, RecurrentStack)
    assert source_type(torch.nn.LSTM(3, 2)) == "torch"
    assert source_type(keras.layers.LSTM(2)) == "keras"


def test_a_model_file_is_read_once(tagger: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    read_model = keras_files.read_model

    def counting(path: str) -> ModelGraph:
        reads.append(path)
        return read_model(path)

    monkeypatch.setattr(keras_files, "read_model", counting)
    assert bool(compare(str(tagger), frameworks=["torch"], lengths=LENGTHS))
    assert reads == [str(tagger)]


def test_a_whole_model_gets_the_profiles_of_a_layer(tagger: Path) -> None:
    report = compare(str(tagger), lengths=LENGTHS, frameworks=["torch", "keras"])
    assert bool(report), report.failures
    labels = [pair.label for pair in report.pairs]
    # The port and Keras's own run of the file are paired with each other, not only with
    # the reference.
    assert "torch[cpu,float32] vs keras[cpu,float32]@original" in labels
    pair = next(
        p for p in report.pairs if p.label == "torch[cpu,float32] vs reference[cpu,float64]"
    )
    name = "output 'tags'"
    assert set(pair.timesteps) == {f"{name}.forward", f"{name}.backward"}
    assert len(pair.timesteps[f"{name}.forward"]) == max(LENGTHS)
    assert set(pair.directions) == {"forward", "backward"}
    assert set(pair.padding[f"{name}.backward"]) == {"valid", "padded"}


def test_auto_runs_a_whole_model_on_every_installed_framework(tagger: Path) -> None:
    # onnxruntime runs our export of the whole model, torch-onnx PyTorch's export of the
    # port, keras-onnx Keras's export of the model rebuilt (where tf2onnx is installed), and
    # Keras runs the file as loaded.
    report = compare(str(tagger), lengths=LENGTHS)
    frameworks = {run.spec.framework for run in report.runs}
    assert ("keras-onnx" in frameworks) == KerasOnnxFramework.available()
    assert {"onnxruntime", "torch-onnx"} <= frameworks
    assert "keras[cpu,float32]@original" in [run.label for run in report.runs]


def test_keras_alone_runs_a_whole_model_rebuilt_and_as_loaded(tagger: Path) -> None:
    report = compare(str(tagger), lengths=LENGTHS, frameworks=["keras"])
    assert bool(report), report.failures
    assert [run.label for run in report.runs] == [
        "reference[cpu,float64]",
        "keras[cpu,float32]",  # rebuilt from the reading
        "keras[cpu,float32]@original",
    ]


def test_a_stack_file_runs_as_loaded_beside_its_reading(bilstm_file: Path) -> None:
    report = compare(str(bilstm_file), frameworks=["torch", "keras"], steps=5)
    assert bool(report), report.failures
    labels = [run.label for run in report.runs]
    assert labels[-1] == "keras[cpu,float32]@original"
    assert "keras[cpu,float32]" in labels  # the layer rebuilt from the reading
    # Without Keras asked for, Keras never loads the file.
    assert all(
        run.spec.subject == "" for run in compare(str(bilstm_file), frameworks=["torch"]).runs
    )


def test_a_wrong_port_fails_against_keras_as_well(tagger: Path) -> None:
    port = keras_to_torch(str(tagger))
    lstm = next(m for m in port.modules() if isinstance(m, torch.nn.LSTM))
    with torch.no_grad():
        lstm.weight_hh_l0.mul_(-1.0)
    report = compare(str(tagger), against=port, lengths=LENGTHS, frameworks=["torch", "keras"])
    verdicts = {pair.label: bool(pair) for pair in report.pairs}
    assert verdicts["torch[cpu,float32]@against vs keras[cpu,float32]@original"] is False
    assert verdicts["torch[cpu,float32] vs keras[cpu,float32]@original"] is True


def _torch_export(port: torch.nn.Module, path: Path) -> Path:
    """``torch.onnx.export`` of a tagger port, with a dynamic batch and time axis."""
    ids = torch.tensor([[3, 4, 5, 0, 0]])
    torch.onnx.export(
        port.eval(),
        (ids,),
        str(path),
        input_names=["ids"],
        output_names=["tags"],
        dynamic_axes={"ids": {0: "batch", 1: "time"}},
        dynamo=False,
    )
    return path


def test_an_onnx_export_runs_against_a_whole_model(tagger: Path, tmp_path: Path) -> None:
    exported = _torch_export(keras_to_torch(str(tagger)), tmp_path / "tagger.onnx")
    report = compare(
        str(tagger), against=str(exported), lengths=LENGTHS, frameworks=["torch", "keras"]
    )
    assert bool(report), report.failures
    labels = {run.label for run in report.runs}
    assert "onnxruntime[cpu,float32]@against" in labels
    # A broken export is caught against Keras's own run of the model.
    port = keras_to_torch(str(tagger))
    lstm = next(m for m in port.modules() if isinstance(m, torch.nn.LSTM))
    with torch.no_grad():
        lstm.weight_hh_l0.mul_(-1.0)
    broken = _torch_export(port, tmp_path / "broken.onnx")
    report = compare(str(tagger), against=str(broken), lengths=LENGTHS, frameworks=["keras"])
    verdicts = {pair.label: bool(pair) for pair in report.pairs}
    assert verdicts["onnxruntime[cpu,float32]@against vs keras[cpu,float32]@original"] is False


def test_an_onnx_graph_of_other_outputs_is_refused_against_a_model(
    tagger: Path, tmp_path: Path
) -> None:
    from xframe_bilstm.errors import UnsupportedFeatureError

    three_outputs = tmp_path / "states.onnx"
    lstm = torch.nn.LSTM(3, 2, batch_first=True)
    args = (torch.zeros(1, 4, 3),)
    torch.onnx.export(lstm, args, str(three_outputs), output_names=["y", "h", "c"], dynamo=False)
    with pytest.raises(UnsupportedFeatureError, match="returns 3 output"):
        compare(str(tagger), against=str(three_outputs), frameworks=["torch"])


def test_given_inputs_to_a_whole_model_are_checked(tagger: Path) -> None:
    ids = np.ones((2, 3), np.int64)
    report = compare(str(tagger), inputs=ids, frameworks=["torch"])
    assert report.input_shape == (2, 3)
