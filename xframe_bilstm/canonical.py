"""The canonical, framework-neutral form of a stack of recurrent layers.

Every adapter converts to and from these frozen dataclasses and never to another framework
directly. Weights use Keras's orientation and gate order (``x @ kernel``, LSTM ``ifco``,
GRU ``zrh``), since Keras is the framework with the most options to keep.

Shapes (D input size, H units, G gates: 4 LSTM, 3 GRU, 1 SimpleRNN):

- ``kernel`` (D, G·H) and ``recurrent_kernel`` (H, G·H).
- ``bias`` is ``None`` (no bias), (G·H,) (one bias added to the input projection) or
  (2, G·H) (row 0 input-side, row 1 recurrent-side). Only the sum of the rows matters for
  LSTM and SimpleRNN; keeping both rows keeps PyTorch's two biases bit-exact. GRU with
  ``reset_after=True`` needs the two rows (the recurrent ``h`` bias sits inside ``r ⊙ ·``);
  GRU with ``reset_after=False`` has a single bias.

Directions follow Keras: ``"backward"`` is ``go_backwards=True`` (the input is read from the
last step to the first and the outputs stay in that processing order); ``"bidirectional"``
runs both and re-aligns the backward outputs to input time before merging them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .activations import check_activation
from .errors import UnsupportedFeatureError, WeightShapeError
from .gates import CANONICAL_ORDER

CELLS = tuple(CANONICAL_ORDER)
DIRECTIONS = ("forward", "backward", "bidirectional")
MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def is_float_dtype(dtype: object) -> bool:
    """Whether ``dtype`` is a floating-point dtype, bfloat16 included.

    numpy has no bfloat16 of its own: TensorFlow, Keras and JAX use ``ml_dtypes.bfloat16``,
    which numpy sees as a void-kind type, so it is recognised by name (``ml_dtypes`` is
    not imported for that).

    Example:
        >>> is_float_dtype(np.float16), is_float_dtype(np.int32)
        (True, False)
    """
    if getattr(dtype, "name", dtype) == "bfloat16":
        return True
    try:
        resolved = np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError:
        return False
    return bool(np.issubdtype(resolved, np.floating)) or resolved.name == "bfloat16"


def _frozen_array(value: object, name: str) -> np.ndarray:
    """A read-only array: read-only arrays are kept as they are (large weights are not
    doubled); anything writable is copied, so the caller cannot change it afterwards."""
    if isinstance(value, np.ndarray) and not value.flags.writeable:
        array = value
    else:
        array = np.array(value, copy=True)
        array.setflags(write=False)
    if not is_float_dtype(array.dtype):
        raise WeightShapeError(
            f"{name}: expected a floating-point array (float16, bfloat16, float32 or float64), "
            f"got dtype {array.dtype}"
        )
    return array


@dataclass(frozen=True, eq=False)
class DirectionWeights:
    """Weights of one direction of one layer, in canonical orientation and gate order.

    Example:
        >>> w = DirectionWeights(np.zeros((3, 8)), np.zeros((2, 8)), np.zeros(8))
        >>> w.kernel.shape, w.bias_layout
        ((3, 8), 'single')
    """

    kernel: np.ndarray
    recurrent_kernel: np.ndarray
    bias: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel", _frozen_array(self.kernel, "kernel"))
        object.__setattr__(
            self, "recurrent_kernel", _frozen_array(self.recurrent_kernel, "recurrent_kernel")
        )
        if self.bias is not None:
            object.__setattr__(self, "bias", _frozen_array(self.bias, "bias"))

    def __eq__(self, other: object) -> bool:
        """Equal when every array has the same shape and values (dtypes may differ)."""
        if not isinstance(other, DirectionWeights):
            return NotImplemented
        pairs = [(self.kernel, other.kernel), (self.recurrent_kernel, other.recurrent_kernel)]
        if (self.bias is None) != (other.bias is None):
            return False
        if self.bias is not None and other.bias is not None:
            pairs.append((self.bias, other.bias))
        return all(np.array_equal(a, b) for a, b in pairs)

    __hash__ = None  # type: ignore[assignment]  # arrays are mutable-typed and unhashable

    @property
    def bias_layout(self) -> str:
        """``"none"``, ``"single"`` (G·H,) or ``"split"`` (2, G·H)."""
        if self.bias is None:
            return "none"
        return "split" if self.bias.ndim == 2 else "single"

    @property
    def input_bias(self) -> np.ndarray | None:
        """The bias added to ``x @ kernel`` (G·H,), or None."""
        if self.bias is None:
            return None
        return self.bias[0] if self.bias.ndim == 2 else self.bias

    @property
    def recurrent_bias(self) -> np.ndarray | None:
        """The bias added to ``h @ recurrent_kernel`` (G·H,), or None when there is none."""
        return self.bias[1] if self.bias is not None and self.bias.ndim == 2 else None

    @property
    def summed_bias(self) -> np.ndarray | None:
        """Both bias rows added up: what LSTM and SimpleRNN equations see."""
        if self.bias is None:
            return None
        return self.bias.sum(axis=0) if self.bias.ndim == 2 else self.bias


@dataclass(frozen=True)
class RecurrentLayer:
    """One recurrent layer: a cell kind, its options and the weights of each direction.

    ``weights`` holds one :class:`DirectionWeights` for ``"forward"`` and ``"backward"``,
    and two (forward, then backward) for ``"bidirectional"``.

    Example:
        >>> w = DirectionWeights(np.zeros((3, 8)), np.zeros((2, 8)), np.zeros(8))
        >>> layer = RecurrentLayer("lstm", input_size=3, units=2, weights=(w, w),
        ...                        direction="bidirectional", merge_mode="sum")
        >>> layer.output_size, layer.num_states
        (2, 2)
    """

    cell: str
    input_size: int
    units: int
    weights: tuple[DirectionWeights, ...]
    direction: str = "forward"
    merge_mode: str | None = "concat"
    activation: str = "tanh"
    recurrent_activation: str | None = "sigmoid"
    reset_after: bool | None = None
    # Plain (one-direction) layers only: masked steps output zeros instead of repeating the
    # previous output (Keras's zero_output_for_mask=True, which Bidirectional also sets on
    # the layers it wraps). A Bidirectional's own behaviour is implied by its direction.
    zero_masked_outputs: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", tuple(self.weights))
        if self.zero_masked_outputs and self.direction == "bidirectional":
            raise UnsupportedFeatureError(
                "zero_masked_outputs applies to forward or backward layers; a bidirectional "
                "layer zeroes masked outputs exactly when it returns sequences"
            )
        if self.cell not in CELLS:
            raise UnsupportedFeatureError(f"cell={self.cell!r} is not one of {CELLS}")
        if self.direction not in DIRECTIONS:
            raise UnsupportedFeatureError(
                f"direction={self.direction!r} is not one of {DIRECTIONS}"
            )
        if self.merge_mode not in MERGE_MODES:
            raise UnsupportedFeatureError(
                f"merge_mode={self.merge_mode!r} is not one of {MERGE_MODES}"
            )
        for name in ("input_size", "units"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise WeightShapeError(f"{name}: expected a positive integer, got {value!r}")
        check_activation(self.activation, "activation")
        if self.cell == "simple_rnn":
            if self.recurrent_activation is not None:
                raise UnsupportedFeatureError(
                    "recurrent_activation must be None for simple_rnn, which has no gates; "
                    f"got {self.recurrent_activation!r}"
                )
        else:
            if self.recurrent_activation is None:
                raise UnsupportedFeatureError(f"recurrent_activation is required for {self.cell}")
            check_activation(self.recurrent_activation, "recurrent_activation")
        if (self.cell == "gru") != (self.reset_after is not None):
            raise UnsupportedFeatureError(
                f"reset_after must be True or False for gru and None otherwise; "
                f"got {self.reset_after!r} for {self.cell}"
            )
        expected_count = 2 if self.direction == "bidirectional" else 1
        if len(self.weights) != expected_count:
            raise WeightShapeError(
                f"weights: expected {expected_count} DirectionWeights for direction="
                f"{self.direction!r}, got {len(self.weights)}"
            )
        for index, weights in enumerate(self.weights):
            self._check_direction(weights, f"weights[{index}]")
        if len({w.bias_layout for w in self.weights}) > 1:
            raise WeightShapeError("weights: every direction must have the same bias layout")

    def _check_direction(self, weights: DirectionWeights, name: str) -> None:
        if not isinstance(weights, DirectionWeights):
            raise WeightShapeError(
                f"{name}: expected DirectionWeights, got {type(weights).__name__}"
            )
        width = self.num_gates * self.units
        expected: dict[str, tuple[int, ...]] = {
            "kernel": (self.input_size, width),
            "recurrent_kernel": (self.units, width),
        }
        if weights.bias is not None:
            if self.cell == "gru" and self.reset_after:
                expected["bias"] = (2, width)
            elif self.cell == "gru" or weights.bias.ndim != 2:
                expected["bias"] = (width,)
            else:
                expected["bias"] = (2, width)
        for field_name, shape in expected.items():
            got = getattr(weights, field_name).shape
            if got != shape:
                raise WeightShapeError(
                    f"{name}.{field_name}: expected shape {shape}, got {got} "
                    f"({self.cell}, input_size={self.input_size}, units={self.units}"
                    + (f", reset_after={self.reset_after}" if self.cell == "gru" else "")
                    + ")"
                )

    @property
    def gate_order(self) -> str:
        """The canonical gate order of this cell kind, e.g. ``"ifco"``."""
        return CANONICAL_ORDER[self.cell]

    @property
    def num_gates(self) -> int:
        return len(self.gate_order)

    @property
    def num_states(self) -> int:
        """States per direction: 2 (h, c) for LSTM, 1 (h) otherwise."""
        return 2 if self.cell == "lstm" else 1

    @property
    def use_bias(self) -> bool:
        return self.weights[0].bias is not None

    @property
    def bias_layout(self) -> str:
        return self.weights[0].bias_layout

    @property
    def output_size(self) -> int:
        """Width of the output features (the merged width for bidirectional layers)."""
        if self.direction == "bidirectional" and self.merge_mode == "concat":
            return 2 * self.units
        return self.units


@dataclass(frozen=True)
class RecurrentStack:
    """Recurrent layers applied one after another, with what the stack returns.

    Every layer but the last returns its whole sequence to the next one.
    ``return_sequences`` and ``return_state`` describe the last layer, as the flags of the
    last Keras layer do: the stack returns the last layer's output and, with
    ``return_state``, that layer's final states in Keras order (``h, c`` per direction,
    forward first). ``stateful`` stacks carry their final states into the next call.

    Example:
        >>> w = DirectionWeights(np.zeros((3, 2)), np.zeros((2, 2)))
        >>> stack = RecurrentStack((RecurrentLayer("simple_rnn", 3, 2, (w,),
        ...                                        recurrent_activation=None),))
        >>> stack.input_size, stack.output_size
        (3, 2)
    """

    layers: tuple[RecurrentLayer, ...]
    return_sequences: bool = True
    return_state: bool = False
    stateful: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise WeightShapeError("layers: a stack needs at least one layer")
        for index, layer in enumerate(self.layers):
            if not isinstance(layer, RecurrentLayer):
                raise WeightShapeError(
                    f"layers[{index}]: expected RecurrentLayer, got {type(layer).__name__}"
                )
        for index, (below, above) in enumerate(zip(self.layers, self.layers[1:])):
            if below.direction == "bidirectional" and below.merge_mode is None:
                raise UnsupportedFeatureError(
                    f"layers[{index}]: merge_mode=None returns two tensors, which cannot feed "
                    f"layers[{index + 1}]; only the last layer may leave its directions unmerged"
                )
            if above.input_size != below.output_size:
                raise WeightShapeError(
                    f"layers[{index + 1}].input_size: expected {below.output_size} "
                    f"(the output size of layers[{index}]), got {above.input_size}"
                )

    @property
    def input_size(self) -> int:
        return self.layers[0].input_size

    @property
    def output_size(self) -> int:
        return self.layers[-1].output_size

    @property
    def last(self) -> RecurrentLayer:
        return self.layers[-1]


def _direction_labels(layer: RecurrentLayer) -> tuple[str, ...]:
    return ("_forward", "_backward") if layer.direction == "bidirectional" else ("",)


def layer_state_names(layer: RecurrentLayer) -> tuple[str, ...]:
    """Names of a layer's states in Keras order, e.g. ``('h_forward', 'c_forward', ...)``.

    Example:
        >>> w = DirectionWeights(np.zeros((3, 6)), np.zeros((2, 6)))
        >>> layer_state_names(RecurrentLayer("gru", 3, 2, (w, w), "bidirectional",
        ...                                  reset_after=False))
        ('h_forward', 'h_backward')
    """
    kinds = ("h", "c")[: layer.num_states]
    return tuple(kind + label for label in _direction_labels(layer) for kind in kinds)


def initial_state_count(stack: RecurrentStack) -> int:
    """How many arrays a full set of initial states has: every layer's, layer after layer."""
    return sum(len(layer_state_names(layer)) for layer in stack.layers)


