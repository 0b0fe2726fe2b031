"""Masked recurrent layers of a whole-model port against the float64 reference loop, for
masks of every pattern (right and left padding, holes, empty rows); and torch.export."""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xframe_bilstm.adapters.torch.steps import compact  # noqa: E402
from xframe_bilstm.comparison import Noise  # noqa: E402
from xframe_bilstm.factories import random_layer, tagger_graph  # noqa: E402
from xframe_bilstm.graph import ModelGraph  # noqa: E402
from xframe_bilstm.models.recurrent import Recurrent  # noqa: E402
from xframe_bilstm.models.to_torch import build_torch  # noqa: E402
from xframe_bilstm.reference import run_model_reference  # noqa: E402
from xframe_bilstm.reference.scan import run_layer as _run_layer  # noqa: E402

pytestmark = pytest.mark.torch

MASK = np.array(
    [
        [1, 1, 1, 1, 1, 1],  # full
        [1, 1, 1, 0, 0, 0],  # right padding
        [0, 0, 1, 1, 1, 1],  # left padding
        [1, 0, 1, 1, 0, 1],  # holes
        [0, 0, 0, 0, 0, 0],  # empty
    ],
    dtype=bool,
)

LAYERS = [
    pytest.param(cell, direction, activation, zero, id=f"{cell}-{direction}-{activation}-{zero}")
    for cell, direction, activation, zero in itertools.product(
        ("lstm", "gru", "simple_rnn"),
        ("forward", "backward", "bidirectional"),
        ("tanh", "hard_sigmoid_keras2"),
        ("carry", "zero"),
    )
    if not (direction == "bidirectional" and zero == "zero")
]


def make_layer(cell: str, direction: str, activation: str, zero: str):
    # crc32, not hash(): str hashes change with every interpreter run (PYTHONHASHSEED), and
    # a failure must come back with the same weights.
    rng = np.random.default_rng(zlib.crc32(f"{cell}-{direction}-{activation}-{zero}".encode()))
    gate = None if cell == "simple_rnn" else activation
    return random_layer(
        rng,
        cell,
        3,
        4,
        direction=direction,
        activation="tanh",
        recurrent_activation=gate,
        zero_masked_outputs=zero == "zero",
        merge_mode="concat",
        dtype=np.float32,
    )


@pytest.mark.parametrize("return_sequences", [True, False], ids=["sequences", "last"])
@pytest.mark.parametrize(("cell", "direction", "activation", "zero"), LAYERS)
def test_masked_layer_matches_the_reference_loop(
    cell, direction, activation, zero, return_sequences
) -> None:
    layer = make_layer(cell, direction, activation, zero)
    x = np.random.default_rng(1).standard_normal((5, 6, 3)).astype(np.float32)
    states = [np.zeros((5, 4))] * (len(layer.weights) * (2 if cell == "lstm" else 1))
    (expected,), _ = _run_layer(
        layer,
        x.astype(np.float64),
        states,
        MASK,
        return_sequences=return_sequences,
        dtype=np.float64,
    )
    (rounded,), _ = _run_layer(
        layer,
        x,
        [s.astype(np.float32) for s in states],
        MASK,
        return_sequences=return_sequences,
        dtype=np.float32,
    )
    module = Recurrent(layer, return_sequences=return_sequences)
    with torch.no_grad():
        actual = module(torch.from_numpy(x), torch.from_numpy(MASK)).numpy()
    noise = Noise(float(np.abs(rounded - expected).max()), max(float(np.abs(expected).max()), 1))
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=noise.tolerance())


def test_unmasked_and_all_true_mask_agree() -> None:
    layer = make_layer("lstm", "bidirectional", "tanh", "carry")
    module = Recurrent(layer, return_sequences=True)
    x = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = module(x)
        masked = module(x, torch.ones(2, 5, dtype=torch.bool))
    torch.testing.assert_close(plain, masked, rtol=0, atol=1e-6)


def test_compaction_moves_valid_steps_first_in_order() -> None:
    destination, _, lengths = compact(torch.from_numpy(MASK))
    assert lengths.tolist() == [6, 3, 4, 4, 0]
    assert destination[3].tolist() == [0, 4, 1, 2, 5, 3]
    assert sorted(destination[4].tolist()) == list(range(6))


def _classifier_graph() -> ModelGraph:
    rng = np.random.default_rng(5)
    layer = make_layer("lstm", "bidirectional", "tanh", "carry")
    embeddings = rng.standard_normal((12, 3)).astype(np.float32)
    kernel = rng.standard_normal((8, 2)).astype(np.float32)
    bias = np.zeros(2, np.float32)
    return tagger_graph(
        embeddings, layer, kernel, bias, return_sequences=False, activation="softmax"
    )


def test_whole_model_exports_with_masks_and_dynamic_shapes() -> None:
    graph = _classifier_graph()
    model = build_torch(graph).eval()
    ids = torch.from_numpy(np.where(MASK, np.arange(1, 7), 0)).long()
    # The recurrent kernels unroll over time when traced: the batch stays dynamic, the
    # number of steps is fixed by the example (pad to that length).
    batch = torch.export.Dim("batch", min=2)
    # forward(*inputs): one entry for the varargs tuple, holding one spec per input.
    exported = torch.export.export(model, (ids,), dynamic_shapes=(({0: batch},),))
    other = torch.randint(0, 12, (3, 6), generator=torch.Generator().manual_seed(1))
    other[0, 4:] = 0
    other[1, :2] = 0
    for inputs in (ids, other):
        with torch.no_grad():
            torch.testing.assert_close(exported.module()(inputs), model(inputs))
    expected = run_model_reference(graph, [ids.numpy()])[0]
    np.testing.assert_allclose(model(ids).detach().numpy(), expected, atol=1e-5, rtol=0)
