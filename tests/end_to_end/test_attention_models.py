"""Whole Keras models with attention layers, saved as .keras and .h5 (Keras 3) and as Keras 2
.h5 files: ported to torch, compared on every framework, exported to ONNX and rebuilt in
Keras from the graph, each against the model's own call on left- and right-padded rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
ort = pytest.importorskip("onnxruntime")

from xframe_bilstm import compare, keras_to_torch  # noqa: E402
from xframe_bilstm.adapters.keras.graph import graph_refusal, graph_to_keras  # noqa: E402
from xframe_bilstm.comparison import derived_tolerance  # noqa: E402
from xframe_bilstm.keras_files import read_model  # noqa: E402
from xframe_bilstm.onnx_converters import to_onnx  # noqa: E402
from xframe_bilstm.reference.graph import run_model_reference  # noqa: E402

from .. import attention_models  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch, pytest.mark.onnx]
BUILDERS = {
    "self_attention": attention_models.self_attention_classifier,
    "multi_head": attention_models.multi_head_classifier,
}
IDS = attention_models.padded_ids()


def _torch_output(module: Any, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def _check_everywhere(path: Path, expected: np.ndarray) -> None:
    graph = read_model(path)
    tolerance = derived_tolerance(graph, [IDS])
    port = keras_to_torch(path)
    np.testing.assert_allclose(_torch_output(port, IDS), expected, rtol=0, atol=tolerance)
    (reference,) = run_model_reference(graph, [IDS])
    np.testing.assert_allclose(reference, expected, rtol=0, atol=tolerance)
    session = ort.InferenceSession(to_onnx(path).SerializeToString())
    exported = session.run(None, {session.get_inputs()[0].name: IDS.astype(np.int64)})[0]
    np.testing.assert_allclose(exported, expected, rtol=0, atol=tolerance)
    if graph.keras_major < 3 and any(r.kind == "merge" for r in graph.layers):
        # Keras 2's Add keeps a step where every input's mask does: Keras 3 cannot rebuild it
        assert "layer 'residual' (Add)" in str(graph_refusal(graph))
        return
    rebuilt = graph_to_keras(graph)  # what compare's keras column runs
    np.testing.assert_allclose(np.asarray(rebuilt(IDS)), expected, rtol=0, atol=tolerance)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_a_keras3_file_is_ported_compared_exported_and_rebuilt(
    name: str, suffix: str, tmp_path: Path
) -> None:
    model = BUILDERS[name](keras)
    path = tmp_path / f"{name}{suffix}"
    model.save(path)
    _check_everywhere(path, np.asarray(model(IDS)))
    # Keras cannot load the mask operation (NotEqual) that a Keras 3 .h5 file may record, so
    # Keras's own run is asked of the .keras file.
    frameworks = (
        ["torch", "keras", "onnxruntime"] if suffix == ".keras" else ["torch", "onnxruntime"]
    )
    report = compare(path, frameworks=frameworks)
    assert report, report.lines()
    assert {"reference", *frameworks} <= {r.spec.framework for r in report.runs}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_a_keras2_h5_file_is_ported_and_compared(name: str, tmp_path: Path) -> None:
    tf_keras = pytest.importorskip("tf_keras")
    model = BUILDERS[name](tf_keras)
    path = tmp_path / f"{name}_k2.h5"
    model.save(path)
    _check_everywhere(path, model(IDS).numpy())
    report = compare(path, frameworks=["torch", "onnxruntime"])
    assert report, report.lines()


def test_padded_steps_change_nothing_in_the_valid_ones() -> None:
    """The masks reach the attention: a padded row's valid outputs are those of the row
    cut to its valid steps (Keras computes the same), so padding is not attended to."""
    model = attention_models.multi_head_classifier(keras)
    port = keras_to_torch(model)
    row = IDS[1:2]  # left padded
    cut = row[:, row[0] != 0]
    padded, alone = _torch_output(port, row), _torch_output(port, cut)
    np.testing.assert_allclose(padded[:, -cut.shape[1] :], alone, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(model(cut)), alone, rtol=0, atol=1e-5)


def test_diagnose_names_a_dense_layer_next_to_a_multi_head_attention(tmp_path: Path) -> None:
    """The attention's projections are not nn.Linear modules, so the model's one Dense is
    paired with the port's one nn.Linear."""
    from xframe_bilstm import diagnose

    path = tmp_path / "multi_head.keras"
    attention_models.multi_head_classifier(keras).save(path)
    port = keras_to_torch(path)
    assert diagnose(path, port).code == "equivalent"
    with torch.no_grad():
        port.out.weight.mul_(1.5)
    diagnosis = diagnose(path, port)
    assert diagnosis.code == "weights_differ"
    assert "layer 'out' (Dense)" in diagnosis.message
