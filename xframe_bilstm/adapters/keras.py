"""Keras 3 adapter: built Keras recurrent layers to and from the canonical form, and a runner.

Rules of this module:

- Keras is imported only inside functions (``require("keras")``), so importing this module
  imports neither Keras nor TensorFlow.
- Weights are copied unchanged: the canonical form *is* Keras's orientation and gate order
  (``kernel`` (D, G·H), ``recurrent_kernel`` (H, G·H), LSTM ``ifco``, GRU ``zrh``). The one
  step that is not bit-exact is :func:`canonical_to_keras` folding a split LSTM/SimpleRNN bias
  (2, G·H) into Keras's single bias, one float addition per element.
- The conversion is for inference. ``dropout`` and ``recurrent_dropout`` act only while
  training and are accepted; options that change inference math and have no canonical
  equivalent raise :class:`~xframe_bilstm.errors.UnsupportedFeatureError` naming the layer,
  the option, its value and what to do.
- Activations are recognised by identity with Keras's own functions (``keras.activations``
  and ``keras.ops``), never by a function's name: a user function called ``tanh`` is not tanh.
- :func:`run_keras` runs layers compiled (``tf.function``), the way they run in production,
  and returns arrays in the order of :func:`~xframe_bilstm.canonical.output_names`.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._imports import require
from ..canonical import DirectionWeights, RecurrentLayer, RecurrentStack, is_float_dtype
from ..errors import UnsupportedFeatureError, WeightShapeError
from ..masks import mask_from_lengths

# Keras class name -> canonical cell kind.
_CELL_BY_CLASS = {"LSTM": "lstm", "GRU": "gru", "SimpleRNN": "simple_rnn"}
_CLASS_BY_CELL = {cell: name for name, cell in _CELL_BY_CLASS.items()}

# Canonical activation name -> the name Keras knows it by (hard_sigmoid_keras2 is our function).
_KERAS_NAME = {
    "tanh": "tanh",
    "sigmoid": "sigmoid",
    "hard_sigmoid_keras3": "hard_sigmoid",
    "relu": "relu",
    "linear": "linear",
    "softsign": "softsign",
    "softplus": "softplus",
    "elu": "elu",
    "selu": "selu",
    "silu": "silu",
    "exponential": "exponential",
}

# Layers that pass their input through unchanged at inference.
INFERENCE_IDENTITY = (
    "Dropout",
    "SpatialDropout1D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
)

_REGISTERED_PACKAGE = "xframe_bilstm"
_registered = False

# One compiled function per Keras layer or model, dropped when the layer is.
_COMPILED: weakref.WeakKeyDictionary[Any, Callable[..., Any]] = weakref.WeakKeyDictionary()


def hard_sigmoid_keras2(x: Any) -> Any:
    """Keras 2's hard sigmoid, ``clip(0.2·x + 0.5, 0, 1)``, as a Keras 3 activation.

    Keras 3's ``"hard_sigmoid"`` is ``clip(x/6 + 0.5, 0, 1)``; layers trained under Keras 2
    need this one to compute what they computed there.

    Example:
        >>> round(float(hard_sigmoid_keras2(np.float32(2.0))), 6)
        0.9
    """
    keras = require("keras")
    return keras.ops.clip(0.2 * x + 0.5, 0.0, 1.0)


def register_keras_activations() -> None:
    """Register :func:`hard_sigmoid_keras2` with Keras so saved models can be loaded again.

    Idempotent; called by the converters, so users only need it before ``load_model``.

    Example:
        >>> register_keras_activations()
        >>> keras.saving.get_registered_object("xframe_bilstm>hard_sigmoid_keras2").__name__
        'hard_sigmoid_keras2'
    """
    global _registered
    if _registered:
        return
    keras = require("keras")
    keras.saving.register_keras_serializable(package=_REGISTERED_PACKAGE)(hard_sigmoid_keras2)
    _registered = True


# --------------------------------------------------------------------------- Keras -> canonical


def keras_to_canonical(obj: Any) -> RecurrentStack:
    """Convert a built Keras 3 recurrent layer or ``Sequential`` to the canonical form.

    Accepts ``LSTM``, ``GRU``, ``SimpleRNN``, a ``Bidirectional`` wrapping one of them
    (custom ``backward_layer`` included) and a ``keras.Sequential`` of those. The conversion
    is for inference: ``dropout`` and ``recurrent_dropout`` are ignored, and so are layers
    that are the identity at inference (``Dropout`` and its kin) inside a ``Sequential``.
    ``unroll=True`` is accepted (same math) except in a ``Bidirectional`` that returns
    sequences, where Keras's own bug zeroes valid backward outputs under a mask.

    Args:
        obj: the layer or model; it must be built (have weights).

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
        return _sequential_to_canonical(obj, keras)
    layer, flags = _layer_to_canonical(obj, keras)
    return RecurrentStack((layer,), *flags)


