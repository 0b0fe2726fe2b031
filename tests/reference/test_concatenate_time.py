"""Masked sequences concatenated over their steps: the joined mask is theirs one after the
other, as Keras 3 computes it. Checked against Keras's own run of the model."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import compare  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]


def test_sequences_joined_over_time_keep_their_masks() -> None:
    first, second = keras.Input((None, 3)), keras.Input((None, 3))
    joined = keras.layers.Concatenate(axis=1)(
        [keras.layers.Masking(0.0)(first), keras.layers.Masking(0.0)(second)]
    )
    model = keras.Model([first, second], keras.layers.LSTM(4, return_sequences=True)(joined))
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 3, 3))
    a[1, 2:], b[0, 1:] = 0.0, 0.0  # padded steps inside the joined sequence
    report = compare(model, inputs=[a, b], frameworks=["torch", "keras"])
    assert report, "\n".join(report.lines())
