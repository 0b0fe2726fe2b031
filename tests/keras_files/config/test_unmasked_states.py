"""Keras 3 runs a recurrent layer called with ``initial_state=`` over every step: it hands a
layer its input's mask only when the call reads one tensor. The model is read so, and every
port computes what Keras computes (the expected values are Keras's own run)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import compare, keras_to_torch  # noqa: E402
from xframe_bilstm.models.live import graph_from_keras  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

X = np.random.default_rng(0).standard_normal((2, 5, 3)).astype("float32")
X[1, 3:] = 0.0  # row 1 padded after 3 steps
STATES = [np.ones((2, 4), "float32"), np.full((2, 4), 0.5, "float32")]


def _model(explicit_mask: bool) -> keras.Model:
    x, h, c = keras.Input((None, 3)), keras.Input((4,)), keras.Input((4,))
    masked = keras.layers.Masking(0.0)(x)
    lstm = keras.layers.LSTM(4, return_sequences=True, name="lstm")
    mask = masked._keras_mask if explicit_mask else None
    return keras.Model([x, h, c], lstm(masked, initial_state=[h, c], mask=mask))


@pytest.mark.parametrize("explicit_mask", [False, True])
def test_a_recurrent_layer_given_states_runs_as_keras_runs_it(explicit_mask: bool) -> None:
    model = _model(explicit_mask)
    expected = np.asarray(model([X, *STATES]))
    carried = np.allclose(expected[1, 3:], expected[1, 2])  # the masked steps repeat step 2
    assert carried == explicit_mask
    graph = graph_from_keras(model)
    assert ("lstm_unmasked" in [r.name for r in graph.layers]) != explicit_mask
    report = compare(model, inputs=[X, *STATES], frameworks=["torch", "keras", "onnxruntime"])
    assert report, "\n".join(report.lines())
    port = keras_to_torch(model)
    import torch

    got = port(*(torch.as_tensor(a) for a in (X, *STATES)))
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=0, atol=2e-6)
