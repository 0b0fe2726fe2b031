"""Built Keras 3 recurrent layers, and ``Sequential`` stacks of them, into the canonical form.

A layer is read the way a layer of a model configuration is
(:mod:`xframe_bilstm.keras_files.config.recurrent`): its ``get_config()`` gives the
options, its cell's variables the weights. What only a live layer has is read here: the
activation functions it holds (identified by identity, not by the name a configuration
stores), whether it is built, and its class (a subclass of ``LSTM`` is an ``LSTM``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._imports import require
from ...canonical import DirectionWeights, RecurrentLayer, RecurrentStack
from ...copies import read_only_view
from ...errors import UnsupportedFeatureError, WeightShapeError
from ...keras_files.config.recurrent import canonical_layer, cell_options, direction_weights
from ...keras_files.weights import WeightRef
from .activations import canonical_activation

_CELL_CLASSES = ("LSTM", "GRU", "SimpleRNN")
# What the halves of a Bidirectional must share, in the order a difference is reported.
_SHARED = (
    "cell",
    "units",
    "input_size",
    "use_bias",
    "activation",
    "recurrent_activation",
    "reset_after",
)

# Layers that pass their input through unchanged at inference.
INFERENCE_IDENTITY = (
    "Dropout",
    "SpatialDropout1D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
)


def keras_to_canonical(obj: Any, *, borrow: bool = False) -> RecurrentStack:
    """Convert a built Keras 3 recurrent layer or ``Sequential`` to the canonical form.

    Accepts ``LSTM``, ``GRU``, ``SimpleRNN``, a ``Bidirectional`` wrapping one of them
    (custom ``backward_layer`` included) and a ``keras.Sequential`` of those. The conversion
    is for inference: ``dropout`` and ``recurrent_dropout`` are ignored, and so are layers
    that are the identity at inference (``Dropout`` and its kin) inside a ``Sequential``.
    ``unroll=True`` is accepted (same math) except in a ``Bidirectional`` that returns
    sequences, where Keras's own bug zeroes valid backward outputs under a mask.

    Args:
        obj: the layer or model; it must be built (have weights).
        borrow: let the stack's arrays be read-only views of the variables' values instead
            of copies, for a conversion that copies them into their destination at once
            (``keras_to_torch`` does); views may follow later assignments to the variables.

    Returns:
        The canonical stack, with the weights' dtype kept.

    Raises:
        WeightShapeError: the layer has no weights yet.
        UnsupportedFeatureError: a layer class or option with no exact canonical equivalent.

    Example:
        >>> layer = keras.layers.LSTM(2)
        >>> layer.build((None, None, 3))
        >>> keras_to_canonical(layer).layers[0].cell
        'lstm'
    """
    keras = require("keras")
    if isinstance(obj, keras.Sequential):
        return _sequential_to_canonical(obj, keras, borrow)
    layer, flags = _layer_to_canonical(obj, keras, borrow)
    return RecurrentStack((layer,), *flags)


def _sequential_to_canonical(model: Any, keras: Any, borrow: bool) -> RecurrentStack:
    # Input layers and layers that are the identity at inference carry no computation.
    skipped = (keras.layers.InputLayer, *(getattr(keras.layers, n) for n in INFERENCE_IDENTITY))
    members = [m for m in model.layers if not isinstance(m, skipped)]
    if not members:
        raise UnsupportedFeatureError(
            f"Sequential {model.name!r} has no layers; add at least one recurrent layer"
        )
    converted = [_layer_to_canonical(member, keras, borrow) for member in members]
    for member, (_, (return_sequences, return_state, _)) in zip(
        members[:-1], converted[:-1], strict=True
    ):
        # Only the last layer may end the sequence or return states: the next layer needs
        # the whole sequence as its only input.
        if not return_sequences:
            raise UnsupportedFeatureError(
                f"layer {member.name!r}: return_sequences=False, but it feeds another layer; "
                "set return_sequences=True on every layer but the last"
            )
        if return_state:
            raise UnsupportedFeatureError(
                f"layer {member.name!r}: return_state=True, but it feeds another layer; "
                "only the last layer of a Sequential may return its states"
            )
    stateful = {
        member.name: flags[2] for member, (_, flags) in zip(members, converted, strict=True)
    }
    if len(set(stateful.values())) > 1:
        raise UnsupportedFeatureError(
            f"Sequential {model.name!r}: layers disagree on stateful ({stateful}); the "
            "canonical stack is stateful as a whole, so make every layer agree"
        )
    return_sequences, return_state, is_stateful = converted[-1][1]
    layers = tuple(layer for layer, _ in converted)
    return RecurrentStack(layers, return_sequences, return_state, is_stateful)


def _layer_to_canonical(
    layer: Any, keras: Any, borrow: bool = False
) -> tuple[RecurrentLayer, tuple[bool, bool, bool]]:
    """One Keras layer: its canonical layer and its (return_sequences, return_state, stateful)."""
    if isinstance(layer, keras.layers.Bidirectional):
        return _bidirectional_to_canonical(layer, keras, borrow), _flags(layer)
    _check_recurrent_class(layer, keras, where="")
    options = _options(layer, keras)
    canonical = canonical_layer(
        options,
        (_direction_weights(layer, options, keras, borrow),),
        go_backwards=bool(layer.go_backwards),
        zero_masked_outputs=bool(layer.zero_output_for_mask),
    )
    return canonical, _flags(layer)


def _bidirectional_to_canonical(bidi: Any, keras: Any, borrow: bool) -> RecurrentLayer:
    forward, backward = bidi.forward_layer, bidi.backward_layer
    for half in (forward, backward):
        _check_recurrent_class(half, keras, where=f" inside Bidirectional {bidi.name!r}")
    if forward.go_backwards:
        # Keras accepts a reversed forward half with a forward backward_layer; the merged
        # output is then time-reversed and swapped, which the canonical form cannot express.
        raise UnsupportedFeatureError(
            f"Bidirectional {bidi.name!r}: its forward layer {forward.name!r} has "
            "go_backwards=True; build it with a forward layer and a go_backwards=True "
            "backward_layer"
        )
    if bidi.return_sequences and (forward.unroll or backward.unroll):
        raise UnsupportedFeatureError(
            f"Bidirectional {bidi.name!r}: unroll=True with return_sequences=True; given a "
            "mask, Keras zeroes valid backward outputs of this configuration (a Keras bug) "
            "and no converted model reproduces that; rebuild its layers with unroll=False, "
            "which computes the same without the bug"
        )
    options = (_options(forward, keras), _options(backward, keras))
    specs = [
        {**half_options, "input_size": int(half.cell.kernel.shape[0])}
        for half, half_options in zip((forward, backward), options, strict=True)
    ]
    for key in _SHARED:
        if specs[0][key] != specs[1][key]:
            raise UnsupportedFeatureError(
                f"Bidirectional {bidi.name!r}: its halves differ in {key} (forward layer "
                f"{forward.name!r}: {specs[0][key]!r}, backward layer {backward.name!r}: "
                f"{specs[1][key]!r}); the canonical layer holds one {key} for both directions"
            )
    directions = (
        _direction_weights(forward, options[0], keras, borrow),
        _direction_weights(backward, options[1], keras, borrow),
    )
    return canonical_layer(options[0], directions, merge_mode=bidi.merge_mode)


def _check_recurrent_class(layer: Any, keras: Any, *, where: str) -> None:
    classes = tuple(getattr(keras.layers, name) for name in _CELL_CLASSES)
    if not isinstance(layer, classes):
        raise UnsupportedFeatureError(
            f"layer {layer.name!r}{where} is a {type(layer).__name__}; only "
            f"{', '.join(_CELL_CLASSES)} and Bidirectional wrappers of them can be converted"
        )


def _flags(layer: Any) -> tuple[bool, bool, bool]:
    # Keras 3's Bidirectional exposes the same three attributes as the layers it wraps.
    return bool(layer.return_sequences), bool(layer.return_state), bool(layer.stateful)


def _options(layer: Any, keras: Any) -> dict[str, Any]:
    """The options the canonical layer holds once for both directions, read from one layer."""
    if not layer.built or not layer.cell.weights:
        raise WeightShapeError(
            f"layer {layer.name!r} has no weights yet; build it (layer.build((batch, None, "
            "input_size))) or call it once on an input before converting"
        )
    class_name = next(
        name for name in _CELL_CLASSES if isinstance(layer, getattr(keras.layers, name))
    )
    cell = layer.cell
    activation = canonical_activation(cell.activation, layer, "activation", keras)
    gate = (
        None
        if class_name == "SimpleRNN"
        else canonical_activation(cell.recurrent_activation, layer, "recurrent_activation", keras)
    )
    where = f"layer {layer.name!r}"
    return cell_options(class_name, layer.get_config(), where, 3, (activation, gate))


def _direction_weights(
    layer: Any, options: dict[str, Any], keras: Any, borrow: bool
) -> DirectionWeights:
    cell = layer.cell
    variables = [cell.kernel, cell.recurrent_kernel, *([cell.bias] if cell.use_bias else [])]
    refs = [
        WeightRef.of_array(variable.path, _variable_array(variable, keras, borrow))
        for variable in variables
    ]
    return direction_weights(refs, options, f"layer {layer.name!r}")


def _variable_array(variable: Any, keras: Any, borrow: bool) -> np.ndarray:
    """A variable's value, read-only: its own copy, or (``borrow``) a view of its memory.

    Either way one pass at most: the canonical form keeps read-only arrays as they are.
    """
    read = getattr(getattr(variable, "value", None), "read_value", None)
    if keras.backend.backend() == "tensorflow" and callable(read):
        # A tf.Variable's read shares its buffer (``variable.numpy()`` copies it).
        array = np.asarray(read())
    else:
        array = np.asarray(variable.numpy())
    return read_only_view(array if borrow else np.array(array, copy=True))
