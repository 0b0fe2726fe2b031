"""The reference of normalization and pooling layers against the real Keras layers, one
option that changes the math at a time, and TensorFlow's ``same`` padding by hand."""

from __future__ import annotations

import numpy as np
import pytest

from xframe_bilstm.reference.normpool import same_padding

keras = pytest.importorskip("keras")

from xframe_bilstm.comparison import derived_tolerance  # noqa: E402
from xframe_bilstm.inputs import example_inputs  # noqa: E402
from xframe_bilstm.models.live import graph_from_keras  # noqa: E402
from xframe_bilstm.reference import run_model_reference  # noqa: E402

from .. import normpool_models  # noqa: E402

pytestmark = [pytest.mark.keras]
CASES = sorted(normpool_models.layer_cases(keras))


@pytest.mark.parametrize("name", CASES)
def test_the_reference_computes_what_the_keras_layer_computes(name: str) -> None:
    model = normpool_models.layer_model(keras, name)
    graph = graph_from_keras(model)
    inputs = example_inputs(graph, batch=3, steps=7, seed=5)
    expected = np.asarray(model(inputs[0]))
    (actual,) = run_model_reference(graph, inputs)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=derived_tolerance(graph, inputs))


def test_same_padding_puts_the_odd_pad_at_the_end() -> None:
    # 5 steps, window 2, stride 2: 3 outputs need 6 steps, so one pad, after the input.
    assert same_padding(5, 2, 2) == (0, 1)
    # 7 steps, window 4, stride 3: 3 outputs cover 10 steps: one before, two after.
    assert same_padding(7, 4, 3) == (1, 2)
    assert same_padding(6, 2, 2) == (0, 0)


def test_a_same_average_leaves_the_padding_out_of_its_count() -> None:
    from xframe_bilstm.reference.normpool import pool

    x = np.array([[[1.0], [2.0], [4.0]]])  # (B=1, T=3, C=1)
    options = {
        "op": "average",
        "pool_size": (2,),
        "strides": (2,),
        "padding": "same",
        "data_format": "channels_last",
    }
    # Windows [1, 2] and [4, pad]: the second is 4, not 2.
    assert pool(options, x, np.float64)[0, :, 0].tolist() == [1.5, 4.0]
    maximum = pool({**options, "op": "max"}, -x, np.float64)
    assert maximum[0, :, 0].tolist() == [-1.0, -4.0]  # the padding is never the maximum