def _sequential_to_canonical(model: Any, keras: Any) -> RecurrentStack:
    # Input layers and layers that are the identity at inference carry no computation.
    skipped = (keras.layers.InputLayer, *(getattr(keras.layers, n) for n in INFERENCE_IDENTITY))
    members = [m for m in model.layers if not isinstance(m, skipped)]
    if not members:
        raise UnsupportedFeatureError(
            f"Sequential {model.name!r} has no layers; add at least one recurrent layer"
        )
    converted = [_layer_to_canonical(member, keras) for member in members]
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


def _layer_to_canonical(layer: Any, keras: Any) -> tuple[RecurrentLayer, tuple[bool, bool, bool]]:
    """One Keras layer: its canonical layer and its (return_sequences, return_state, stateful)."""
    if isinstance(layer, keras.layers.Bidirectional):
        return _bidirectional_to_canonical(layer, keras), _flags(layer)
    _check_recurrent_class(layer, keras, where="")
    spec = _direction_spec(layer, keras)
    canonical = RecurrentLayer(
        cell=spec["cell"],
        input_size=spec["input_size"],
        units=spec["units"],
        weights=(_direction_weights(layer),),
        direction="backward" if layer.go_backwards else "forward",
        activation=spec["activation"],
        recurrent_activation=spec["recurrent_activation"],
        reset_after=spec["reset_after"],
        zero_masked_outputs=bool(layer.zero_output_for_mask),
    )
    return canonical, _flags(layer)


def _bidirectional_to_canonical(bidi: Any, keras: Any) -> RecurrentLayer:
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
    specs = (_direction_spec(forward, keras), _direction_spec(backward, keras))
    for key in specs[0]:
        if specs[0][key] != specs[1][key]:
            raise UnsupportedFeatureError(
                f"Bidirectional {bidi.name!r}: its halves differ in {key} (forward layer "
                f"{forward.name!r}: {specs[0][key]!r}, backward layer {backward.name!r}: "
                f"{specs[1][key]!r}); the canonical layer holds one {key} for both directions"
            )
    spec = specs[0]
    return RecurrentLayer(
        cell=spec["cell"],
        input_size=spec["input_size"],
        units=spec["units"],
        weights=(_direction_weights(forward), _direction_weights(backward)),
        direction="bidirectional",
        merge_mode=bidi.merge_mode,
        activation=spec["activation"],
        recurrent_activation=spec["recurrent_activation"],
        reset_after=spec["reset_after"],
    )


def _check_recurrent_class(layer: Any, keras: Any, *, where: str) -> None:
    classes = tuple(getattr(keras.layers, name) for name in _CELL_BY_CLASS)
    if not isinstance(layer, classes):
        raise UnsupportedFeatureError(
            f"layer {layer.name!r}{where} is a {type(layer).__name__}; only "
            f"{', '.join(_CELL_BY_CLASS)} and Bidirectional wrappers of them can be converted"
        )


def _flags(layer: Any) -> tuple[bool, bool, bool]:
    # Keras 3's Bidirectional exposes the same three attributes as the layers it wraps.
    return bool(layer.return_sequences), bool(layer.return_state), bool(layer.stateful)


def _cell_kind(layer: Any, keras: Any) -> str:
    for class_name, cell in _CELL_BY_CLASS.items():
        if isinstance(layer, getattr(keras.layers, class_name)):
            return cell
    raise AssertionError("unreachable: checked by _check_recurrent_class")


