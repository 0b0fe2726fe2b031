"""Masks built from several comparisons: ``&``, ``|``, ``~`` and ``torch.logical_*``.

Expected values come from the module itself, ``module(x)``, run by torch, from Keras running
the file it saves and from onnxruntime running the exported graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
onnxruntime = pytest.importorskip("onnxruntime")

from xframe_bilstm import (  # noqa: E402
    UnsupportedFeatureError,
    compare,
    keras_to_torch,
    to_onnx,
    torch_to_keras,
)

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn = torch.nn
# Right-padded with 0, a second pad id 2, left-padded and full rows; every row keeps a token.
IDS = np.array([[3, 4, 5, 6, 0, 0, 0], [2, 2, 7, 8, 9, 1, 3], [5, 6, 7, 8, 9, 10, 11]])


def _masked(scores: torch.Tensor, ids: torch.Tensor, style: str) -> torch.Tensor:
    keep = (ids != 0) & (ids != 2)
    if style == "and":
        return scores.masked_fill(~keep.unsqueeze(1), float("-inf"))
    if style == "or":
        pad = (ids == 0) | (ids == 2)
        return scores.masked_fill(pad.unsqueeze(1), -1e9)
    if style == "logical":
        pad = torch.logical_or(ids.eq(0), torch.logical_and(ids.lt(3), ids.gt(1)))
        return torch.where(torch.logical_not(pad)[:, None, :], scores, -1e9)
    if style == "square":  # both the query's and the key's token kept
        square = keep.unsqueeze(1) & keep.unsqueeze(2)
        return scores.masked_fill(square == 0, -1e4)
    return scores


class Diacritizer(nn.Module):
    """Character ids, a BiLSTM, self-attention masked on two pad ids, a Linear per step."""

    def __init__(self, style: str) -> None:
        super().__init__()
        torch.manual_seed(21)
        self.style = style
        self.emb = nn.Embedding(30, 6, padding_idx=0)
        self.lstm = nn.LSTM(6, 5, batch_first=True, bidirectional=True)
        self.out = nn.Linear(20, 7)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.emb(ids))
        scores = _masked(h @ h.transpose(1, 2) / 10**0.5, ids, self.style)
        context = torch.softmax(scores, dim=-1) @ h
        return self.out(torch.cat([h, context], dim=-1))


def _expected(module: nn.Module, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module.eval()(torch.from_numpy(ids)).numpy()


STYLES = ["and", "or", "logical", "square"]


@pytest.mark.parametrize("style", STYLES)
def test_combined_masks_are_read(style: str, tmp_path: Path) -> None:
    module = Diacritizer(style)
    expected = _expected(module, IDS)
    model = torch_to_keras(module)
    assert [type(layer).__name__ for layer in model.layers].count("Where") == 1
    assert np.abs(np.asarray(model(IDS)) - expected).max() < 1e-5
    path = tmp_path / "diacritizer.keras"
    model.save(path)
    assert np.abs(np.asarray(keras.saving.load_model(path)(IDS)) - expected).max() < 1e-5
    with torch.no_grad():
        ported = keras_to_torch(path)(torch.from_numpy(IDS)).numpy()
    assert np.abs(ported - expected).max() < 1e-5


def test_the_second_pad_id_is_masked() -> None:
    """Masking only id 0 computes other outputs on the row padded with 2."""
    both, none = Diacritizer("and"), Diacritizer("none")
    got = np.asarray(torch_to_keras(both)(IDS))
    assert np.abs(got[1] - _expected(none, IDS)[1]).max() > 1e-3
    assert np.abs(got[2] - _expected(none, IDS)[2]).max() < 1e-5  # nothing to mask


@pytest.mark.parametrize("style", ["logical", "square"])
def test_to_onnx_writes_standard_and_or_not(style: str) -> None:
    module = Diacritizer(style)
    graph = to_onnx(module)
    ops = {node.op_type for node in graph.graph.node}
    assert "Or" in ops and ("And" in ops) == (style == "logical")
    session = onnxruntime.InferenceSession(graph.SerializeToString())
    name = session.get_inputs()[0].name
    ids = IDS.astype(np.int64) if "int64" in session.get_inputs()[0].type else IDS
    got = session.run(None, {name: ids})[0]
    assert np.abs(got - _expected(module, IDS)).max() < 1e-5


def test_compare_passes_on_a_combined_mask() -> None:
    report = compare(Diacritizer("or"), frameworks=["torch", "keras", "onnxruntime"])
    assert bool(report), "\n".join(report.lines())


class Mixed(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.lstm = nn.LSTM(4, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lstm(x)[0]
        valid = x.sum(-1) > 0
        if self.how == "tensor":
            return out.masked_fill(valid.unsqueeze(-1) & (out > 0).any(-1, keepdim=True), 0.0).sum(
                1
            )
        return out.masked_fill(torch.logical_xor(valid, x[..., 0] > 1).unsqueeze(-1), 0.0).sum(1)


@pytest.mark.parametrize(
    ("how", "refused"),
    [
        ("tensor", "applies aten.__and__ to a boolean mask and something that is not one"),
        ("xor", "applies aten.logical_xor to a boolean mask"),
    ],
)
def test_other_combinations_are_refused_by_name(how: str, refused: str) -> None:
    with pytest.raises(UnsupportedFeatureError) as caught:
        torch_to_keras(Mixed(how), verify=False)
    assert refused in str(caught.value)
    assert "test_capture_where_combined.py:" in str(caught.value)
