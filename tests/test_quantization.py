"""quantization_error on int8 graphs made by onnxruntime's quantizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime.quantization")

from onnx import helper  # noqa: E402

from tests.quantized_models import VOCABULARY, int8_stack, int8_tagger  # noqa: E402
from xframe_bilstm import compare  # noqa: E402
from xframe_bilstm.adapters.onnx.quantized import dequantized_model  # noqa: E402
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402
from xframe_bilstm.quantization import quantization_error  # noqa: E402


@pytest.fixture(scope="module")
def int8(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return int8_tagger(tmp_path_factory.mktemp("int8"))[1]


def test_an_int8_bilstm_is_within_its_quantization_budget(int8: bytes):
    report = quantization_error(int8, batch=2, steps=7)
    assert report, str(report)
    assert {(s.direction) for s in report.steps} == {"forward", "backward"}
    assert len(report.steps) == 2 * 7
    assert all(0 < s.error <= s.budget for s in report.steps)
    labels = [c.label for c in report.float_checks]
    assert labels == ["onnxruntime[cpu,float32]", "torch[cpu,float32]"]
    assert all(c.error <= c.tolerance < 1e-5 for c in report.float_checks)
    assert report.reproduction < 1e-5
    text = str(report)
    assert "quantization error" in text and "within budget" in text
    assert "onnxruntime[cpu,int8]@original vs reference[cpu,float64]" in text


def test_the_output_error_is_onnxruntimes_int8_run_against_the_float_graph(int8: bytes):
    tokens = np.random.default_rng(3).integers(0, VOCABULARY, (3, 5)).astype(np.int64)
    report = quantization_error(int8, [tokens])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    (quantized,) = ort.InferenceSession(int8, options, providers=["CPUExecutionProvider"]).run(
        None, {"tokens": tokens}
    )
    (approximated,) = ort.InferenceSession(
        dequantized_model(int8).SerializeToString(), providers=["CPUExecutionProvider"]
    ).run(None, {"tokens": tokens})
    assert report.outputs["logits"] == pytest.approx(
        np.abs(quantized - approximated).max(), abs=1e-6
    )


def test_a_budget_smaller_than_the_error_fails_naming_it(int8: bytes):
    report = quantization_error(int8, quantization_budget=1e-6)
    assert not report
    assert "EXCEEDS budget 1e-06" in str(report)
    assert "budget 1e-06 per step, as given" in str(report)


def test_the_thread_count_of_the_int8_run_is_reproduced(int8: bytes):
    report = quantization_error(int8, threads=2, batch=3, steps=5)
    assert report.reproduction < 1e-5
    assert report


def test_a_graph_without_an_int8_lstm_is_refused():
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [], [])
    with pytest.raises(UnsupportedFeatureError, match=r"com\.microsoft\.DynamicQuantizeLSTM"):
        quantization_error(helper.make_model(graph))


def test_compare_reads_an_int8_graph_as_its_dequantized_model(tmp_path: Path):
    int8 = onnx.load_from_string(int8_stack(tmp_path))
    report = compare(int8, frameworks=["torch"], steps=6)
    assert report
    assert report.runs[-1].label == "onnxruntime[cpu,int8]@original"
    float_report = compare(dequantized_model(int8), frameworks=["torch"], steps=6)
    assert float_report.runs[-1].label == "onnxruntime[cpu,float32]@original"
    int8_report = quantization_error(int8)
    assert int8_report
    assert {(s.node, s.direction) for s in int8_report.steps} == {
        (node, direction)
        for node in ("/LSTM_quant", "/LSTM_1_quant")
        for direction in ("forward", "backward")
    }
