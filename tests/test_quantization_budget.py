"""compare() of an int8 ONNX graph: its run judged against the quantization budget."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime.quantization")

from tests.quantized_models import int8_stack  # noqa: E402
from xframe_bilstm import compare  # noqa: E402
from xframe_bilstm.adapters.onnx.quantized import dequantized_model  # noqa: E402
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402
from xframe_bilstm.quantization import quantization_error  # noqa: E402

INT8 = "onnxruntime[cpu,int8]@original"
FRAMEWORKS = ["torch", "onnxruntime"]


def _input() -> np.ndarray:
    return np.random.default_rng(3).standard_normal((3, 9, 3)).astype(np.float32)


def _session_y(model: bytes, x: np.ndarray) -> np.ndarray:
    """The graph's ``y`` as onnxruntime computes it with one intra-op thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return session.run(["y"], {"x": x})[0].astype(np.float64)


def _float_pairs(report) -> dict[str, tuple[float, float]]:
    """The pairs of the float reading's runs (neither side the graph as given)."""
    return {
        p.label: (p.max_abs_error, p.tolerance) for p in report.pairs if "@original" not in p.label
    }


@pytest.mark.parametrize("bidirectional", [True, False], ids=["bilstm", "lstm"])
def test_an_int8_graph_passes_within_the_default_budget(tmp_path: Path, bidirectional: bool):
    graph = int8_stack(tmp_path, bidirectional=bidirectional)
    x = _input()
    report = compare(tmp_path / "stack8.onnx", frameworks=FRAMEWORKS, inputs=x)
    assert report, report.to_text()
    (original,) = [run for run in report.runs if run.label == INT8]
    assert original.settings["intra_op_num_threads"] == 1
    int8_pairs = [p for p in report.pairs if INT8 in p.label]
    assert len(int8_pairs) == 3  # with the reference, torch and our ONNX export
    # The budget is the largest step budget quantization_error gives on the same input.
    steps = quantization_error(graph, inputs=[x]).steps
    assert report.quantization_budget == pytest.approx(max(s.budget for s in steps))
    # The int8 error is onnxruntime's int8 graph against the float graph it approximates.
    floats = dequantized_model(onnx.load_from_string(graph)).SerializeToString()
    expected = np.abs(_session_y(graph, x) - _session_y(floats, x)).max()
    for pair in int8_pairs:
        assert pair.kind == "quantization"
        assert pair.tolerance == report.quantization_budget
        assert pair.max_abs_error == pytest.approx(expected, abs=1e-5)
        assert "within budget" in pair.summary()
        # Profiled as every pair: per step (9) and, for a BiLSTM, per direction.
        assert {name: len(errors) for name, errors in pair.timesteps.items()} == (
            {"output.forward": 9, "output.backward": 9} if bidirectional else {"output": 9}
        )
        assert set(pair.directions) == ({"forward", "backward"} if bidirectional else set())
    assert "quantization budget" in report.tolerance_note
    assert "float32 reference's drift" in report.tolerance_note
    # The float pairs are those of the dequantized model as a source.
    float_report = compare(dequantized_model(onnx.load_from_string(graph)), frameworks=FRAMEWORKS,
                           inputs=x)  # fmt: skip
    assert float_report.quantization_budget is None
    assert _float_pairs(report) == _float_pairs(float_report)


def test_a_budget_far_too_small_fails_the_int8_pairs_only(tmp_path: Path):
    int8_stack(tmp_path)
    x = _input()
    path = tmp_path / "stack8.onnx"
    report = compare(path, frameworks=FRAMEWORKS, inputs=x, quantization_budget=1e-9)
    assert not report
    failed = {p.label for p in report.pairs if not p}
    assert failed == {p.label for p in report.pairs if INT8 in p.label}
    assert all("over budget 1e-09" in line for line in report.failures)
    assert "quantization budget 1e-09 for the pairs of " + INT8 + " (given)" in (
        report.tolerance_note
    )
    assert _float_pairs(report) == _float_pairs(compare(path, frameworks=FRAMEWORKS, inputs=x))
    document = json.loads(report.to_json())
    assert document["quantization_budget"] == 1e-9
    int8_pairs = [p for p in document["pairs"] if p.get("kind") == "quantization"]
    assert {p["quantization_budget"] for p in int8_pairs} == {1e-9}
    assert "1e-09 (quantization budget)" in report.to_markdown()
    assert 'name="quantization_budget" value="1e-09"' in report.to_junit()


def test_a_budget_without_an_int8_graph_is_refused(tmp_path: Path):
    floats = dequantized_model(onnx.load_from_string(int8_stack(tmp_path)))
    with pytest.raises(UnsupportedFeatureError, match="quantization_budget: no int8 graph"):
        compare(floats, frameworks=["torch"], steps=3, quantization_budget=0.1)


@pytest.mark.parametrize("budget", [0.0, -1.0, float("nan"), float("inf")])
def test_a_budget_that_is_not_a_positive_number_is_refused(tmp_path: Path, budget: float):
    with pytest.raises(ValueError, match=r"quantization_budget: .* not a positive finite"):
        compare(tmp_path / "any.onnx", quantization_budget=budget)
