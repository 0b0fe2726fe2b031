"""The torch port of a packed sequence (``lengths_mask``, ``end_mask``) beyond a recurrent
layer under it: the mask reaching other layers, the inputs it takes, and ``torch.export``.

Expected values come from the float64 reference.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xframe_bilstm.models.to_torch import build_torch  # noqa: E402
from xframe_bilstm.reference.graph import run_model_reference  # noqa: E402

from ..packed_models import LENGTHS, X, packed_lstm, pooled  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.mark.parametrize("ended", [False, True])
def test_the_lengths_mask_reaches_a_pooling_layer_until_end_mask(ended: bool) -> None:
    graph = pooled(ended=ended)
    got = build_torch(graph)(torch.tensor(X), torch.tensor(LENGTHS))
    expected = (
        X.mean(axis=1)
        if ended
        else np.stack([X[b, :n].mean(axis=0) for b, n in enumerate(LENGTHS)])
    )
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.numpy(), run_model_reference(graph, [X, LENGTHS])[0], atol=1e-12)


def test_int32_lengths_are_read_as_given() -> None:
    graph = packed_lstm()
    port = build_torch(graph)  # float64 parameters
    got = port(torch.tensor(X), torch.tensor(LENGTHS, dtype=torch.int32))
    for value, want in zip(got, run_model_reference(graph, [X, LENGTHS])):
        np.testing.assert_allclose(value.detach().numpy(), want, rtol=0, atol=1e-12)


def test_the_port_traces_with_torch_export_for_any_batch() -> None:
    graph = packed_lstm()
    port = build_torch(graph)
    batch = torch.export.Dim("batch", min=2)
    traced = torch.export.export(
        port, (torch.tensor(X), torch.tensor(LENGTHS)), dynamic_shapes=(({0: batch}, {0: batch}),)
    ).module()
    x, lengths = np.random.default_rng(2).standard_normal((4, 5, 2)), np.array([1, 5, 4, 2])
    got = traced(torch.tensor(x), torch.tensor(lengths))
    for value, want in zip(got, run_model_reference(graph, [x, lengths])):
        np.testing.assert_allclose(value.detach().numpy(), want, rtol=0, atol=1e-12)
