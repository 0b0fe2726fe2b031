"""Make the tf2onnx graphs that ``tests/adapters/onnx/test_tf2onnx_graphs.py`` reads.

Each case is a tiny Keras model (3 input features, 2 to 4 units, seeded random weights and
biases) exported by tf2onnx as users export it: Keras 3's ``model.export(format="onnx")``
(which calls tf2onnx on the TensorFlow backend) and, for ``tfk_*`` cases, a tf_keras (Keras 2)
model through ``tf2onnx.convert.from_keras``. Next to each ``<case>.onnx`` it writes
``<case>.npz``: a seeded input ``x`` and what the Keras model itself returned on it
(``output_0``, ...), so the tests check every reading against Keras, not only against
onnxruntime.

tf2onnx is not a dependency of the package or of its tests (installed, it adds a
``keras-onnx`` column to every ``compare()``), so install it apart and rerun from the
repository root::

    pip install --target /tmp/tf2onnx-pkgs --no-deps tf2onnx==1.17.0
    PYTHONPATH=/tmp/tf2onnx-pkgs:$PWD python tests/data/tf2onnx/make_graphs.py

Made with tf2onnx 1.17.0, TensorFlow 2.21, Keras 3.15 and tf_keras 2.21 (opset 15). Which
layers tf2onnx writes as native nodes and which as a ``Loop`` is tf2onnx's choice, seen with
those versions and written to ``cases.json`` (case -> "native" or "loop"), which the tests
read and check against each graph.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch  # noqa: F401  (torch before tensorflow, as everywhere in this project)

HERE = Path(__file__).resolve().parent
D, SEED = 3, 0


def _keras3_cases() -> dict[str, tuple[Callable[[Any], Any], int | None, bool]]:
    """name -> (make layer(s) from keras.layers, fixed time length or None, native node)."""
    return {
        "lstm_seq": (lambda L: L.LSTM(4, return_sequences=True), None, True),
        "lstm_last": (lambda L: L.LSTM(4), None, True),
        "lstm_states": (lambda L: L.LSTM(3, return_sequences=True, return_state=True), None, True),
        "lstm_back_seq": (
            lambda L: L.LSTM(4, go_backwards=True, return_sequences=True),
            None,
            True,
        ),
        "lstm_back_last": (lambda L: L.LSTM(4, go_backwards=True), None, True),
        "bi_concat": (lambda L: L.Bidirectional(L.LSTM(3, return_sequences=True)), None, True),
        "bi_sum": (
            lambda L: L.Bidirectional(L.LSTM(3, return_sequences=True), merge_mode="sum"),
            None,
            True,
        ),
        "bi_mul": (
            lambda L: L.Bidirectional(L.LSTM(3, return_sequences=True), merge_mode="mul"),
            None,
            True,
        ),
        "bi_ave": (
            lambda L: L.Bidirectional(L.LSTM(3, return_sequences=True), merge_mode="ave"),
            None,
            True,
        ),
        "bi_none": (
            lambda L: L.Bidirectional(L.LSTM(3, return_sequences=True), merge_mode=None),
            None,
            True,
        ),
        "bi_states": (
            lambda L: L.Bidirectional(L.LSTM(3, return_sequences=True, return_state=True)),
            None,
            True,
        ),
        "bi_last": (lambda L: L.Bidirectional(L.LSTM(3)), None, True),
        "bi_stack": (
            lambda L: [
                L.Bidirectional(L.LSTM(3, return_sequences=True)),
                L.LSTM(2, return_sequences=True),
            ],
            None,
            True,
        ),
        "lstm_t1": (lambda L: L.LSTM(4, return_sequences=True), 1, True),
        "bi_t1": (lambda L: L.Bidirectional(L.LSTM(3)), 1, True),
        "gru_seq": (lambda L: L.GRU(4, return_sequences=True), None, False),
        "simple_rnn_seq": (lambda L: L.SimpleRNN(4, return_sequences=True), None, False),
        "lstm_masked": (lambda L: [L.Masking(), L.LSTM(4)], None, False),
    }


def _tf_keras_cases() -> dict[str, tuple[Callable[[Any], Any], int | None, bool]]:
    return {
        "tfk_gru_seq": (lambda L: L.GRU(4, return_sequences=True), None, True),
        "tfk_gru_back": (lambda L: L.GRU(4, go_backwards=True, return_sequences=True), None, True),
        "tfk_bigru": (lambda L: L.Bidirectional(L.GRU(3, return_sequences=True)), None, True),
        "tfk_gru_reset_before": (
            lambda L: L.GRU(4, reset_after=False, return_sequences=True),
            None,
            False,
        ),
        "tfk_simple_rnn": (lambda L: L.SimpleRNN(4, return_sequences=True), None, False),
    }


def _layers(made: Any) -> list[Any]:
    return made if isinstance(made, list) else [made]


def _arrays(outputs: Any) -> list[np.ndarray]:
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return [np.asarray(o) for o in outputs]


def _randomize(model: Any, rng: np.random.Generator) -> None:
    """Seeded weights and non-zero biases, so no zero bias hides a misread one."""
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype("float32") for w in weights])


def _input(rng: np.random.Generator, steps: int | None, masked: bool) -> np.ndarray:
    x = rng.standard_normal((2, steps or 6, D)).astype("float32")
    if masked:
        x[1, 4:] = 0.0  # padded on the right, as Masking reads it
    return x


def _save(name: str, proto: Any, x: np.ndarray, outputs: Any) -> None:
    import onnx

    onnx.save(proto, HERE / f"{name}.onnx")
    arrays = {f"output_{i}": np.asarray(o) for i, o in enumerate(outputs)}
    np.savez(HERE / f"{name}.npz", x=x, **arrays)
    kinds = sorted(
        {n.op_type for n in proto.graph.node if n.op_type in ("LSTM", "GRU", "RNN", "Loop")}
    )
    print(f"{name}: {', '.join(kinds)}")


def make_keras3(rng: np.random.Generator) -> None:
    import keras
    import onnx

    for name, (make, steps, _) in _keras3_cases().items():
        keras.utils.set_random_seed(SEED)
        inputs = keras.Input((steps, D), name="x")
        h: Any = inputs
        for layer in _layers(make(keras.layers)):
            h = layer(h)
        model = keras.Model(inputs, h)
        _randomize(model, rng)
        x = _input(rng, steps, name.endswith("masked"))
        outputs = model(x)
        path = HERE / f"{name}.onnx"
        model.export(str(path), format="onnx", verbose=False)
        _save(name, onnx.load(path), x, _arrays(outputs))


def make_tf_keras(rng: np.random.Generator) -> None:
    import tensorflow as tf
    import tf2onnx
    import tf_keras

    for name, (make, steps, _) in _tf_keras_cases().items():
        tf_keras.utils.set_random_seed(SEED)
        inputs = tf_keras.Input((steps, D), name="x")
        h: Any = inputs
        for layer in _layers(make(tf_keras.layers)):
            h = layer(h)
        model = tf_keras.Model(inputs, h)
        _randomize(model, rng)
        x = _input(rng, steps, False)
        outputs = model(x)
        signature = [tf.TensorSpec((None, steps, D), tf.float32, name="x")]
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=15)
        _save(name, proto, x, _arrays(outputs))


def main() -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    rng = np.random.default_rng(SEED)
    make_keras3(rng)
    make_tf_keras(rng)
    cases = {**_keras3_cases(), **_tf_keras_cases()}
    kinds = {name: "native" if native else "loop" for name, (_, _, native) in cases.items()}
    (HERE / "cases.json").write_text(json.dumps(kinds, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
