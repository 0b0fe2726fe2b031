"""An ONNX file or ModelProto as a source of compare() and diagnose().

The graph is read as the importer reads it (``onnx_to_canonical(..., verify=False)``), and
every run of that reading is compared with the graph itself, run as given on onnxruntime
(``onnxruntime[cpu,float32]@original``), its outputs matched by meaning whatever layout the
exporter gave them.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from xframe_bilstm import compare, diagnose  # noqa: E402
from xframe_bilstm.adapters import onnx as onnx_adapter  # noqa: E402
from xframe_bilstm.canonical import RecurrentStack  # noqa: E402
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402
from xframe_bilstm.onnx_converters import onnx_to_canonical, to_onnx  # noqa: E402
from xframe_bilstm.sources import framework_of, read_source, source_type  # noqa: E402

pytestmark = [pytest.mark.onnx, pytest.mark.torch]

ORIGINAL = "onnxruntime[cpu,float32]@original"


def _export(module: Any, path: Path, x: Any, outputs: list[str], axes: dict | None) -> Path:
    """``torch.onnx.export(..., dynamo=False)``: the TorchScript exporter's graph."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its notes on batch_first and dynamic axes
        torch.onnx.export(
            module,
            (x,),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=outputs,
            dynamic_axes=axes,
        )
    return path


@pytest.fixture(scope="module")
def bilstm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A batch-first bidirectional LSTM and its export: ``output`` (B, T, 2H) batch-major,
    then the stacked ``h_n`` and ``c_n`` (2, B, H)."""
    torch.manual_seed(0)
    module = torch.nn.LSTM(3, 4, bidirectional=True, batch_first=True).eval()
    path = tmp_path_factory.mktemp("onnx-source") / "bilstm.onnx"
    axes = {"x": {0: "batch", 1: "time"}}
    return module, _export(module, path, torch.zeros(2, 5, 3), ["output", "h_n", "c_n"], axes)


@pytest.fixture(scope="module")
def gru(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A time-major two-layer GRU and its export: ``output`` (T, B, H), then ``h_n``."""
    torch.manual_seed(1)
    module = torch.nn.GRU(3, 5, num_layers=2).eval()
    path = tmp_path_factory.mktemp("onnx-source") / "gru.onnx"
    axes = {"x": {0: "time", 1: "batch"}}
    return module, _export(module, path, torch.zeros(5, 2, 3), ["output", "h_n"], axes)


def _explain(report: Any) -> str:
    return "\n".join([*report.lines(), *(f"{r.label}: {r.error}" for r in report.runs)])


def _original_pairs(report: Any) -> list[Any]:
    return [pair for pair in report.pairs if ORIGINAL in pair.label]


def _perturbed(module: Any, name: str) -> Any:
    """A copy of ``module`` with one weight of parameter ``name`` off by 0.5."""
    other = copy.deepcopy(module)
    with torch.no_grad():
        getattr(other, name)[3, 1] += 0.5
    return other


def test_a_torch_export_runs_as_given_beside_its_reading(bilstm: tuple[Any, Path]) -> None:
    _, path = bilstm
    report = compare(path, frameworks=["torch", "onnxruntime"], steps=9)
    labels = [run.label for run in report.runs]
    assert labels == [
        "reference[cpu,float64]",
        "torch[cpu,float32]",
        "onnxruntime[cpu,float32]",
        ORIGINAL,
    ], labels
    assert report, _explain(report)
    assert [pair.label for pair in _original_pairs(report)] == [
        f"{ORIGINAL} vs reference[cpu,float64]",
        f"torch[cpu,float32] vs {ORIGINAL}",
        f"onnxruntime[cpu,float32] vs {ORIGINAL}",
    ]
    assert report.source == f"ONNX {path} (lstm/bidirectional, units 4)"
    # torch's stacked h_n and c_n mean nothing the reading can tell: said, not compared.
    assert "h_n, c_n of ONNX" in report.correspondence
    assert "left out" in report.correspondence
    assert all(pair.comparison.arrays[0].name == "output" for pair in report.pairs)