def _direction_spec(layer: Any, keras: Any) -> dict[str, Any]:
    """Everything the canonical layer holds once for both directions, read from one layer."""
    if not layer.built or not layer.cell.weights:
        raise WeightShapeError(
            f"layer {layer.name!r} has no weights yet; build it (layer.build((batch, None, "
            "input_size))) or call it once on an input before converting"
        )
    cell = layer.cell
    kind = _cell_kind(layer, keras)
    return {
        "cell": kind,
        "units": int(cell.units),
        "input_size": int(cell.kernel.shape[0]),
        "use_bias": bool(cell.use_bias),
        "activation": _canonical_activation(cell.activation, layer, "activation", keras),
        "recurrent_activation": (
            None
            if kind == "simple_rnn"
            else _canonical_activation(
                cell.recurrent_activation, layer, "recurrent_activation", keras
            )
        ),
        "reset_after": bool(cell.reset_after) if kind == "gru" else None,
    }


def _direction_weights(layer: Any) -> DirectionWeights:
    cell = layer.cell
    # A reset_after GRU bias is (2, 3H), already the canonical split layout; others are (G·H,).
    bias = np.asarray(cell.bias.numpy()) if cell.use_bias else None
    return DirectionWeights(
        np.asarray(cell.kernel.numpy()), np.asarray(cell.recurrent_kernel.numpy()), bias
    )


def _known_activations(keras: Any) -> list[tuple[Callable[..., Any], str]]:
    """(Keras function, canonical name) for every function object Keras may store."""
    register_keras_activations()
    known: list[tuple[Callable[..., Any], str]] = [(hard_sigmoid_keras2, "hard_sigmoid_keras2")]
    for canonical, name in _KERAS_NAME.items():
        known.append((keras.activations.get(name), canonical))
        # keras.ops.<name> computes the same function (keras.activations wraps it).
        op = getattr(keras.ops, name, None)
        if op is not None:
            known.append((op, canonical))
    return known


def _canonical_activation(function: Any, layer: Any, option: str, keras: Any) -> str:
    for known, canonical in _known_activations(keras):
        if function is known:
            return canonical
    try:
        shown = keras.activations.serialize(function)
    except Exception:  # only for the message: fall back to repr
        shown = repr(function)
    supported = [*sorted(_KERAS_NAME.values()), f"{_REGISTERED_PACKAGE}.hard_sigmoid_keras2"]
    raise UnsupportedFeatureError(
        f"layer {layer.name!r}: {option}={shown!r} is not supported; use one of {supported} "
        "(Keras's own functions, e.g. passed by name)"
    )


# --------------------------------------------------------------------------- canonical -> Keras


