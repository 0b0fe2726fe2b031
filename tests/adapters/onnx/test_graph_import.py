"""ONNX whole models (token ids in, Dense out) read as ModelGraphs and compared."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from tests.quantized_models import int8_tagger  # noqa: E402
from xframe_bilstm import compare  # noqa: E402
from xframe_bilstm.adapters.onnx.graph_import import graph_to_model, verify_model  # noqa: E402
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402

FRAMEWORKS = ["torch", "onnxruntime"]


class _Tagger(torch.nn.Module):
    def __init__(self, cell: str, bidirectional: bool, head: str, middle: Any = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embedding = torch.nn.Embedding(11, 4)
        rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
        self.rnn = rnn(4, 3, batch_first=True, bidirectional=bidirectional)
        self.linear = torch.nn.Linear(3 * (1 + bidirectional), 5)
        self.head, self.middle = head, middle

    def forward(self, tokens: Any) -> Any:
        y, _ = self.rnn(self.embedding(tokens))
        if self.middle is not None:
            y = self.middle(y)
        y = self.linear(y)
        return torch.softmax(y, dim=-1) if self.head == "softmax" else y


def _export(module: Any, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(), (torch.zeros(2, 6, dtype=torch.long),), str(path), dynamo=False,
            input_names=["tokens"], output_names=["out"],
            dynamic_axes={"tokens": {0: "batch", 1: "time"}},
        )  # fmt: skip
    return path


@pytest.mark.parametrize(
    ("cell", "bidirectional", "head"),
    [("lstm", True, "softmax"), ("gru", False, "linear")],
    ids=["bilstm-softmax", "gru-linear"],
)
def test_a_torch_export_compares_with_its_original(
    tmp_path: Path, cell: str, bidirectional: bool, head: str
):
    module = _Tagger(cell, bidirectional, head)
    path = _export(module, tmp_path / "tagger.onnx")
    model = graph_to_model(path)
    assert [r.kind for r in model.layers] == ["input", "embedding", "recurrent", "dense"]
    dense = model.layers[-1]
    assert dense.options["activation"] == head
    # The kernel and bias are the Linear's, read through the graph's MatMul and Add.
    np.testing.assert_allclose(dense.weights["kernel"], module.linear.weight.detach().numpy().T)
    np.testing.assert_allclose(dense.weights["bias"], module.linear.bias.detach().numpy())
    np.testing.assert_array_equal(
        model.layers[1].weights["embeddings"], module.embedding.weight.detach().numpy()
    )
    report = compare(path, frameworks=FRAMEWORKS)
    assert report, report.to_text()
    assert any("@original" in pair.label for pair in report.pairs)


def test_a_perturbed_export_fails_against_the_reading(tmp_path: Path):
    module = _Tagger("lstm", True, "softmax")
    model = graph_to_model(_export(module, tmp_path / "tagger.onnx"))
    with torch.no_grad():
        module.rnn.weight_hh_l0_reverse[0, 0] += 0.5
    perturbed = onnx.load(str(_export(module, tmp_path / "perturbed.onnx")))
    with pytest.raises(UnsupportedFeatureError, match="output 'out' differs"):
        verify_model(perturbed, model)


@pytest.mark.parametrize(
    "options",
    [{}, {"per_channel": True}, {"fused": True}, {"layers": 2}],
    ids=["int8", "per-channel", "fused", "two-layers"],
)
def test_the_int8_tagger_passes_compare_within_the_default_budget(
    tmp_path: Path, options: dict[str, Any]
):
    pytest.importorskip("onnxruntime.quantization")
    _, graph = int8_tagger(tmp_path, **options)
    report = compare(onnx.load_from_string(graph), frameworks=FRAMEWORKS)
    assert report, report.to_text()
    int8_pairs = [p for p in report.pairs if "int8" in p.label]
    assert int8_pairs and all(p.kind == "quantization" for p in int8_pairs)


def test_an_operator_outside_the_vocabulary_is_refused_by_name(tmp_path: Path):
    module = _Tagger("lstm", False, "linear", middle=lambda y: torch.cumsum(y, dim=1))
    path = _export(module, tmp_path / "cumsum.onnx")
    with pytest.raises(UnsupportedFeatureError, match="operator CumSum"):
        graph_to_model(path)
    with pytest.raises(UnsupportedFeatureError, match="operator CumSum"):
        compare(path, frameworks=FRAMEWORKS)


def test_an_int8_graph_neither_reading_accepts_is_refused_naming_quantization_error(
    tmp_path: Path,
):
    quantization = pytest.importorskip("onnxruntime.quantization")
    module = _Tagger("lstm", True, "linear", middle=lambda y: torch.cumsum(y, dim=1))
    path = _export(module, tmp_path / "cumsum.onnx")
    quantization.quantize_dynamic(
        str(path), str(tmp_path / "int8.onnx"), weight_type=quantization.QuantType.QInt8
    )
    with pytest.raises(
        UnsupportedFeatureError, match=r"int8 graph.*operator CumSum.*quantization_error\(graph\)"
    ):
        compare(tmp_path / "int8.onnx", frameworks=FRAMEWORKS)


def test_a_float_sequence_into_a_gru_and_a_linear_reads_with_no_embedding(tmp_path: Path):
    torch.manual_seed(1)

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = torch.nn.GRU(4, 3, batch_first=True)
            self.linear = torch.nn.Linear(3, 2)

        def forward(self, x: Any) -> Any:
            return torch.sigmoid(self.linear(self.rnn(x)[0]))

    path = tmp_path / "head.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Head().eval(), (torch.zeros(2, 6, 4),), str(path), dynamo=False,
            input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "batch", 1: "time"}},
        )  # fmt: skip
    model = graph_to_model(path)
    assert [r.kind for r in model.layers] == ["input", "recurrent", "dense"]
    assert model.layers[-1].options["activation"] == "sigmoid"
    report = compare(path, frameworks=FRAMEWORKS)
    assert report, report.to_text()
    assert any("@original" in pair.label for pair in report.pairs)