def test_a_graph_of_fixed_sizes_is_compared_on_them(tmp_path: Path) -> None:
    """An export without dynamic axes takes one batch and one length: compare() draws them."""
    torch.manual_seed(2)
    module = torch.nn.LSTM(3, 4, batch_first=True).eval()
    path = _export(module, tmp_path / "fixed.onnx", torch.zeros(2, 6, 3), ["output"], None)
    report = compare(path, frameworks=["torch"])
    assert report, _explain(report)
    assert report.input_shape == (2, 6, 3)
    assert ORIGINAL in [run.label for run in report.runs]


def test_a_time_major_export_is_matched_by_meaning(gru: tuple[Any, Path]) -> None:
    """The graph takes (T, B, D) and returns (T, B, H): fed and read time-major, it agrees
    with every batch-major run; read as it stands its shape would not even match."""
    _, path = gru
    report = compare(path, frameworks=["torch"], batch=3, steps=8)
    assert report, _explain(report)
    pairs = _original_pairs(report)
    assert pairs and all(pair.comparison.arrays[0].shape == (3, 8, 5) for pair in pairs)
    assert "output ↔ output read time-major" in report.correspondence
    assert "h_n of ONNX" in report.correspondence


def test_our_export_with_states_and_lengths_gets_them_by_meaning(tmp_path: Path) -> None:
    """``to_onnx`` with initial states and lengths: the original is fed both, and computes
    what the reading computes with them (Keras's mask semantics at the padded steps)."""
    torch.manual_seed(2)
    path = tmp_path / "gru.onnx"
    to_onnx(torch.nn.GRU(3, 5, batch_first=True), path, with_initial_states=True, with_lengths=True)
    states = [np.random.default_rng(0).standard_normal((4, 5))]
    report = compare(
        path, frameworks=["torch"], steps=7, lengths=[7, 3, 5, 1], initial_states=states
    )
    assert report, _explain(report)
    assert any(ORIGINAL in pair.label for pair in report.pairs)
    assert report.correspondence == ""  # our export returns what the reading returns
    # Without the states, the graph's state input is fed zeros, as every other run starts.
    assert compare(path, frameworks=["torch"], steps=7), "zero states"


def test_what_the_graph_does_not_take_fails_its_original_saying_so(
    bilstm: tuple[Any, Path],
) -> None:
    """torch's export takes neither lengths nor (batch, units) initial states: the reading
    runs with them, the graph cannot, and its run says why."""
    _, path = bilstm
    states = [np.zeros((4, 4))] * 4
    for given, reason in (
        ({"lengths": [6, 2, 3, 1]}, "lengths: the graph has no lengths input"),
        ({"initial_states": states}, "initial_states: 4 arrays, where the graph takes 0"),
    ):
        report = compare(path, frameworks=["torch"], steps=6, **given)
        assert not report
        (error,) = [run.error for run in report.runs if run.label == ORIGINAL]
        assert error is not None and reason in error, error


def test_a_modelproto_and_its_path_read_the_same(bilstm: tuple[Any, Path]) -> None:
    _, path = bilstm
    proto = onnx.load(str(path))
    assert (source_type(path), source_type(proto)) == ("ONNX", "ONNX")
    assert framework_of(path) == framework_of(proto) == "canonical"
    from_path, from_proto = read_source(path), read_source(proto)
    assert from_path.framework == from_proto.framework == "onnxruntime"
    assert from_proto.original is not None and from_proto.original() is proto  # read once
    for a, b in zip(_arrays(from_path.reading), _arrays(from_proto.reading), strict=True):
        np.testing.assert_array_equal(a, b)
    assert _options(from_path.reading) == _options(from_proto.reading)
    report = compare(proto, frameworks=["torch"])
    assert report and ORIGINAL in [run.label for run in report.runs], _explain(report)
    assert report.source == "ONNX ModelProto (lstm/bidirectional, units 4)"


def _arrays(stack: Any) -> list[np.ndarray]:
    assert isinstance(stack, RecurrentStack)
    return [
        np.asarray(array)
        for layer in stack.layers
        for weights in layer.weights
        for array in (weights.kernel, weights.recurrent_kernel, weights.bias)
    ]