def canonical_to_keras(
    stack: RecurrentStack,
    *,
    name: str | None = None,
    batch_size: int | None = None,
    dropout: float = 0.0,
    dtype: str | None = None,
    unroll: bool = False,
    use_cudnn: bool | str = "auto",
) -> Any:
    """Build a Keras 3 layer (one-layer stack) or ``Sequential`` holding ``stack``'s weights.

    A ``"backward"`` layer gets ``go_backwards=True``; a ``"bidirectional"`` one becomes a
    ``Bidirectional`` with an explicit ``backward_layer``, both halves built from the
    canonical weights. Layers take the weights' dtype (e.g. float64 weights give a float64
    layer). A split LSTM/SimpleRNN bias is summed into Keras's single bias (one float
    addition, the only step that is not bit-exact).

    Args:
        stack: the canonical stack.
        name: name of the layer or model; Keras picks one when None.
        batch_size: fixed batch size; required when ``stack.stateful``.
        dropout: rate of ``Dropout`` layers put between the recurrent layers (PyTorch's
            ``dropout`` between stacked layers; active in training only).
        dtype: the layers' dtype (e.g. ``"bfloat16"``); default: the weights' dtype.
        unroll: build the layers with ``unroll=True`` (straight-line operations instead of
            a loop; the same math, another kernel path).
        use_cudnn: the LSTM and GRU layers' ``use_cudnn`` (``False`` keeps a GPU run off
            the cuDNN kernels); Keras's ``"auto"`` by default.

    Returns:
        A built ``keras.layers.Layer`` or ``keras.Sequential`` with the weights set.

    Raises:
        UnsupportedFeatureError: a stateful stack without ``batch_size``.

    Example:
        >>> gru = keras.layers.GRU(2, go_backwards=True)
        >>> gru.build((None, None, 3))
        >>> copy = canonical_to_keras(keras_to_canonical(gru))
        >>> type(copy).__name__, copy.go_backwards
        ('GRU', True)
        >>> all(np.array_equal(a, b) for a, b in zip(gru.get_weights(), copy.get_weights()))
        True
    """
    keras = require("keras")
    if stack.stateful and batch_size is None:
        raise UnsupportedFeatureError(
            "stack.stateful=True needs a fixed batch size to create the state variables; "
            "pass batch_size=..."
        )
    dtype = dtype or np.dtype(stack.layers[0].weights[0].kernel.dtype).name
    last = len(stack.layers) - 1
    built = [
        _build_keras_layer(
            layer,
            keras,
            dtype=dtype,
            return_sequences=stack.return_sequences or index < last,
            return_state=stack.return_state and index == last,
            stateful=stack.stateful,
            name=name if len(stack.layers) == 1 else None,
            kernel_options={"unroll": unroll, "use_cudnn": use_cudnn},
        )
        for index, layer in enumerate(stack.layers)
    ]
    if len(built) == 1:
        (result,) = built
        result.build((batch_size, None, stack.input_size))
    else:
        inputs = keras.Input(shape=(None, stack.input_size), batch_size=batch_size, dtype=dtype)
        members = [built[0]]
        for layer in built[1:]:
            members += [keras.layers.Dropout(dropout), layer] if dropout else [layer]
        result = keras.Sequential([inputs, *members], name=name)
    for canonical, keras_layer in zip(stack.layers, built, strict=True):
        set_layer_weights(canonical, keras_layer)
    return result


def _build_keras_layer(
    layer: RecurrentLayer,
    keras: Any,
    *,
    dtype: str,
    return_sequences: bool,
    return_state: bool,
    stateful: bool,
    name: str | None,
    kernel_options: dict[str, Any],
) -> Any:
    def make(go_backwards: bool, half_name: str | None) -> Any:
        options = _keras_options(layer, dtype)
        if kernel_options["unroll"]:
            options["unroll"] = True
        if layer.cell != "simple_rnn" and kernel_options["use_cudnn"] != "auto":
            options["use_cudnn"] = kernel_options["use_cudnn"]  # SimpleRNN has no cuDNN path
        cls = getattr(keras.layers, _CLASS_BY_CELL[layer.cell])
        return cls(
            **options,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            zero_output_for_mask=layer.zero_masked_outputs,
            name=half_name,
        )

    if layer.direction != "bidirectional":
        return make(layer.direction == "backward", name)
    return keras.layers.Bidirectional(
        make(False, None if name is None else f"forward_{name}"),
        backward_layer=make(True, None if name is None else f"backward_{name}"),
        merge_mode=layer.merge_mode,
        name=name,
        # The wrapper casts inputs to its own dtype before the halves see them.
        dtype=dtype,
    )


def _keras_options(layer: RecurrentLayer, dtype: str) -> dict[str, Any]:
    options: dict[str, Any] = {
        "units": layer.units,
        "activation": _keras_activation(layer.activation),
        "use_bias": layer.use_bias,
        "dtype": dtype,
        # The weights are set right after building: skip random (and QR) initialization.
        "kernel_initializer": "zeros",
        "recurrent_initializer": "zeros",
        "bias_initializer": "zeros",
    }
    if layer.cell != "simple_rnn":
        options["recurrent_activation"] = _keras_activation(layer.recurrent_activation)
    if layer.cell == "gru":
        options["reset_after"] = layer.reset_after
    return options


def _keras_activation(name: str | None) -> Any:
    if name == "hard_sigmoid_keras2":
        register_keras_activations()
        return hard_sigmoid_keras2
    return _KERAS_NAME[name or "linear"]


