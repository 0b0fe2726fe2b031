"""TFLite: the rebuilt Keras model converted by TensorFlow's converter, run by LiteRT."""

from __future__ import annotations

import numpy as np
import pytest

from xframe_bilstm import compare
from xframe_bilstm.errors import UnsupportedFeatureError
from xframe_bilstm.frameworks import FRAMEWORKS
from xframe_bilstm.frameworks.tflite import convert, first_error_line
from xframe_bilstm.left_out import left_out
from xframe_bilstm.sources import read_source

pytest.importorskip("torch")
keras = pytest.importorskip("keras")
pytestmark = pytest.mark.skipif(
    not FRAMEWORKS["tflite"].available(), reason="pip install '.[tflite]'"
)


def _tflite_run(report):
    assert report, "\n".join([*report.lines(), *(f"{r.label}: {r.error}" for r in report.runs)])
    return next(run for run in report.runs if run.label == "tflite[cpu,float32]")


def test_a_bidirectional_lstm_with_states_and_lengths_agrees() -> None:
    layer = keras.layers.Bidirectional(
        keras.layers.LSTM(5, return_sequences=True, return_state=True)
    )
    layer(np.zeros((1, 4, 3), "float32"))
    report = compare(layer, frameworks=["tflite"], batch=3, steps=6, lengths=[6, 2, 4])
    run = _tflite_run(report)
    ops = str(run.settings["ops"]).split(", ")
    # Keras 3's LSTM is not fused: the recurrence stays a WHILE loop of builtin ops.
    assert run.settings["recurrence"] == "WHILE loop of builtin ops"
    assert "WHILE" in ops and "UNIDIRECTIONAL_SEQUENCE_LSTM" not in ops
    assert "from_concrete_functions at fixed shapes" in str(run.settings["converter"])
    assert "from_keras_model refused" in str(run.settings["converter"])


def test_a_gru_without_reset_after_agrees() -> None:
    model = keras.Sequential(
        [keras.Input((None, 3)), keras.layers.GRU(4, reset_after=False, return_sequences=True)]
    )
    _tflite_run(compare(model, frameworks=["tflite"], steps=7))


def test_a_masked_tagger_keeps_its_mask_inside_the_loop() -> None:
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(12, 4, mask_zero=True),
            keras.layers.Bidirectional(keras.layers.LSTM(5, return_sequences=True)),
            keras.layers.Dense(3),
        ]
    )
    tokens = np.array([[3, 1, 4, 0, 0], [1, 5, 9, 2, 6]], np.int32)
    run = _tflite_run(compare(model, frameworks=["tflite"], inputs=tokens))
    ops = str(run.settings["ops"]).split(", ")
    # The mask is computed from the token ids and selects between new and carried states.
    assert "NOT_EQUAL" in ops and any(op.startswith("SELECT") for op in ops)


def test_a_too_tight_tolerance_fails_and_float64_is_refused() -> None:
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.LSTM(4)])
    report = compare(model, frameworks=["tflite"], steps=5, rtol=0.0, atol=1e-15)
    assert not report
    assert any(line.startswith("FAILED | tflite[cpu,float32] vs") for line in report.lines())
    with pytest.raises(UnsupportedFeatureError, match=r"dtypes: \['float64'\] not offered"):
        compare(model, frameworks=["tflite"], dtypes=["float64"], steps=5)


def test_what_the_converter_cannot_convert_is_refused_with_its_first_error_line() -> None:
    tf = pytest.importorskip("tensorflow")
    x = keras.Input((4, 4))
    values = keras.layers.Lambda(lambda t: tf.linalg.svd(t, compute_uv=False))(x)
    model = keras.Model(x, values, name="with_svd")
    inputs = [np.ones((1, 4, 4), np.float32)]
    with pytest.raises(UnsupportedFeatureError) as refused:
        convert(model, inputs)
    message = str(refused.value)
    assert message.startswith("tflite: TensorFlow's converter cannot convert 'with_svd': ")
    assert "\n" not in message and "loc(" not in message


def test_first_error_line_drops_the_location() -> None:
    error = RuntimeError("x\nloc(fused[...]): error: 'tf.Svd' op is neither a custom op\nmore")
    assert first_error_line(error) == "'tf.Svd' op is neither a custom op"


def test_a_channels_first_convolution_is_left_out_by_name() -> None:
    x = keras.Input((13, 4), name="x")
    h = keras.layers.Conv1D(3, 2, data_format="channels_first", name="cf")(x)
    model = keras.Model(x, keras.layers.LSTM(2, name="lstm")(h), name="cf_model")
    why = left_out(read_source(model).reading, ["tflite"])["tflite"]
    assert "layer 'cf' (Conv1D)" in why and "channels_first" in why
    with pytest.raises(UnsupportedFeatureError, match=r"\['tflite'\] cannot run .*'cf'"):
        compare(model, frameworks=["tflite"], steps=13)