def _options(stack: RecurrentStack) -> list[tuple[Any, ...]]:
    return [
        (layer.cell, layer.direction, layer.merge_mode, stack.return_sequences)
        for layer in stack.layers
    ]


def test_against_the_exported_module_passes_and_a_perturbed_one_fails(
    bilstm: tuple[Any, Path],
) -> None:
    module, path = bilstm
    assert compare(path, against=module, frameworks=["torch"])
    report = compare(path, against=_perturbed(module, "weight_hh_l0_reverse"), frameworks=["torch"])
    assert not report
    failed = {pair.label for pair in report.pairs if not pair}
    assert failed == {
        "torch[cpu,float32]@against vs reference[cpu,float64]",
        "torch[cpu,float32]@against vs torch[cpu,float32]",
        f"torch[cpu,float32]@against vs {ORIGINAL}",
    }, _explain(report)
    # Only the backward direction holds the perturbed weight.
    worst = next(pair for pair in report.pairs if pair.label in failed)
    assert worst.directions["forward"] < 1e-6 < worst.directions["backward"]


def test_a_graph_is_compared_against_a_module(gru: tuple[Any, Path]) -> None:
    """``compare(module, against=path)``: the graph runs as given, in its own dtype."""
    module, path = gru
    report = compare(module, against=path, frameworks=["torch"], dtypes=["float64"])
    assert report, _explain(report)
    assert "onnxruntime[cpu,float32]@against" in [run.label for run in report.runs]
    assert not compare(_perturbed(module, "weight_ih_l1"), against=path, frameworks=["torch"])


def test_a_misread_graph_fails_on_its_original(
    bilstm: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every run but the original computes the reading: a misreading agrees with itself
    there, and only the graph as onnxruntime runs it catches it."""
    read = onnx_adapter.graph_to_canonical

    def misread(proto: Any) -> RecurrentStack:
        stack = read(proto)
        layer = stack.layers[0]
        kernel = np.array(layer.weights[0].kernel, copy=True)
        kernel[0, 0] += 0.25
        weights = (dataclasses.replace(layer.weights[0], kernel=kernel), *layer.weights[1:])
        return dataclasses.replace(stack, layers=(dataclasses.replace(layer, weights=weights),))

    monkeypatch.setattr(onnx_adapter, "graph_to_canonical", misread)
    _, path = bilstm
    report = compare(path, frameworks=["torch"])
    assert not report
    assert {pair.label for pair in report.pairs if not pair} == {
        f"{ORIGINAL} vs reference[cpu,float64]",
        f"torch[cpu,float32] vs {ORIGINAL}",
    }, _explain(report)


@pytest.mark.parametrize(
    ("module", "x", "refusal"),
    [
        (torch.nn.Linear(3, 2), torch.zeros(2, 3), "no LSTM, GRU or RNN node"),
    ],
    ids=["no-recurrent-node"],
)
def test_a_graph_the_importer_refuses_keeps_its_message(
    module: Any, x: Any, refusal: str, tmp_path: Path
) -> None:
    path = _export(module, tmp_path / "refused.onnx", x, ["y"], None)
    with pytest.raises(UnsupportedFeatureError) as expected:
        onnx_to_canonical(path, verify=False)
    with pytest.raises(UnsupportedFeatureError) as refused:
        compare(path)
    assert str(refused.value) == str(expected.value)
    assert refusal in str(refused.value)


def test_diagnose_takes_an_onnx_file(bilstm: tuple[Any, Path]) -> None:
    module, path = bilstm
    assert diagnose(path, module).code == "equivalent"
    assert diagnose(path, _perturbed(module, "weight_hh_l0_reverse")).code == "weights_differ"


@pytest.mark.keras
def test_every_installed_framework_runs_under_auto(bilstm: tuple[Any, Path]) -> None:
    pytest.importorskip("keras")
    _, path = bilstm
    report = compare(path, steps=6)
    labels = [run.label for run in report.runs]
    assert {"torch[cpu,float32]", "keras[cpu,float32]", "onnxruntime[cpu,float32]"} <= set(
        labels
    ), labels
    assert labels[-1] == ORIGINAL
    assert report, _explain(report)