def set_layer_weights(layer: RecurrentLayer, keras_layer: Any) -> None:
    """Set one canonical layer's weights on its built Keras layer (or Bidirectional)."""
    halves = (
        (keras_layer.forward_layer, keras_layer.backward_layer)
        if layer.direction == "bidirectional"
        else (keras_layer,)
    )
    for half, weights in zip(halves, layer.weights, strict=True):
        arrays = [weights.kernel, weights.recurrent_kernel]
        bias = weights.bias
        if bias is not None:
            # LSTM and SimpleRNN have one Keras bias: only the sum of the rows matters. A
            # reset_after GRU keeps both rows, as Keras's (2, 3H) bias does.
            folds = bias.ndim == 2 and not (layer.cell == "gru" and layer.reset_after)
            arrays.append(bias.sum(axis=0) if folds else bias)
        half.cell.set_weights(arrays)


# --------------------------------------------------------------------------- running


def run_keras(
    layer_or_model: Any,
    x: np.ndarray,
    *,
    initial_states: Sequence[np.ndarray] | None = None,
    lengths: Sequence[int] | np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """Run a Keras layer or ``Sequential`` compiled, in inference mode, on numpy input.

    The input is cast to the layer's compute dtype. Stateful layers update their states, as
    any call does. The compiled function is cached per layer object.

    Args:
        layer_or_model: what :func:`keras_to_canonical` accepts.
        x: input (B, T, D).
        initial_states: the layer's initial states in Keras order (e.g. ``[h_f, c_f, h_b,
            c_b]``), each (B, H); single layers only, since a Sequential takes none.
        lengths: valid steps per row (B,) of right-padded input, each in 1..T; passed to
            Keras as a boolean ``mask`` (B, T).

    Returns:
        numpy arrays in the order of ``output_names(keras_to_canonical(layer_or_model))``.

    Example:
        >>> layer = keras.layers.SimpleRNN(4, return_sequences=True)
        >>> layer.build((None, None, 3))
        >>> (y,) = run_keras(layer, np.zeros((2, 5, 3)))
        >>> y.shape, y.dtype
        ((2, 5, 4), dtype('float32'))
    """
    keras = require("keras")
    if keras.backend.backend() != "tensorflow":
        raise UnsupportedFeatureError(
            f"run_keras compiles with tf.function and needs the TensorFlow backend; Keras "
            f"uses {keras.backend.backend()!r} (set KERAS_BACKEND=tensorflow)"
        )
    # Runs any layer, even one keras_to_canonical refuses, so that it can be compared.
    dtype = _compute_dtype(layer_or_model, keras)
    x = np.asarray(x, dtype=dtype)
    if x.ndim != 3:
        raise WeightShapeError(f"x: expected shape (batch, time, features), got {x.shape}")
    states = None
    if initial_states is not None:
        if isinstance(layer_or_model, keras.Sequential):
            raise UnsupportedFeatureError(
                "initial_states: a Keras Sequential takes no initial_state; run the layer "
                "on its own, or convert and use the canonical stack"
            )
        states = [np.asarray(s, dtype=dtype) for s in initial_states]
    mask = None if lengths is None else mask_from_lengths(lengths, x.shape[0], x.shape[1])
    tf = require("tensorflow")
    result = _compiled(layer_or_model)(
        tf.constant(x),
        None if states is None else [tf.constant(s) for s in states],
        None if mask is None else tf.constant(mask),
    )
    # Keras returns (outputs..., states...) in the order output_names() gives them.
    return tuple(np.asarray(value) for value in keras.tree.flatten(result))


def compute_dtype(obj: Any) -> str:
    """The least precise dtype that ``obj`` or a layer inside it computes in.

    A mixed-precision policy (``"mixed_float16"``, ``"mixed_bfloat16"``) keeps float32
    variables and computes in float16 or bfloat16; a Bidirectional's halves may differ
    from the wrapper. Works for Keras 3 and tf_keras layers and models alike.

    Example:
        >>> compute_dtype(keras.layers.GRU(2, dtype="mixed_float16"))
        'float16'
    """
    from ..comparison import least_precise

    members = [obj, *getattr(obj, "layers", []), *_recurrent_members_any(obj)]
    dtypes = [getattr(member, "compute_dtype", None) for member in members]
    floats = [dtype for dtype in dtypes if isinstance(dtype, str) and is_float_dtype(dtype)]
    return least_precise(*floats) if floats else "float32"


def _recurrent_members_any(obj: Any) -> list[Any]:
    """The halves of Bidirectional wrappers in ``obj`` (itself or its layers), by attribute."""
    layers = [obj, *getattr(obj, "layers", [])]
    return [
        half
        for layer in layers
        for half in (getattr(layer, "forward_layer", None), getattr(layer, "backward_layer", None))
        if half is not None
    ]


def _compute_dtype(layer_or_model: Any, keras: Any) -> str:
    if isinstance(layer_or_model, keras.Sequential):
        first = [m for m in layer_or_model.layers if not isinstance(m, keras.layers.InputLayer)]
        return first[0].compute_dtype
    return layer_or_model.compute_dtype


def _compiled(layer_or_model: Any) -> Callable[..., Any]:
    try:
        return _COMPILED[layer_or_model]
    except KeyError:
        pass
    tf = require("tensorflow")
    # Keras 3 on TensorFlow: tf.function traces the layer's call into a graph, the way
    # model.predict runs it. TensorFlow counts retracing per Python code object, so each
    # layer gets its own callable object rather than a closure sharing one code object.
    compiled = tf.function(_LayerCall(layer_or_model), reduce_retracing=True)
    _COMPILED[layer_or_model] = compiled
    return compiled


class _LayerCall:
    """Calls a Keras layer in inference mode; holds it weakly so the cache does not keep it."""

    def __init__(self, layer_or_model: Any) -> None:
        self._target = weakref.ref(layer_or_model)

    def __call__(self, x: Any, states: Any, mask: Any) -> Any:
        kwargs: dict[str, Any] = {"training": False}
        if states is not None:
            kwargs["initial_state"] = list(states)
        if mask is not None:
            kwargs["mask"] = mask
        with warnings.catch_warnings():
            # A Sequential passes the mask on to its layers but warns that it cannot return
            # one itself; the warning is about its output mask, which nothing here uses.
            warnings.filterwarnings("ignore", message=".*does not support masking.*")
            return self._layer()(x, **kwargs)

    def _layer(self) -> Any:
        layer = self._target()
        if layer is None:  # only reachable if a traced function outlives its layer
            raise ReferenceError("the Keras layer of this compiled function no longer exists")
        return layer


# --------------------------------------------------------------------------- stateful layers


def _recurrent_members(obj: Any) -> list[Any]:
    """The plain recurrent layers inside ``obj``: itself, a Bidirectional's halves, a stack's."""
    keras = require("keras")
    if isinstance(obj, keras.Sequential):
        return [member for layer in obj.layers for member in _recurrent_members(layer)]
    if isinstance(obj, keras.layers.Bidirectional):
        return [obj.forward_layer, obj.backward_layer]
    return [obj] if isinstance(obj, keras.layers.RNN) else []


def _state_variables(obj: Any) -> list[Any]:
    return [
        state
        for layer in _recurrent_members(obj)
        if layer.stateful and getattr(layer, "states", None) is not None
        for state in layer.states
    ]


def fixed_batch_size(obj: Any) -> int | None:
    """The batch size a stateful layer was built for, or None for a stateless one."""
    states = _state_variables(obj)
    return int(states[0].shape[0]) if states else None


def snapshot_states(obj: Any) -> list[np.ndarray]:
    """Copies of the states a stateful layer carries between calls (empty if stateless)."""
    return [np.array(state.numpy()) for state in _state_variables(obj)]


def restore_states(obj: Any, snapshot: Sequence[np.ndarray]) -> None:
    """Put back states taken by :func:`snapshot_states`, e.g. after a verification run."""
    for state, value in zip(_state_variables(obj), snapshot, strict=True):
        state.assign(value)


def reset_keras_states(obj: Any) -> None:
    """Reset every stateful layer in ``obj`` to zero states, as Keras's ``reset_states``."""
    for layer in _recurrent_members(obj):
        if layer.stateful:
            layer.reset_states()
