"""Canonical weights into native torch modules: numpy's copy of small parameters gives what
torch's copy of large ones gives, gate blocks in torch's order."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xframe_bilstm.adapters.torch import canonical_to_torch  # noqa: E402
from xframe_bilstm.adapters.torch import weights as torch_weights  # noqa: E402
from xframe_bilstm.factories import random_stack  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.mark.parametrize("cell", ["lstm", "gru", "simple_rnn"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_and_torch_copies_give_the_same_parameters(cell, dtype, monkeypatch) -> None:
    stack = random_stack(
        np.random.default_rng(3), cell, 7, 5, num_layers=2, direction="bidirectional", dtype=dtype
    )
    by_numpy = canonical_to_torch(stack).state_dict()
    monkeypatch.setattr(torch_weights, "NUMPY_COPY_ELEMENTS", 0)  # every parameter by torch
    by_torch = canonical_to_torch(stack).state_dict()
    assert by_numpy.keys() == by_torch.keys()
    for name, tensor in by_numpy.items():
        assert torch.equal(tensor, by_torch[name]), name


def test_lstm_gate_blocks_land_in_torch_order() -> None:
    # Keras's kernel blocks are i, f, c, o; torch's weight_ih rows are i, f, g(=c), o.
    stack = random_stack(np.random.default_rng(4), "lstm", 3, 2, dtype=np.float32)
    kernel = stack.layers[0].weights[0].kernel  # canonical (D, 4H), Keras's layout
    rows = canonical_to_torch(stack).state_dict()
    weight = next(tensor for name, tensor in rows.items() if name.endswith("weight_ih_l0"))
    blocks = np.split(kernel.T, 4)  # i, f, c, o
    assert np.array_equal(weight.numpy(), np.concatenate(blocks))
