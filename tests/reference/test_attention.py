"""The attention reference against independent computations: hand-derived cases, and
torch's own nn.MultiheadAttention with its weights laid out as Keras's."""

from __future__ import annotations

import numpy as np
import pytest

from xframe_bilstm.graph import LayerRecord
from xframe_bilstm.reference.attention import attention, multi_head_attention


def _attention(score: str, causal: bool = False, **weights: np.ndarray) -> LayerRecord:
    options = {"score": score, "use_causal_mask": causal}
    return LayerRecord("a", "attention", "Attention", ("q", "v"), options, weights)


def test_a_masked_value_step_takes_no_weight_and_a_masked_query_step_is_zero() -> None:
    q = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    v = np.array([[[2.0, 0.0], [0.0, 4.0], [9.0, 9.0]]])
    y = attention(
        _attention("dot"), [q, v], [np.array([[True, False]]), np.array([[1, 1, 0]])], np.float64
    )
    w = np.exp(2.0) / (np.exp(2.0) + 1.0)  # scores 2 and 0 on the two valid steps
    np.testing.assert_allclose(y[0, 0], [2.0 * w, 4.0 * (1 - w)])
    np.testing.assert_array_equal(y[0, 1], [0.0, 0.0])


def test_concat_and_additive_scores_by_hand() -> None:
    q, v = np.array([[[0.5]]]), np.array([[[1.0], [-1.0]]])
    scale, weight = np.asarray(2.0), np.asarray(3.0)
    concat = _attention("concat", scale=scale, concat_score_weight=weight)
    s = 3.0 * np.tanh(2.0 * np.array([1.5, -0.5]))
    expected = (np.exp(s) / np.exp(s).sum()) @ np.array([1.0, -1.0])
    np.testing.assert_allclose(
        attention(concat, [q, v], [None, None], np.float64)[0, 0, 0], expected
    )
    additive = _attention("additive", scale=np.array([2.0]))
    s = 2.0 * np.tanh(np.array([1.5, -0.5]))
    expected = (np.exp(s) / np.exp(s).sum()) @ np.array([1.0, -1.0])
    np.testing.assert_allclose(
        attention(additive, [q, v], [None, None], np.float64)[0, 0, 0], expected
    )


def test_a_causal_first_step_sees_only_itself() -> None:
    x = np.array([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]])
    y = attention(_attention("dot", causal=True), [x, x], [None, None], np.float64)
    np.testing.assert_allclose(y[0, 0], x[0, 0])


def test_multi_head_attention_is_torchs_with_the_weights_laid_out_as_keras() -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    embed, heads = 6, 2
    torch_mha = torch.nn.MultiheadAttention(embed, heads, batch_first=True).double()
    with torch.no_grad():
        torch_mha.in_proj_bias.normal_()
        torch_mha.out_proj.bias.normal_()
    x = torch.randn(2, 5, embed, dtype=torch.float64)
    valid = torch.tensor([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]], dtype=torch.bool)
    expected = torch_mha(x, x, x, key_padding_mask=~valid, need_weights=False)[0].detach()
    head_dim = embed // heads
    w = torch_mha.in_proj_weight.detach().numpy()
    b = torch_mha.in_proj_bias.detach().numpy()
    weights = {}
    for index, name in enumerate(("query", "key", "value")):
        rows = slice(index * embed, (index + 1) * embed)
        weights[f"{name}_kernel"] = w[rows].T.reshape(embed, heads, head_dim)
        weights[f"{name}_bias"] = b[rows].reshape(heads, head_dim)
    weights["output_kernel"] = (
        torch_mha.out_proj.weight.detach().numpy().T.reshape(heads, head_dim, embed)
    )
    weights["output_bias"] = torch_mha.out_proj.bias.detach().numpy()
    options = {
        "num_heads": heads,
        "key_dim": head_dim,
        "value_dim": head_dim,
        "use_causal_mask": False,
        "masked_rows": "uniform",
    }
    record = LayerRecord(
        "m", "multi_head_attention", "MultiHeadAttention", ("x", "x"), options, weights
    )
    mask = valid.numpy()
    # Keras masks the query's rows too; torch does not: the valid rows are the same.
    y = multi_head_attention(record, [x.numpy(), x.numpy()], [mask, mask], np.float64)
    np.testing.assert_allclose(y[mask], expected.numpy()[mask], rtol=0, atol=1e-12)
