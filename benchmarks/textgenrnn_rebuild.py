"""textgenrnn 2.0.0's model as the package builds, loads, encodes for and trains it.

``benchmarks/published_models.py`` runs the library on it. Two builds: the package's own
``model.py`` on tf_keras (the Keras 2 it was written for, where its weights file loads), and
the same graph in Keras 3 with the custom ``AttentionWeightedAverage`` layer ported line by
line and registered, for ``keras_to_torch``; plus that layer in torch for ``custom_layers``.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np
import torch


@keras.saving.register_keras_serializable(package="textgenrnn")
class AttentionWeightedAverage(keras.layers.Layer):
    """textgenrnn's ``AttentionWeightedAverage.py`` in Keras 3, line by line (``K.x`` →
    ``keras.ops.x``, ``K.epsilon()`` → ``keras.config.epsilon()``)."""

    def __init__(self, return_attention: bool = False, **kwargs: Any) -> None:
        self.init = keras.initializers.get("uniform")
        self.supports_masking = True
        self.return_attention = return_attention
        super().__init__(**kwargs)

    def build(self, input_shape: Any) -> None:
        self.input_spec = [keras.layers.InputSpec(ndim=3)]
        assert len(input_shape) == 3
        self.W = self.add_weight(
            shape=(input_shape[2], 1), name=f"{self.name}_W", trainable=True, initializer=self.init
        )
        super().build(input_shape)

    def call(self, x: Any, mask: Any = None) -> Any:
        ops = keras.ops
        logits = ops.dot(x, self.W)
        x_shape = ops.shape(x)
        logits = ops.reshape(logits, (x_shape[0], x_shape[1]))
        ai = ops.exp(logits - ops.max(logits, axis=-1, keepdims=True))
        if mask is not None:
            mask = ops.cast(mask, keras.config.floatx())
            ai = ai * mask
        att_weights = ai / (ops.sum(ai, axis=1, keepdims=True) + keras.config.epsilon())
        weighted_input = x * ops.expand_dims(att_weights, -1)
        result = ops.sum(weighted_input, axis=1)
        if self.return_attention:
            return [result, att_weights]
        return result

    def compute_output_shape(self, input_shape: Any) -> Any:
        output_len = input_shape[2]
        if self.return_attention:
            return [(input_shape[0], output_len), (input_shape[0], input_shape[1])]
        return (input_shape[0], output_len)

    def compute_mask(self, input: Any, input_mask: Any = None) -> Any:
        if isinstance(input_mask, list):
            return [None] * len(input_mask)
        return None


class TorchAttentionWeightedAverage(torch.nn.Module):
    """The layer in torch: one logit per step (``x @ W``), normalised over the steps as the
    layer does (max subtracted, ``K.epsilon()`` added to the sum), weighting the steps' sum."""

    def __init__(self, weight: np.ndarray) -> None:
        super().__init__()
        self.W = torch.nn.Parameter(torch.as_tensor(weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = (x @ self.W).squeeze(-1)
        ai = torch.exp(logits - logits.amax(-1, keepdim=True))
        weights = ai / (ai.sum(1, keepdim=True) + keras.config.epsilon())
        return (x * weights.unsqueeze(-1)).sum(1)


def torch_attention(config: dict[str, Any], weights: list[np.ndarray]) -> torch.nn.Module:
    """``custom_layers`` factory. The package's class saves no ``return_attention``: its
    Keras 2 files give the base layer's config only."""
    if config.get("return_attention", False):
        raise ValueError("return_attention=True returns two outputs; this port returns one")
    return TorchAttentionWeightedAverage(weights[0])


def keras_attention(module: TorchAttentionWeightedAverage) -> keras.layers.Layer:
    """``custom_modules`` factory: the torch module back as the Keras layer, its W included."""
    layer = AttentionWeightedAverage(name="attention")
    layer.build((None, None, module.W.shape[0]))
    layer.set_weights([module.W.detach().numpy()])
    return layer


def package_config(source: Path) -> dict[str, Any]:
    """``textgenrnn.config``, the class attribute the shipped weights are loaded with."""
    for node in ast.walk(ast.parse((source / "textgenrnn.py").read_text())):
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "config":
            return dict(ast.literal_eval(node.value))
    raise LookupError("no config in textgenrnn.py")


def keras2_model_module(source: Path, folder: Path) -> Any:
    """The package's ``model.py`` (with its ``AttentionWeightedAverage.py``) on tf_keras,
    the Keras 2 it was written for: only the import lines change."""
    package = folder / "textgenrnn_keras2"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("model.py", "AttentionWeightedAverage.py"):
        code = (source / name).read_text().replace("tensorflow.keras", "tf_keras")
        (package / name).write_text(code)
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module("textgenrnn_keras2.model")
    finally:
        sys.path.remove(str(folder))


def keras3_model(num_classes: int, cfg: dict[str, Any]) -> keras.Model:
    """``model.textgenrnn_model`` as ``textgenrnn()`` calls it (no context input, no dropout)
    in Keras 3; its ``new_rnn`` off the GPU: LSTM with a sigmoid recurrent activation,
    CuDNNLSTM's computation, which trained the weights."""
    if cfg["rnn_bidirectional"]:
        raise ValueError("the shipped weights are of unidirectional LSTMs")
    input = keras.Input(shape=(cfg["max_length"],), name="input")
    embedded = keras.layers.Embedding(num_classes, cfg["dim_embeddings"], name="embedding")(input)
    rnn_layer_list: list[Any] = []
    for i in range(cfg["rnn_layers"]):
        prev_layer = embedded if i == 0 else rnn_layer_list[-1]
        rnn = keras.layers.LSTM(
            cfg["rnn_size"], return_sequences=True, recurrent_activation="sigmoid",
            name=f"rnn_{i + 1}",
        )  # fmt: skip
        rnn_layer_list.append(rnn(prev_layer))
    seq_concat = keras.layers.concatenate([embedded, *rnn_layer_list], name="rnn_concat")
    attention = AttentionWeightedAverage(name="attention")(seq_concat)
    output = keras.layers.Dense(num_classes, name="output", activation="softmax")(attention)
    return keras.Model(inputs=[input], outputs=[output])


def _cudnn_lstm_as_lstm(kernel: Any, recurrent: Any, bias: Any) -> list[np.ndarray]:
    """CuDNNLSTM weights as an LSTM's, as Keras 2 loads them: CuDNN read each gate's block,
    stored (inputs, units), as the row-major buffer of its (units, inputs) matrix, which is
    that read transposed for an LSTM; its input and recurrent biases add up."""
    units, gates = recurrent.shape[0], 4

    def as_lstm(weights: np.ndarray) -> np.ndarray:
        blocks = np.split(weights, gates, axis=1)
        return np.hstack([block.reshape(block.shape[::-1]).T for block in blocks])

    return [as_lstm(kernel), as_lstm(recurrent), bias[: gates * units] + bias[gates * units :]]


def file_weights(path: Path) -> dict[str, list[np.ndarray]]:
    """Each layer's arrays in the weights file, read with h5py; CuDNNLSTM's (two biases per
    gate) in an LSTM's layout."""
    weights = {}
    with h5py.File(path, "r") as file:
        for name in (n.decode() for n in file.attrs["layer_names"]):
            group = file[name]
            arrays = [np.asarray(group[n.decode()]) for n in group.attrs["weight_names"]]
            if len(arrays) == 3 and arrays[2].size == 8 * arrays[1].shape[0]:
                arrays = _cudnn_lstm_as_lstm(*arrays)
            weights[name] = arrays
    return weights


def encode(text: str, vocab: dict[str, int], maxlen: int) -> np.ndarray:
    """``utils.textgenrnn_encode_sequence`` of ``[META_TOKEN] + list(text)``, as ``generate``
    encodes a prefix: the last ``maxlen`` characters' ids, 0 where unknown, 0-padded in front."""
    ids = [vocab.get(c, 0) for c in (["<s>", *text])[-maxlen:]]
    return np.array([0] * (maxlen - len(ids)) + ids, np.int32)


def fine_tune(port: Any, ids: np.ndarray, end: int, steps: int, rate: float) -> None:
    """Steps of training as textgenrnn trains (Adam, cross-entropy of the next character):
    after a whole sentence, the end-of-text token."""
    optimizer = torch.optim.Adam(port.parameters(), lr=rate)
    target = torch.full((len(ids),), end)
    port.train()
    for _ in range(steps):
        optimizer.zero_grad()
        probs = port(torch.from_numpy(ids))
        torch.nn.functional.nll_loss(torch.log(probs + 1e-7), target).backward()
        optimizer.step()
    port.eval()
