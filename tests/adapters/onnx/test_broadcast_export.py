"""``broadcast`` records (a held tensor repeated over the batch) in a whole-model ONNX
export, beyond tests/reference/test_broadcast.py: token ids giving the batch, float16, and
the export read back by ``onnx_to_torch``.

Expected values come from the float64 reference.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from xframe_bilstm.adapters.onnx.graph_export import GRAPH_OPSET, graph_to_onnx  # noqa: E402
from xframe_bilstm.reference.graph import run_model_reference  # noqa: E402

from ...broadcast_models import IDS, ids_graph  # noqa: E402

pytestmark = pytest.mark.onnx


@pytest.mark.parametrize(("dtype", "atol"), [("float32", 1e-6), ("float16", 2e-3)])
def test_token_ids_give_the_batch_of_each_held_value(dtype: str, atol: float) -> None:
    graph = ids_graph()
    model = graph_to_onnx(graph, opset=GRAPH_OPSET, dtype=dtype)
    onnx.checker.check_model(model, full_check=True)
    nodes = model.graph.node
    assert len([node for node in nodes if node.op_type == "Expand"]) == 3
    assert [node.input for node in nodes if node.op_type == "Shape"] == [["ids"]] * 3
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"ids": IDS.astype(np.int64)})
    assert [value.shape for value in got] == [(3, 4), (3, 2, 3), (3,)]
    for value, want in zip(got, run_model_reference(graph, [IDS]), strict=True):
        assert value.dtype == np.dtype(dtype)
        np.testing.assert_allclose(value.astype(np.float64), want, rtol=0, atol=atol)


@pytest.mark.torch
def test_onnx_to_torch_runs_the_export() -> None:
    torch = pytest.importorskip("torch")
    from xframe_bilstm import onnx_to_torch

    graph = ids_graph()
    module = onnx_to_torch(graph_to_onnx(graph, opset=GRAPH_OPSET))
    got = module(torch.tensor(IDS))
    for value, want in zip(got, run_model_reference(graph, [IDS]), strict=True):
        np.testing.assert_allclose(value.detach().numpy(), want, rtol=0, atol=1e-6)
