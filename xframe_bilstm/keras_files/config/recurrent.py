"""Recurrent layers (LSTM, GRU, SimpleRNN, cuDNN forms, RNN of a cell, Bidirectional) into
canonical layers.

Both Keras readers build canonical layers here: configurations (files and live models,
:func:`recurrent_record`) and live layers (:mod:`xframe_bilstm.adapters.keras`, through
:func:`cell_options`, :func:`direction_weights` and :func:`canonical_layer`). A live layer
holds its activation functions, which are identified by identity rather than by the name
a configuration stores; it passes them as ``activations``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ...canonical import DirectionWeights, RecurrentLayer
from ...errors import UnsupportedFeatureError, WeightShapeError
from ...graph import LayerRecord, state_count
from ..legacy import cudnn_direction, recurrent_activation
from ..weights import WeightRef, expect_count
from .cells import RNN_FLAGS, plain_layer
from .specs import LayerSpec, ModelSpec, sub_config

_CELLS = {"LSTM": "lstm", "GRU": "gru", "SimpleRNN": "simple_rnn", "CuDNNLSTM": "lstm"}
_CELLS["CuDNNGRU"] = "gru"
_GATES = {"lstm": 4, "gru": 3, "simple_rnn": 1}


def cell_options(
    class_name: str,
    config: Mapping[str, Any],
    where: str,
    major: int,
    activations: tuple[str, str | None] | None = None,
) -> dict[str, Any]:
    """Everything a canonical layer holds once for both directions, from one layer config.

    ``activations`` are the canonical (activation, recurrent activation) of a live layer,
    identified from its functions; a configuration's names are read by ``major`` otherwise.

    Example:
        >>> options = cell_options("GRU", {"units": 2, "activation": "hard_sigmoid"}, "", 2)
        >>> options["activation"], options["reset_after"]
        ('hard_sigmoid_keras2', False)
    """
    if class_name not in _CELLS:
        raise UnsupportedFeatureError(
            f"{where}: wraps a {class_name}; expected LSTM, GRU, SimpleRNN or an RNN of their cells"
        )
    cell = _CELLS[class_name]
    cudnn = class_name.startswith("CuDNN")
    activation: str
    gate: str | None
    reset_after: bool | None
    if cudnn:  # fixed activations, biases, and for GRU the reset-after form
        activation, gate, reset_after, use_bias = "tanh", "sigmoid", cell == "gru", True
    else:
        if activations is not None:
            activation, gate = activations
        else:
            activation = recurrent_activation(
                config.get("activation", "tanh"), major=major, where=where
            )
            gate = (
                None
                if cell == "simple_rnn"
                else recurrent_activation(
                    config.get("recurrent_activation", "sigmoid"), major=major, where=where
                )
            )
        # A GRU config without reset_after predates the option: reset before the product.
        reset_after = bool(config.get("reset_after", False)) if cell == "gru" else None
        use_bias = bool(config.get("use_bias", True))
    return {
        "cell": cell,
        "units": int(config["units"]),
        "activation": activation,
        "recurrent_activation": gate,
        "reset_after": reset_after if cell == "gru" else None,
        "use_bias": use_bias,
        "cudnn": cudnn,
    }


def direction_weights(
    refs: Sequence[WeightRef], options: Mapping[str, Any], where: str
) -> DirectionWeights:
    """One direction's canonical weights, each shape checked against ``options`` first."""
    cell, units = options["cell"], options["units"]
    width = _GATES[cell] * units
    expected = 3 if options["use_bias"] else 2
    expect_count(refs, expected, where)
    if len(refs[0].shape) != 2 or refs[0].shape[0] < 1:
        raise WeightShapeError(f"{where}: kernel has shape {refs[0].shape}; expected 2-D")
    input_size = refs[0].shape[0]
    kernel = refs[0].read((input_size, width), f"{where} kernel")
    recurrent = refs[1].read((units, width), f"{where} recurrent_kernel")
    if options["cudnn"]:
        doubled = refs[2].read((2 * width,), f"{where} bias (cuDNN layout)")
        return cudnn_direction(kernel, recurrent, doubled, gates=_GATES[cell])
    bias: np.ndarray | None = None
    if options["use_bias"]:
        shape = (2, width) if cell == "gru" and options["reset_after"] else (width,)
        bias = refs[2].read(shape, f"{where} bias")
    return DirectionWeights(kernel, recurrent, bias)


