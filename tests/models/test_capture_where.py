"""Padding masks written in a captured forward: ``masked_fill``/``torch.where`` with a number.

Expected values come from the module itself, ``module(x)``, run by torch, and from Keras
running the saved file it loads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import (  # noqa: E402
    UnsupportedFeatureError,
    compare,
    keras_to_torch,
    torch_to_keras,
)

from .every_framework import assert_agrees_everywhere  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn = torch.nn
# Right-padded, left-padded and full rows; every row keeps one token, so -inf scores
# never fill a whole softmax row.
IDS = np.array([[3, 4, 5, 6, 0, 0, 0], [0, 0, 7, 8, 9, 1, 2], [5, 6, 7, 8, 9, 10, 11]])


def _masked(scores: torch.Tensor, ids: torch.Tensor, style: str) -> torch.Tensor:
    mask = ids != 0
    if style == "eq0":
        return scores.masked_fill(mask.unsqueeze(1) == 0, -1e9)
    if style == "not":
        return scores.masked_fill(~mask[:, None, :], float("-inf"))
    if style == "where":
        return torch.where(mask.unsqueeze(1), scores, float("-inf"))
    if style == "none":
        return scores
    if style == "ne":
        return torch.where(ids.ne(0).unsqueeze(-2), scores, -1e4)
    return torch.where(ids.unsqueeze(1) == 0, -1e9, scores)  # the fill first


class Diacritizer(nn.Module):
    """Character ids, a BiLSTM, masked scaled dot-product self-attention, a Linear per step."""

    def __init__(self, style: str = "eq0") -> None:
        super().__init__()
        torch.manual_seed(14)
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


@pytest.mark.parametrize("style", ["eq0", "not", "where", "ne", "fill_first"])
def test_padding_masks_of_hand_written_attention_are_read(style: str) -> None:
    module = Diacritizer(style)
    model = torch_to_keras(module)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("Where") == 1
    got = np.asarray(model(IDS))
    assert np.abs(got - _expected(module, IDS)).max() < 1e-5
    assert np.isfinite(got).all() and got.shape == (3, 7, 7)


def test_the_mask_is_not_left_out() -> None:
    """The same module without its mask computes other outputs on the padded rows."""
    masked, unmasked = Diacritizer("eq0"), Diacritizer("none")
    model = torch_to_keras(masked)
    got, without = np.asarray(model(IDS)), _expected(unmasked, IDS)
    assert np.abs(got[:2] - without[:2]).max() > 1e-3
    assert np.abs(got[2] - without[2]).max() < 1e-5  # the full row has nothing to mask


class Thresholded(nn.Module):
    """A mask from a float tensor of the model itself: the LSTM's outputs over 0.1."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(15)
        self.lstm = nn.LSTM(4, 6, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lstm(x)[0]
        return out.masked_fill(out > 0.1, 0.0).sum(1)


def test_a_mask_of_a_float_tensor_is_read() -> None:
    module = Thresholded()
    x = np.random.default_rng(6).standard_normal((3, 8, 4)).astype("float32")
    model = torch_to_keras(module)
    expected = _expected(module, x)
    assert np.abs(np.asarray(model(x)) - expected).max() < 1e-5
    # Hand-derived: the sum keeps only the outputs at or under 0.1.
    with torch.no_grad():
        out = module.lstm(torch.from_numpy(x))[0].numpy()
    assert np.abs(np.where(out > 0.1, 0.0, out).sum(1) - expected).max() < 1e-5


def test_compare_passes_on_the_masked_attention_model() -> None:
    report = compare(Diacritizer("not"), frameworks=["torch", "keras", "onnxruntime"])
    assert bool(report), "\n".join(report.lines())
    assert any("@original" in line for line in report.lines())


def test_saved_keras_file_reads_the_same(tmp_path: Path) -> None:
    module = Diacritizer("not")
    model = torch_to_keras(module)
    path = tmp_path / "diacritizer.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    expected = _expected(module, IDS)
    assert np.abs(np.asarray(loaded(IDS)) - expected).max() < 1e-5
    port = keras_to_torch(path)
    with torch.no_grad():
        ported = port(torch.from_numpy(IDS)).numpy()
    assert np.abs(ported - expected).max() < 1e-5


class MaskedSum(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.lstm = nn.LSTM(4, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lstm(x)[0]
        valid = x.sum(-1) > 0
        if self.how == "float":  # torch promotes the mask to the output's dtype
            return (out * valid.unsqueeze(-1)).sum(1) / valid.sum(1, keepdim=True).clamp(min=1)
        if self.how == "tensor_fill":
            return torch.where(valid.unsqueeze(-1), out, out.mean()).sum(1)
        if self.how == "returned":
            return out.sum(1), valid
        if self.how == "xor":
            return out.masked_fill((valid ^ (x[..., 0] > 1)).unsqueeze(-1), 0.0).sum(1)
        return out.masked_fill(valid.unsqueeze(-1) == 2, 0.0).sum(1)


@pytest.mark.parametrize(
    ("how", "refused"),
    [
        ("tensor_fill", "applies aten.where with two tensors"),
        ("xor", "applies aten.__xor__ to a boolean mask"),
        ("returned", "returns a boolean mask (read only by masked_fill"),
        ("two", "applies aten.eq to a boolean mask with 2"),
    ],
)
def test_other_uses_of_a_mask_are_refused_by_name(how: str, refused: str) -> None:
    with pytest.raises(UnsupportedFeatureError) as caught:
        torch_to_keras(MaskedSum(how), verify=False)
    message = str(caught.value)
    assert refused in message
    if how != "returned":  # a returned value has no line of its own
        assert "test_capture_where.py:" in message


class MaskedMean(nn.Module):
    """A sentence classifier's masked mean over time, from the token ids' padding mask made
    numbers (``mask.float()``, ``torch.where(mask, 1.0, 0.0)``, ``mask.long()``), as real
    models pool."""

    def __init__(self, how: str) -> None:
        super().__init__()
        torch.manual_seed(41)
        self.how = how
        self.emb = nn.Embedding(12, 4, padding_idx=0)
        self.lstm = nn.LSTM(4, 5, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(10, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.emb(ids))
        if self.how == "float":
            mask = (ids != 0).float()
        elif self.how == "where":
            mask = torch.where((ids > 0) & (ids != 11), 1.0, 0.0)
        elif self.how == "long":  # counted as integers, as ONNX writes (ids != 0).sum(1)
            mask = (ids != 0).long()
        else:  # the mask made numbers after it gained the features' axis
            mask = (ids != 0).unsqueeze(-1).to(h.dtype).squeeze(-1)
        pooled = (h * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        return self.fc(pooled)


def test_a_mask_read_by_arithmetic_and_sums_is_its_numbers() -> None:
    module = MaskedSum("float").eval()
    model = torch_to_keras(module)  # verified against module(x)
    x = np.random.default_rng(4).standard_normal((3, 6, 4)).astype("float32")
    x[0, 4:] = -1.0  # steps whose features sum below 0: masked
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=1e-6, atol=2e-6)
    assert_agrees_everywhere(module, inputs=x)


@pytest.mark.parametrize("how", ["float", "where", "long", "unsqueezed"])
def test_a_mask_made_numbers_pools_as_the_module_does(how: str, tmp_path: Path) -> None:
    module = MaskedMean(how).eval()
    model = torch_to_keras(module)  # verified against module(ids)
    with torch.no_grad():
        expected = module(torch.from_numpy(IDS)).numpy()
    np.testing.assert_allclose(np.asarray(model(IDS.astype("int32"))), expected, atol=1e-5)
    model.save(tmp_path / "pooled.keras")
    port = keras_to_torch(tmp_path / "pooled.keras")  # read back, verified against Keras
    with torch.no_grad():
        np.testing.assert_allclose(port(torch.from_numpy(IDS)).numpy(), expected, atol=1e-5)
    assert_agrees_everywhere(module, inputs=IDS)