def output_names(stack: RecurrentStack) -> tuple[str, ...]:
    """Names of what the stack returns, in the order Keras returns them.

    Example:
        >>> w = DirectionWeights(np.zeros((3, 8)), np.zeros((2, 8)))
        >>> layer = RecurrentLayer("lstm", 3, 2, (w, w), "bidirectional", merge_mode=None)
        >>> output_names(RecurrentStack((layer,), return_state=True))
        ('output_forward', 'output_backward', 'h_forward', 'c_forward', 'h_backward', 'c_backward')
    """
    last = stack.last
    unmerged = last.direction == "bidirectional" and last.merge_mode is None
    outputs = (
        tuple("output" + label for label in _direction_labels(last)) if unmerged else ("output",)
    )
    return outputs + (layer_state_names(last) if stack.return_state else ())


def placeholder(array: np.ndarray) -> np.ndarray:
    """Broadcast zeros shaped and typed as ``array``: no memory of their own.

    Example:
        >>> held = placeholder(np.ones((1000, 1000), "float32"))
        >>> held.shape, held.dtype, held.strides
        ((1000, 1000), dtype('float32'), (0, 0))
    """
    return np.broadcast_to(np.zeros((), np.asarray(array).dtype), np.shape(array))


def layer_structure(layer: RecurrentLayer) -> RecurrentLayer:
    """``layer`` with placeholder weights: for a holder whose parameters keep the weights.

    Example:
        >>> layer = RecurrentLayer("gru", 3, 2, (DirectionWeights(
        ...     np.ones((3, 6)), np.ones((2, 6)), np.ones((2, 6))),), reset_after=True)
        >>> kept = layer_structure(layer).weights[0]
        >>> kept.kernel.shape, kept.bias.shape, kept.kernel.strides, float(kept.bias.sum())
        ((3, 6), (2, 6), (0, 0), 0.0)
    """
    weights = tuple(
        DirectionWeights(
            placeholder(w.kernel),
            placeholder(w.recurrent_kernel),
            None if w.bias is None else placeholder(w.bias),
        )
        for w in layer.weights
    )
    return replace(layer, weights=weights)
