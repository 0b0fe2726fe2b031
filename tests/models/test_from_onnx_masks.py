"""torch.onnx exports of models that compute from the token ids themselves, read through the
module that runs their nodes: self-attention masked where the ids are padding
(``Equal``, ``Where`` with a constant fill), and each row's last valid step gathered at a
position counted from the ids (``Not``, ``Cast``, ``ReduceSum``, ``Sub``,
``GatherElements``). Expected values come from onnxruntime on the exported graph, on ids
padded with zeros, where the masks decide the outputs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from xframe_bilstm import compare, onnx_to_keras  # noqa: E402
from xframe_bilstm.sources import read_source  # noqa: E402

from ..onnx_exports import torch_export  # noqa: E402

pytestmark = pytest.mark.torch
nn, F = torch.nn, torch.nn.functional
VOCAB = 20


class MaskedAttention(nn.Module):
    """Embedding → BiLSTM → dot-product self-attention, padding masked → Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 6, padding_idx=0)
        self.lstm = nn.LSTM(6, 4, bidirectional=True, batch_first=True)
        self.out = nn.Linear(16, 3)

    def forward(self, ids: Any) -> Any:
        hidden, _ = self.lstm(self.embedding(ids))
        scores = hidden @ hidden.transpose(1, 2) / math.sqrt(8)
        scores = scores.masked_fill((ids == 0).unsqueeze(1), -1e9)
        context = F.softmax(scores, dim=-1) @ hidden
        return self.out(torch.cat([hidden, context], dim=-1))


class LastStep(nn.Module):
    """Embedding → LSTM → each row's output at its last non-padding id → Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 6)
        self.lstm = nn.LSTM(6, 5, batch_first=True)
        self.fc = nn.Linear(5, 3)

    def forward(self, ids: Any) -> Any:
        out, _ = self.lstm(self.embedding(ids))
        last = ((ids != 0).sum(dim=1) - 1).view(-1, 1, 1).expand(-1, 1, out.size(2))
        return self.fc(out.gather(1, last).squeeze(1))


MODELS = {"attention": (MaskedAttention, "where"), "last_step": (LastStep, "gather")}


def _ids(steps: int) -> np.ndarray:
    ids = np.random.default_rng(steps).integers(1, VOCAB, (3, steps))
    ids[1, steps - 3 :] = 0  # padding: the masks decide these rows
    ids[2, steps // 2 :] = 0
    return ids.astype(np.int64)


@pytest.fixture(scope="module", params=sorted(MODELS))
def exported(request: Any, tmp_path_factory: Any) -> tuple[str, Path]:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx"
    module = MODELS[request.param][0]().eval()
    torch_export(module, torch.from_numpy(_ids(8)), {0: "b", 1: "t"}, path=path, opset=17)
    return request.param, path


def test_the_mask_is_read_from_the_ids_and_compares(exported: tuple[str, Path]) -> None:
    name, path = exported
    layers = read_source(path).reading.layers
    assert {"recurrent", "where", MODELS[name][1]} <= {record.kind for record in layers}
    held = [r.weights["value"] for r in layers if r.kind == "weight_op"]
    assert all(value.size > 1 for value in held)  # ids == 0, count - 1: numbers, not tensors
    report = compare(path, inputs=_ids(11), frameworks=["torch", "keras", "onnxruntime"])
    assert report, report.lines()
    assert "onnxruntime[cpu,float32]@original" in {pair.expected for pair in report.pairs}


def test_onnx_to_keras_masks_as_the_graph_does(exported: tuple[str, Path]) -> None:
    _, path = exported
    model = onnx_to_keras(path)  # checked against onnxruntime on the graph
    ids = _ids(13)
    (expected,) = ort.InferenceSession(str(path)).run(None, {"x": ids})
    unmasked = ids.copy()
    unmasked[unmasked == 0] = 1
    (otherwise,) = ort.InferenceSession(str(path)).run(None, {"x": unmasked})
    assert not np.allclose(expected, otherwise)  # the padding decides the outputs
    np.testing.assert_allclose(np.asarray(model(ids)), expected, atol=1e-5)