def canonical_layer(
    options: Mapping[str, Any],
    directions: Sequence[DirectionWeights],
    *,
    go_backwards: bool = False,
    zero_masked_outputs: bool = False,
    merge_mode: str | None = "concat",
) -> RecurrentLayer:
    """The canonical layer of :func:`cell_options` and one direction, or two for Bidirectional."""
    direction = "backward" if go_backwards else "forward"
    return RecurrentLayer(
        cell=options["cell"],
        input_size=directions[0].kernel.shape[0],
        units=options["units"],
        weights=tuple(directions),
        direction="bidirectional" if len(directions) == 2 else direction,
        merge_mode=merge_mode,
        activation=options["activation"],
        recurrent_activation=options["recurrent_activation"],
        reset_after=options["reset_after"],
        zero_masked_outputs=zero_masked_outputs,
    )


def _flags(config: Mapping[str, Any], where: str) -> dict[str, bool]:
    flags = {key: bool(config.get(key, False)) for key in RNN_FLAGS}
    if flags["stateful"]:
        raise UnsupportedFeatureError(
            f"{where}: stateful=True carries states between calls; a whole-model port is "
            "stateless (port the recurrent layers on their own with keras_to_torch)"
        )
    return flags


def recurrent_record(
    layer: LayerSpec, refs: list[WeightRef], spec: ModelSpec, where: str | None = None
) -> LayerRecord:
    """The graph record of a recurrent layer of a model, refusing what a model port cannot
    reproduce (a layer returning two unmerged tensors, a stateful layer).

    An ``RNN`` of one cell is read as the plain layer it computes (:mod:`.cells`);
    ``where`` starts messages (the layer's own by default).
    """
    where = where or spec.where(layer)
    if layer.class_name != "Bidirectional":
        class_name, config = plain_layer(layer.class_name, layer.config, where)
        options = cell_options(class_name, config, where, spec.major)
        flags = _flags(config, where)
        canonical = canonical_layer(
            options,
            (direction_weights(refs, options, where),),
            go_backwards=flags["go_backwards"],
            zero_masked_outputs=flags["zero_output_for_mask"],
        )
        return _record(layer, canonical, flags, options)

    config = layer.config
    forward_class, forward_config = plain_layer(
        *sub_config(config, "layer", layer, spec.source), where
    )
    if isinstance(config.get("backward_layer"), Mapping):
        backward_class, backward_config = plain_layer(
            *sub_config(config, "backward_layer", layer, spec.source), where
        )
    else:
        # Keras 2 stores only the wrapped layer and flips its go_backwards for the other half.
        backward_class = forward_class
        backward_config = {**forward_config, "go_backwards": not forward_config.get("go_backwards")}
    forward_flags = _flags(forward_config, where)
    backward_flags = _flags(backward_config, where)
    if forward_flags["go_backwards"] or not backward_flags["go_backwards"]:
        raise UnsupportedFeatureError(
            f"{where}: its forward layer has go_backwards=True (Keras 2 then swaps the two "
            "directions); rebuild it with a forward layer"
        )
    forward = cell_options(forward_class, forward_config, where, spec.major)
    backward = cell_options(backward_class, backward_config, where, spec.major)
    for key in forward:
        if forward[key] != backward[key]:
            raise UnsupportedFeatureError(
                f"{where}: its halves differ in {key} ({forward[key]!r} and {backward[key]!r})"
            )
    for key in ("return_sequences", "return_state", "time_major", "unroll"):
        if forward_flags[key] != backward_flags[key]:
            raise UnsupportedFeatureError(f"{where}: its halves differ in {key}")
    merge_mode = config.get("merge_mode", "concat")
    if merge_mode is None:
        raise UnsupportedFeatureError(
            f"{where}: merge_mode=None returns two tensors; a whole-model port supports "
            "layers that return one"
        )
    if len(refs) % 2:
        raise WeightShapeError(f"{where}: {len(refs)} weights cannot split into two halves")
    half = len(refs) // 2
    directions = (
        direction_weights(refs[:half], forward, f"{where} forward"),
        direction_weights(refs[half:], backward, f"{where} backward"),
    )
    canonical = canonical_layer(forward, directions, merge_mode=merge_mode)
    return _record(layer, canonical, forward_flags, forward)


def _record(
    layer: LayerSpec,
    canonical: RecurrentLayer,
    flags: Mapping[str, bool],
    options: Mapping[str, Any],
) -> LayerRecord:
    states = len(layer.inputs) - 1
    if states and states != state_count(canonical):
        raise UnsupportedFeatureError(
            f"layer {layer.name!r} ({layer.class_name}): {states} initial states given, "
            f"{state_count(canonical)} expected (h, c per direction for an LSTM, h for the "
            "others); pass all of them or none"
        )
    record_options = {
        "return_sequences": flags["return_sequences"],
        "return_state": flags["return_state"],
        "time_major": flags["time_major"],
        "unroll": flags["unroll"],
        "cudnn": options["cudnn"],
    }
    return LayerRecord(
        layer.name,
        "recurrent",
        layer.class_name,
        layer.inputs,
        record_options,
        recurrent=canonical,
    )
