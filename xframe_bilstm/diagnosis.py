"""Find out why two recurrent layers that should compute the same thing do not.

:func:`diagnose` runs two recurrent objects on one input and, when they disagree, tests cheap
hypotheses about the cause, from the weights where both sides have a canonical form and from
the outputs always. It returns a :class:`Diagnosis` whose ``code`` is one of these stable
strings (``causes`` lists every one that applies, the primary first):

- ``equivalent``: they agree within :func:`~xframe_bilstm.comparison.derived_tolerance` of the
  expected stack (float32 rounding for this model and input; float64 when both run in it).
- ``numerical_only``: they differ by more than that but by less than the same noise measure
  scaled to a 10-bit mantissa (eps 2**-10, as in TF32 matrix products and float16), and no
  hypothesis below applies: rounding, not a bug.
- ``weights_differ``: the canonical weights differ and no specific weight hypothesis explains
  it (e.g. Keras's ``Bidirectional`` re-created its forward layer with fresh weights); the
  message names the layer, direction and arrays.
- ``backward_not_reversed``: flipping the backward half of the output sequence in time makes
  them agree (the backward output was taken in processing order, as ``go_backwards`` returns
  it, where input time order was expected).
- ``directions_swapped``: swapping the forward and backward weights (or output halves and
  states) makes them agree.
- ``gate_order``: permuting the gate blocks of actual's weights makes them equal to
  expected's; the message names the permutation (e.g. "z,r,h read as r,z,h").
- ``bias_double_counted``: actual's effective bias is twice expected's (e.g. one Keras bias
  copied into both ``bias_ih`` and ``bias_hh``).
- ``bias_missing``: actual has no bias, or a zero one, where expected's is non-zero.
- ``kernel_not_transposed``: actual's kernel is expected's reshaped instead of transposed
  (e.g. ``weight_ih = kernel.reshape(G·H, D)`` in place of ``kernel.T``).
- ``activation_mismatch``: an activation differs by canonical name (e.g.
  ``hard_sigmoid_keras2`` against ``hard_sigmoid_keras3``).
- ``gru_reset_after_mismatch``: the GRUs differ in ``reset_after``.
- ``final_state_from_last_output``: actual's backward final state is the backward half of the
  output's last time step (PyTorch ``output[:, -1, H:]``), which is the state after reading
  only the last input; the backward final state is ``output[:, 0, H:]``.
- ``padding_semantics``: with ``lengths``, they agree at valid steps but not at padded ones,
  or one side ran over the padding (it matches an unmasked run).
- ``unknown``: none of the above.

What each side may be, and how it runs, in the Keras output structure
(:func:`~xframe_bilstm.canonical.output_names`), every array converted to float64:

- a Keras 3 layer or ``Sequential`` (LSTM, GRU, SimpleRNN, Bidirectional): run compiled by
  :func:`~xframe_bilstm.adapters.keras.run_keras` (an unbuilt one is built by calling it once);
- a :class:`~xframe_bilstm.canonical.RecurrentStack`: run by the float64 reference;
- a :class:`~xframe_bilstm.adapters.torch.KerasRecurrent` (from ``keras_to_torch``): run as is;
- a native ``nn.LSTM``/``nn.GRU``/``nn.RNN``: its weights run in a ``KerasRecurrent`` (same
  math), returning what the other side returns (its ``output`` and ``h_n`` hold all of it);
- any other ``torch.nn.Module`` whose ``forward`` takes one batch-first tensor and returns a
  tensor or a (nested) tuple of tensors: flattened in order and matched by position to the
  other side's outputs (so return Keras's order, e.g. ``output, h_f, c_f, h_b, c_b``). It
  gets no ``lengths`` and has no canonical form, so only output-level hypotheses apply;
- ``actual`` may also be a pair ``(forward_layer, backward_layer)`` of single-direction
  layers: each runs alone, and their first outputs are concatenated along features as they
  come (no flip), their states forward then backward, as one checks a ``Bidirectional`` by
  hand.

How the causes are found, in this order:

1. Options (activations, ``reset_after``) are compared layer by layer.
2. Each direction's weights are matched with expected's: identity first, then every gate
   permutation, kernels reshaped instead of transposed, a doubled or missing bias, and the
   two directions of a layer exchanged. What is found is verified by running actual's
   weights with the mistakes undone through the reference; directions nothing explains are
   ``weights_differ``.
3. Unless actual's weights in expected's layer already reproduce actual, its outputs are
   compared with expected's layer (holding actual's weights, mistakes undone, when the
   weights differ): flipped backward half, swapped halves, both; the backward final state
   against the last output step; with ``lengths``, valid steps alone and an unmasked run.
   An output-level fix counts when it brings the error within the numerical bound and
   removes at least 90% of it.
4. ``numerical_only`` needs matching weights (or none to compare) and no cause above.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ._imports import require
from .canonical import (
    DirectionWeights,
    RecurrentLayer,
    RecurrentStack,
    layer_state_names,
    output_names,
)
from .comparison import Comparison, compare_outputs, derived_tolerance
from .errors import UnsupportedFeatureError, WeightShapeError, XFrameError
from .gates import CANONICAL_ORDER, TORCH_ORDER, reorder_gates
from .reference import run_reference
from .sources import framework_of, to_canonical

CODES = (
    "equivalent",
    "numerical_only",
    "weights_differ",
    "backward_not_reversed",
    "directions_swapped",
    "gate_order",
    "bias_double_counted",
    "bias_missing",
    "kernel_not_transposed",
    "activation_mismatch",
    "gru_reset_after_mismatch",
    "final_state_from_last_output",
    "padding_semantics",
    "unknown",
)
# Which cause is primary when several apply: options first (they are facts, not guesses),
# then specific weight faults, then unexplained weights, then what the outputs show.
_PRIORITY = (
    "activation_mismatch",
    "gru_reset_after_mismatch",
    "directions_swapped",
    "kernel_not_transposed",
    "gate_order",
    "bias_double_counted",
    "bias_missing",
    "weights_differ",
    "backward_not_reversed",
    "final_state_from_last_output",
    "padding_semantics",
)

DIAGNOSIS_BATCH = 2
DIAGNOSIS_STEPS = 7
# Weights read back from float32 (or with two torch biases folded into one) may differ from
# the same weights elsewhere by a few float32 units in the last place; real faults are far off.
_WEIGHT_RTOL = 1e-6
# An output-level fix must remove at least this share of the error to count as the cause.
_FIX_GAIN = 10.0


@dataclass(frozen=True)
class Diagnosis:
    """Why ``actual`` does (not) compute what ``expected`` computes.

    Attributes:
        code: the primary cause, one of :data:`CODES`.
        causes: every cause that applies, the primary first.
        message: one sentence naming the cause with its evidence.
        max_abs_error: the largest absolute difference of the raw outputs, before any fix.
        comparison: the comparison of the raw outputs.
        error_after_fix: the largest difference once the primary cause is undone, if known.
        details: one sentence per cause, in the order of ``causes``.

    Example:
        >>> from xframe_bilstm.comparison import compare_outputs
        >>> same = compare_outputs(["output"], [np.zeros(2)], [np.zeros(2)], atol=1e-7)
        >>> result = Diagnosis("equivalent", ("equivalent",), "they agree", 0.0, same)
        >>> bool(result), result.to_dict()["code"]
        (True, 'equivalent')
    """

    code: str
    causes: tuple[str, ...]
    message: str
    max_abs_error: float
    comparison: Comparison
    error_after_fix: float | None = None
    details: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.code in ("equivalent", "numerical_only")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (the comparison reduced to one entry per array)."""
        return {
            "code": self.code,
            "causes": list(self.causes),
            "message": self.message,
            "details": list(self.details),
            "max_abs_error": self.max_abs_error,
            "error_after_fix": self.error_after_fix,
            "comparison": {
                "label": self.comparison.label,
                "passed": bool(self.comparison),
                "arrays": [
                    {
                        "name": array.name,
                        "shape": list(array.shape),
                        "max_abs_error": array.max_abs_error,
                        "atol": array.atol,
                        "passed": array.passed,
                        "problem": array.problem,
                    }
                    for array in self.comparison.arrays
                ],
            },
        }


def format_error(value: float) -> str:
    """An error as messages print it: two significant digits, short exponent.

    Example:
        >>> format_error(3.14e-8), format_error(0.4123), format_error(float("inf"))
        ('3.1e-8', '0.41', 'inf')
    """
    text = f"{value:.2g}"
    return re.sub(r"e([+-])0*(\d)", lambda m: "e" + m.group(1).replace("+", "") + m.group(2), text)


@dataclass(frozen=True)
class _Finding:
    code: str
    message: str
    error_after: float | None = None


# --------------------------------------------------------------------------- the two sides


@dataclass(frozen=True)
class _Flags:
    """What a side that can return anything (a native torch module) is asked to return."""

    return_sequences: bool = True
    return_state: bool = True
    merge_mode: str | None = "concat"


@dataclass
class _Side:
    """One of the two objects: what it is, its canonical form once known, how to run it."""

    obj: Any
    kind: str  # canonical | keras | keras_opaque | keras_recurrent | native | custom | pair
    label: str
    halves: tuple[_Side, _Side] | None = None
    stack: RecurrentStack | None = None

    @property
    def flexible(self) -> bool:
        """Whether its output structure is ours to choose (native torch modules)."""
        if self.halves is not None:
            return all(half.flexible for half in self.halves)
        return self.kind == "native"


def _side(obj: Any, role: str) -> _Side:
    if isinstance(obj, (tuple, list)):
        if len(obj) != 2:
            raise UnsupportedFeatureError(
                f"{role}: a sequence must be a pair (forward_layer, backward_layer); got "
                f"{len(obj)} items"
            )
        halves = (_side(obj[0], role + "[0]"), _side(obj[1], role + "[1]"))
        if any(half.halves is not None for half in halves):
            raise UnsupportedFeatureError(f"{role}: the halves of a pair cannot be pairs")
        label = f"({halves[0].label}, {halves[1].label})"
        return _Side(obj, "pair", label, halves=halves)
    framework = framework_of(obj)
    name = getattr(obj, "name", "")
    label = f"{type(obj).__name__} {name!r}" if isinstance(name, str) and name else ""
    label = label or type(obj).__name__
    if framework != "torch":
        return _Side(obj, framework, label)
    torch = require("torch")
    from .adapters.torch import KerasRecurrent

    if isinstance(obj, KerasRecurrent):
        return _Side(obj, "keras_recurrent", label)
    if type(obj) in (torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN):
        return _Side(obj, "native", label)
    return _Side(obj, "custom", label)


def _members(side: _Side) -> tuple[_Side, ...]:
    return side.halves if side.halves is not None else (side,)


def _build_keras(side: _Side, x: np.ndarray) -> None:
    """Call an unbuilt Keras layer once on ``x`` so that it has weights to compare."""
    for member in _members(side):
        if member.kind in ("keras", "keras_opaque") and not member.obj.built:
            member.obj(x)


def _read_canonical(side: _Side) -> None:
    for member in _members(side):
        if member.kind in ("custom", "keras_opaque", "pair") or member.stack is not None:
            continue
        if member.kind == "keras" and not member.obj.built:
            continue  # built once the input is known
        try:
            member.stack = to_canonical(member.obj)
        except UnsupportedFeatureError:
            if member.kind != "keras":
                raise
            # E.g. the backward layer handed to a Bidirectional, which set its
            # zero_output_for_mask: still runnable, only without a canonical form.
            member.kind = "keras_opaque"
    if side.halves is not None:
        side.stack = _pair_stack(*side.halves)


def _pair_stack(forward: _Side, backward: _Side) -> RecurrentStack | None:
    """The pair as one bidirectional layer (its weights; the running differs), if it fits."""
    if forward.stack is None or backward.stack is None:
        return None
    f_stack, b_stack = forward.stack, backward.stack
    if len(f_stack.layers) != 1 or len(b_stack.layers) != 1:
        return None
    f_layer, b_layer = f_stack.last, b_stack.last
    if "bidirectional" in (f_layer.direction, b_layer.direction):
        raise UnsupportedFeatureError(
            "the halves of a pair must be single-direction layers; got a bidirectional one"
        )
    options = ("cell", "input_size", "units", "activation", "recurrent_activation", "reset_after")
    if any(getattr(f_layer, name) != getattr(b_layer, name) for name in options):
        return None  # one canonical layer holds one set of options
    try:
        layer = replace(
            f_layer,
            weights=(f_layer.weights[0], b_layer.weights[0]),
            direction="bidirectional",
            merge_mode="concat",
        )
    except XFrameError:  # e.g. one half has a bias and the other none
        return None
    return RecurrentStack((layer,), f_stack.return_sequences, f_stack.return_state)


def _flags_of(stack: RecurrentStack) -> _Flags:
    last = stack.last
    merge = last.merge_mode if last.direction == "bidirectional" else "concat"
    return _Flags(stack.return_sequences, stack.return_state, merge)


def _target_flags(expected: _Side, actual: _Side) -> _Flags:
    for side in (expected, actual):
        if not side.flexible and side.stack is not None:
            return _flags_of(side.stack)
    return _Flags()


def _apply_flags(side: _Side, flags: _Flags) -> None:
    """Let native torch modules return what the other side returns."""
    for member in _members(side):
        if member.kind == "native" and member.stack is not None:
            stack = member.stack
            last = stack.last
            if last.direction == "bidirectional" and flags.merge_mode != last.merge_mode:
                last = replace(last, merge_mode=flags.merge_mode)
            member.stack = replace(
                stack,
                layers=(*stack.layers[:-1], last),
                return_sequences=flags.return_sequences,
                return_state=flags.return_state,
            )
    if side.halves is not None:
        side.stack = _pair_stack(*side.halves)


@dataclass(frozen=True)
class _Outputs:
    names: tuple[str, ...] | None  # None: positional (a custom module)
    arrays: tuple[np.ndarray, ...]


def _run(side: _Side, x: np.ndarray, lengths: Any) -> _Outputs:
    if side.halves is not None:
        return _run_pair(side.halves, x, lengths)
    if side.kind == "custom":
        return _Outputs(None, _run_custom(side.obj, x))
    if side.kind == "keras_opaque":
        return _Outputs(None, _run_keras_eager(side.obj, x, lengths))
    assert side.stack is not None
    names = output_names(side.stack)
    if side.kind == "canonical":
        arrays = run_reference(side.stack, x, lengths=lengths)
    elif side.kind == "keras":
        arrays = _run_keras(side.obj, x, lengths)
    elif side.kind == "keras_recurrent":
        arrays = _run_keras_recurrent(side.obj, x, lengths)
    else:
        require("torch")
        from .adapters.torch import canonical_to_torch, run_torch

        arrays = run_torch(canonical_to_torch(side.stack), x, lengths=lengths)
    return _Outputs(names, tuple(np.asarray(a, dtype=np.float64) for a in arrays))


def _run_keras(obj: Any, x: np.ndarray, lengths: Any) -> tuple[np.ndarray, ...]:
    require("keras")
    from .adapters.keras import restore_states, run_keras, snapshot_states

    states = snapshot_states(obj)  # a stateful layer must not remember this run
    try:
        return run_keras(obj, x, lengths=lengths)
    finally:
        restore_states(obj, states)


def _run_keras_eager(obj: Any, x: np.ndarray, lengths: Any) -> tuple[np.ndarray, ...]:
    """Call a Keras layer that has no canonical form directly, in inference mode."""
    keras = require("keras")
    from .adapters.keras import restore_states, snapshot_states

    kwargs: dict[str, Any] = {"training": False}
    if lengths is not None:
        kwargs["mask"] = np.arange(x.shape[1])[None, :] < np.asarray(lengths)[:, None]
    states = snapshot_states(obj)
    try:
        result = obj(np.asarray(x, dtype=obj.compute_dtype), **kwargs)
    finally:
        restore_states(obj, states)
    return tuple(np.asarray(v, dtype=np.float64) for v in keras.tree.flatten(result))


def _run_keras_recurrent(module: Any, x: np.ndarray, lengths: Any) -> tuple[np.ndarray, ...]:
    from .adapters.torch import run_torch

    carried = module._carried  # a stateful module must not remember this run
    try:
        return run_torch(module, x, lengths=lengths)
    finally:
        module._carried = carried


def _run_custom(module: Any, x: np.ndarray) -> tuple[np.ndarray, ...]:
    torch = require("torch")
    parameter = next(iter(module.parameters()), None)
    dtype = torch.float32 if parameter is None else parameter.dtype
    device = None if parameter is None else parameter.device
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            result = module(torch.as_tensor(np.asarray(x), dtype=dtype, device=device))
    finally:
        module.train(was_training)
    return tuple(t.detach().to(torch.float64).cpu().numpy() for t in _flatten(result, torch))


def _flatten(result: Any, torch: Any) -> list[Any]:
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, (tuple, list)) and not isinstance(
        result, torch.nn.utils.rnn.PackedSequence
    ):
        return [t for item in result for t in _flatten(item, torch)]
    raise UnsupportedFeatureError(
        f"a custom module must return a tensor or (nested) tuples of tensors; got "
        f"{type(result).__name__}"
    )


def _run_pair(halves: tuple[_Side, _Side], x: np.ndarray, lengths: Any) -> _Outputs:
    runs = [_run(half, x, lengths) for half in halves]
    firsts = [run.arrays[0] for run in runs]
    if firsts[0].shape[:-1] != firsts[1].shape[:-1]:
        raise WeightShapeError(
            f"the halves' outputs do not concatenate: shapes {firsts[0].shape} and "
            f"{firsts[1].shape}"
        )
    names, arrays = ["output"], [np.concatenate(firsts, axis=-1)]
    for suffix, half, run in zip(("_forward", "_backward"), halves, runs):
        if half.stack is not None:
            state_names = layer_state_names(half.stack.last) if half.stack.return_state else ()
        else:  # no canonical form: one extra array is h, two are h and c
            state_names = ("h", "c")[: len(run.arrays) - 1] if len(run.arrays) <= 3 else ()
        names += [name + suffix for name in state_names]
        arrays += list(run.arrays[1 : 1 + len(state_names)])
    return _Outputs(tuple(names), tuple(arrays))


def _is_double(side: _Side) -> bool:
    """Whether the side computes in float64 (then float64 rounding is all it may show)."""
    return all(_member_is_double(member) for member in _members(side))


def _member_is_double(side: _Side) -> bool:
    if side.kind == "canonical":
        return True
    if side.kind in ("keras", "keras_opaque"):
        keras = require("keras")
        obj = side.obj
        if isinstance(obj, keras.Sequential):
            members = [m for m in obj.layers if not isinstance(m, keras.layers.InputLayer)]
            obj = members[0]
        return bool(obj.compute_dtype == "float64")
    torch = require("torch")
    parameter = next(iter(side.obj.parameters()), None)
    return parameter is not None and parameter.dtype == torch.float64


# --------------------------------------------------------------------------- the run at hand


@dataclass(frozen=True)
class _Context:
    """The input, the raw outputs by name and the bounds every hypothesis is judged by."""

    x: np.ndarray
    lengths: Any
    names: tuple[str, ...]
    expected: dict[str, np.ndarray]
    actual: dict[str, np.ndarray]
    strict_dtype: type[np.floating]
    tolerance: float
    bound: float
    before: float
    layout: RecurrentStack | None

    def tolerance_for(self, stack: RecurrentStack) -> float:
        """The strict tolerance for comparisons against ``stack``'s reference."""
        return derived_tolerance(stack, self.x, dtype=self.strict_dtype, lengths=self.lengths)

    def reference(self, stack: RecurrentStack, *, masked: bool = True) -> dict[str, np.ndarray]:
        arrays = run_reference(stack, self.x, lengths=self.lengths if masked else None)
        return dict(zip(output_names(stack), arrays))

    def error(self, target: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> float:
        """The largest difference over the compared names (inf on a missing name or shape)."""
        worst = 0.0
        for name in self.names:
            if name not in target or name not in candidate:
                return float("inf")
            worst = max(worst, _max_diff(target[name], candidate[name]))
        return worst

    def evidence(self, after: float) -> str:
        return f"agree to {format_error(after)} (max error before: {format_error(self.before)})"


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    difference = np.abs(a - b)
    return float(np.inf) if np.isnan(difference).any() else float(difference.max())


def _align(expected: _Outputs, actual: _Outputs) -> tuple[tuple[str, ...], dict, dict]:
    """Name both sides' arrays (positional ones after the other side) and pick common names."""
    e_names = expected.names or actual.names
    if e_names is None:
        e_names = tuple(f"output_{i}" for i in range(len(expected.arrays)))
    a_names = actual.names or e_names
    e = _split_output(dict(zip(e_names, expected.arrays)), a_names)
    a = _split_output(dict(zip(a_names, actual.arrays)), e_names)
    return tuple(name for name in e if name in a), e, a


def _split_output(arrays: dict[str, np.ndarray], other: Sequence[str]) -> dict[str, np.ndarray]:
    """A concatenated ``output`` as two halves where the other side left them unmerged
    (``merge_mode=None``), e.g. a pair of layers against such a Bidirectional."""
    if "output" not in arrays or "output_forward" not in other or "output" in other:
        return arrays
    output = arrays.pop("output")
    units = output.shape[-1] // 2
    return {"output_forward": output[..., :units], "output_backward": output[..., units:], **arrays}


def _fallback_tolerance(
    arrays: Sequence[np.ndarray], dtype: type[np.floating], steps: int
) -> float:
    """For two custom modules (no canonical form to measure noise with): a few ulps per step."""
    scale = max(max((float(np.max(np.abs(a), initial=0.0)) for a in arrays), default=0.0), 1.0)
    return 16.0 * float(np.finfo(dtype).eps) * scale * steps


# --------------------------------------------------------------------------- weight level


@dataclass(frozen=True)
class _Slot:
    """One direction of one layer: where it is, its layer's options and its weights."""

    layer: int
    direction: str
    owner: RecurrentLayer
    weights: DirectionWeights

    @property
    def where(self) -> str:
        return f"layer {self.layer} {self.direction}"


# A direction's kernel, recurrent kernel and bias rows (see _bias_rows), in float64.
_Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]


def _slots(layer: RecurrentLayer, index: int) -> list[_Slot]:
    labels = ("forward", "backward") if layer.direction == "bidirectional" else (layer.direction,)
    return [_Slot(index, label, layer, w) for label, w in zip(labels, layer.weights)]


def _structure_difference(expected: RecurrentStack, actual: RecurrentStack) -> str | None:
    if len(expected.layers) != len(actual.layers):
        return f"expected has {len(expected.layers)} layers, actual {len(actual.layers)}"
    for index, (e, a) in enumerate(zip(expected.layers, actual.layers)):
        for field in ("cell", "input_size", "units"):
            if getattr(e, field) != getattr(a, field):
                return (
                    f"layer {index} has {field} {getattr(e, field)!r} in expected and "
                    f"{getattr(a, field)!r} in actual"
                )
        if len(e.weights) != len(a.weights):
            return (
                f"layer {index} has {len(e.weights)} directions in expected, "
                f"{len(a.weights)} in actual"
            )
    return None


def _option_findings(expected: RecurrentStack, actual: RecurrentStack) -> list[_Finding]:
    found: dict[str, list[str]] = {}
    for index, (e, a) in enumerate(zip(expected.layers, actual.layers)):
        for field in ("activation", "recurrent_activation"):
            if getattr(e, field) != getattr(a, field):
                found.setdefault("activation_mismatch", []).append(
                    f"{field} is {getattr(a, field)} in actual but {getattr(e, field)} in "
                    f"expected (layer {index})"
                )
        if e.reset_after != a.reset_after:
            found.setdefault("gru_reset_after_mismatch", []).append(
                f"reset_after is {a.reset_after} in actual but {e.reset_after} in expected "
                f"(layer {index})"
            )
    return [_Finding(code, "; ".join(parts)) for code, parts in found.items()]


def _bias_rows(
    weights: DirectionWeights, owner: RecurrentLayer, reset_after: bool | None
) -> np.ndarray:
    """The bias as the equations of ``reset_after`` see it: (2, G·H) for a reset_after GRU,
    the summed (1, G·H) otherwise (only the sum of LSTM/SimpleRNN rows matters)."""
    width = weights.kernel.shape[1]
    zeros = np.zeros(width)
    if owner.cell == "gru" and reset_after:
        rows = (weights.input_bias, weights.recurrent_bias)
        return np.stack([zeros if r is None else np.asarray(r, np.float64) for r in rows])
    summed = weights.summed_bias
    return (zeros if summed is None else np.asarray(summed, np.float64))[None]


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    scale = max(float(np.max(np.abs(b), initial=0.0)), float(np.max(np.abs(a), initial=0.0)))
    return float(np.max(np.abs(a - b), initial=0.0)) <= _WEIGHT_RTOL * scale


def _nonzero(a: np.ndarray) -> bool:
    return bool(np.any(a != 0))


_Undo = Callable[[np.ndarray], np.ndarray]


def _kernel_undos(cell: str) -> list[_Undo]:
    """Ways to undo a kernel that was reshaped where it should have been transposed."""
    canonical, native = CANONICAL_ORDER[cell], TORCH_ORDER[cell]

    def into_torch(a: np.ndarray) -> np.ndarray:  # weight_ih filled with kernel.reshape(G·H, D)
        return a.T.reshape(a.shape)

    def from_torch(a: np.ndarray) -> np.ndarray:  # kernel filled with weight_ih.reshape(D, G·H)
        return a.reshape(a.shape[::-1]).T

    def in_torch_order(undo: _Undo) -> _Undo:
        # The same mistake made on weights already permuted into torch's gate order.
        return lambda a: reorder_gates(undo(reorder_gates(a, canonical, native)), native, canonical)

    undos: list[_Undo] = [into_torch, from_torch]
    if native.translate(str.maketrans("gn", "ch")) != canonical:  # GRU: r,z,n
        undos += [in_torch_order(into_torch), in_torch_order(from_torch)]
    return undos


@dataclass(frozen=True)
class _SlotFix:
    """How one actual slot becomes expected's: each fault undone, and the fixed arrays."""

    order: str
    kernel_fixes: tuple[str, ...]
    bias_fix: str | None
    kernel: np.ndarray
    recurrent_kernel: np.ndarray
    bias_rows: np.ndarray


def _match_array(
    array: np.ndarray, target: np.ndarray, cell: str
) -> tuple[bool, np.ndarray] | None:
    """(was it reshaped, fixed array) when ``array`` is ``target`` or a reshaped ``target``."""
    if _close(array, target):
        return False, array
    for undo in _kernel_undos(cell):
        fixed = undo(array)
        if _close(fixed, target):
            return True, fixed
    return None


def _match_bias(rows: np.ndarray, target: np.ndarray) -> tuple[str | None, np.ndarray] | None:
    if _close(rows, target):
        return None, rows
    if _nonzero(target) and _close(rows, 2 * target):
        return "double", rows / 2
    row_missing = [not _nonzero(r) and _nonzero(t) for r, t in zip(rows, target)]
    if any(row_missing) and all(
        missing or _close(r, t) for missing, r, t in zip(row_missing, rows, target)
    ):
        return "missing", np.array(target)
    return None


def _normalized(slot: _Slot, like: RecurrentLayer) -> _Arrays:
    w = slot.weights
    return (
        np.asarray(w.kernel, np.float64),
        np.asarray(w.recurrent_kernel, np.float64),
        _bias_rows(w, slot.owner, like.reset_after),
    )


def _match_slot(actual: _Slot, expected: _Slot) -> _SlotFix | None:
    """The faults that turn ``actual``'s weights into ``expected``'s, or None."""
    layer = expected.owner
    canonical = layer.gate_order
    kernel, recurrent, bias = _normalized(actual, layer)
    e_kernel, e_recurrent, e_bias = _normalized(expected, layer)
    for order in ("".join(p) for p in itertools.permutations(canonical)):  # identity first
        k = _match_array(reorder_gates(kernel, order, canonical), e_kernel, layer.cell)
        r = _match_array(reorder_gates(recurrent, order, canonical), e_recurrent, layer.cell)
        b = _match_bias(reorder_gates(bias, order, canonical), e_bias)
        if k is not None and r is not None and b is not None:
            reshaped = tuple(name for name, m in (("kernel", k), ("recurrent_kernel", r)) if m[0])
            return _SlotFix(order, reshaped, b[0], k[1], r[1], b[1])
    return None


def _differences(actual: _Slot, expected: _Slot) -> str:
    names = ("kernel", "recurrent_kernel", "bias")
    parts = [
        f"{name} by up to {format_error(_max_diff(a, e))}"
        for name, a, e in zip(
            names, _normalized(actual, expected.owner), _normalized(expected, expected.owner)
        )
        if not _close(a, e)
    ]
    return f"{expected.where} ({', '.join(parts)})"


def _layer_weights(layer: RecurrentLayer, arrays: list[_Arrays]) -> tuple[DirectionWeights, ...]:
    use_bias = layer.use_bias or any(_nonzero(rows) for _, _, rows in arrays)
    split = layer.cell == "gru" and bool(layer.reset_after)
    return tuple(
        DirectionWeights(k, r, None if not use_bias else (rows if split else rows[0]))
        for k, r, rows in arrays
    )


# What was found where: code -> detail (e.g. a permutation) -> the directions it was found in.
_Notes = dict[str, dict[str, list[str]]]


def _note(notes: _Notes, code: str, detail: str, where: str) -> None:
    notes.setdefault(code, {}).setdefault(detail, []).append(where)


@dataclass(frozen=True)
class _WeightReport:
    findings: tuple[_Finding, ...]
    fixed: RecurrentStack  # expected's layers, actual's weights with each found fault undone
    raw: RecurrentStack | None  # expected's wiring with actual's options and weights as they are
    params_equal: bool


def _weight_report(
    expected: RecurrentStack, actual: RecurrentStack, ctx: _Context
) -> _WeightReport:
    notes: _Notes = {}
    unexplained: list[str] = []
    fixed_layers, verify_layers = [], []
    for index, (e_layer, a_layer) in enumerate(zip(expected.layers, actual.layers)):
        fixed, verify = _match_layer(index, e_layer, a_layer, notes, unexplained)
        fixed_layers.append(replace(e_layer, weights=_layer_weights(e_layer, fixed)))
        verify_layers.append(replace(e_layer, weights=_layer_weights(e_layer, verify)))
    found = _option_findings(expected, actual) + [
        _Finding(code, _fault_text(code, notes[code])) for code in _FAULT_TEXT if code in notes
    ]
    if found:
        # Verify by running the fixed weights (unexplained directions taken from expected).
        verified = ctx.reference(replace(expected, layers=tuple(verify_layers)))
        after = ctx.error(ctx.expected, verified)
        how = "that" if len(found) == 1 else f"these {len(found)} causes"
        evidence = f"with {how} undone the reference run and expected {ctx.evidence(after)}"
        found = [_Finding(f.code, f"{f.message}; {evidence}", after) for f in found]
    if unexplained:
        found.append(
            _Finding(
                "weights_differ",
                "the weights differ and no gate, bias, transpose or direction mix-up explains "
                f"it: {', '.join(unexplained)} (max error before: {format_error(ctx.before)})",
            )
        )
    return _WeightReport(
        tuple(found),
        replace(expected, layers=tuple(fixed_layers)),
        _raw_stack(expected, actual),
        not found,
    )


def _match_layer(
    index: int,
    e_layer: RecurrentLayer,
    a_layer: RecurrentLayer,
    notes: _Notes,
    unexplained: list[str],
) -> tuple[list[_Arrays], list[_Arrays]]:
    """Match one layer's directions; (actual's fixed arrays, the same with unexplained
    directions replaced by expected's) per direction, noting what was found."""
    e_slots, a_slots = _slots(e_layer, index), _slots(a_layer, index)
    matches = [_match_slot(a, e) for a, e in zip(a_slots, e_slots)]
    if len(a_slots) == 2 and None in matches:
        swapped = [_match_slot(a_slots[1], e_slots[0]), _match_slot(a_slots[0], e_slots[1])]
        if None not in swapped:
            matches, a_slots = swapped, a_slots[::-1]
            _note(notes, "directions_swapped", "", f"layer {index}")
    fixed, verify = [], []
    for a_slot, e_slot, match in zip(a_slots, e_slots, matches):
        if match is None:
            unexplained.append(_differences(a_slot, e_slot))
            fixed.append(_normalized(a_slot, e_layer))
            verify.append(_normalized(e_slot, e_layer))
        else:
            _note_fixes(notes, match, e_slot)
            fixed.append((match.kernel, match.recurrent_kernel, match.bias_rows))
            verify.append(fixed[-1])
    return fixed, verify


def _note_fixes(notes: _Notes, match: _SlotFix, slot: _Slot) -> None:
    canonical = slot.owner.gate_order
    if match.order != canonical:
        permutation = f"{','.join(canonical)} read as {','.join(match.order)}"
        _note(notes, "gate_order", permutation, slot.where)
    if match.kernel_fixes:
        _note(notes, "kernel_not_transposed", " and ".join(match.kernel_fixes), slot.where)
    if match.bias_fix == "double":
        _note(notes, "bias_double_counted", "", slot.where)
    elif match.bias_fix == "missing":
        _note(notes, "bias_missing", "", slot.where)


_FAULT_TEXT = {
    "directions_swapped": "the forward and backward weights are swapped",
    "kernel_not_transposed": "actual holds expected's {} reshaped instead of transposed",
    "gate_order": "actual's gate blocks are permuted: {}",
    "bias_double_counted": (
        "actual's effective bias is twice expected's, as when one bias is copied into both "
        "bias_ih and bias_hh"
    ),
    "bias_missing": "actual has no (or a zero) bias where expected's is non-zero",
}


def _fault_text(code: str, found: dict[str, list[str]]) -> str:
    """E.g. "actual's gate blocks are permuted: z,r,h read as r,z,h (layer 0 forward)"."""
    return "; ".join(
        f"{_FAULT_TEXT[code].format(detail)} ({', '.join(wheres)})"
        for detail, wheres in found.items()
    )


def _raw_stack(expected: RecurrentStack, actual: RecurrentStack) -> RecurrentStack | None:
    """Expected's wiring (directions, merge, flags) with actual's layers as they are."""
    try:
        layers = tuple(
            replace(a, direction=e.direction, merge_mode=e.merge_mode)
            for e, a in zip(expected.layers, actual.layers)
        )
        return replace(expected, layers=layers)
    except XFrameError:
        return None


# --------------------------------------------------------------------------- output level


def _bidirectional_units(layout: RecurrentStack | None) -> int | None:
    if layout is None or layout.last.direction != "bidirectional":
        return None
    return layout.last.units


def _flip_backward(arrays: dict[str, np.ndarray], units: int) -> dict[str, np.ndarray] | None:
    out, changed = dict(arrays), False
    y = out.get("output")
    if y is not None and y.ndim == 3 and y.shape[-1] == 2 * units:
        out["output"] = np.concatenate([y[..., :units], y[:, ::-1, units:]], axis=-1)
        changed = True
    y = out.get("output_backward")
    if y is not None and y.ndim == 3:
        out["output_backward"], changed = y[:, ::-1], True
    return out if changed else None


def _swap_halves(arrays: dict[str, np.ndarray], units: int) -> dict[str, np.ndarray] | None:
    out, changed = dict(arrays), False
    y = out.get("output")
    if y is not None and y.shape[-1] == 2 * units:
        out["output"] = np.concatenate([y[..., units:], y[..., :units]], axis=-1)
        changed = True
    for name in list(out):
        if name.endswith("_forward") and name[: -len("forward")] + "backward" in out:
            other = name[: -len("forward")] + "backward"
            out[name], out[other], changed = arrays[other], arrays[name], True
    return out if changed else None


def _swap_then_flip(arrays: dict[str, np.ndarray], units: int) -> dict[str, np.ndarray] | None:
    swapped = _swap_halves(arrays, units)
    return None if swapped is None else _flip_backward(swapped, units)


_Transform = Callable[[dict[str, np.ndarray], int], "dict[str, np.ndarray] | None"]
# (codes, what it does, how) for each output-level fix; the first one changes nothing.
_TRANSFORMS: tuple[tuple[tuple[str, ...], str, _Transform | None], ...] = (
    ((), "", None),
    (("backward_not_reversed",), "flipping the backward half in time", _flip_backward),
    (("directions_swapped",), "swapping the forward and backward halves", _swap_halves),
    (
        ("directions_swapped", "backward_not_reversed"),
        "swapping the forward and backward halves and flipping the backward half in time",
        _swap_then_flip,
    ),
)


def _transform_findings(
    ctx: _Context,
    target: dict[str, np.ndarray],
    unmasked: dict[str, np.ndarray] | None,
    units: int | None,
    prefix: str,
) -> list[_Finding]:
    """Flip and swap the halves of actual's outputs; with lengths, also judge valid steps
    alone and against an unmasked run. The best fix that explains the error wins."""
    raw = ctx.error(target, ctx.actual)
    exact: tuple[float, tuple[str, ...], str] | None = None
    padded: tuple[float, tuple[str, ...], str] | None = None
    for codes, text, transform in _TRANSFORMS:
        if transform is None:
            fixed: dict[str, np.ndarray] | None = ctx.actual
        else:
            fixed = None if units is None else transform(ctx.actual, units)
        if fixed is None:
            continue
        if codes:
            error = ctx.error(target, fixed)
            if _explains(error, raw, ctx.bound) and (exact is None or error < exact[0]):
                exact = (error, codes, f"{prefix}{text} makes them {ctx.evidence(error)}")
        for error, message in _padding_messages(ctx, target, unmasked, fixed, prefix + text):
            if _explains(error, raw, ctx.bound) and (padded is None or error < padded[0]):
                padded = (error, (*codes, "padding_semantics"), message)
    best = exact or padded
    if best is None:
        return []
    error, codes, message = best
    return [_Finding(code, message, error) for code in codes]


def _padding_messages(
    ctx: _Context,
    target: dict[str, np.ndarray],
    unmasked: dict[str, np.ndarray] | None,
    fixed: dict[str, np.ndarray],
    text: str,
) -> list[tuple[float, str]]:
    """(error, message) for: agreeing at valid steps only; matching a run over the padding."""
    if ctx.lengths is None:
        return []
    before = f"(max error before: {format_error(ctx.before)})"
    valid = ctx.error(
        _valid_only(target, ctx.lengths, ctx.layout), _valid_only(fixed, ctx.lengths, ctx.layout)
    )
    lead = f"{text} makes them" if text else "they"
    results = [
        (
            valid,
            f"{lead} agree at valid steps to {format_error(valid)} but not at padded steps "
            f"{before}",
        )
    ]
    if unmasked is not None:
        error = ctx.error(unmasked, fixed)
        agree = f"expected's layer run without the lengths to {format_error(error)}"
        message = (
            f"{text} makes actual agree with {agree}, so it ran over the padding {before}"
            if text
            else f"actual ran over the padding: it agrees with {agree} {before}"
        )
        results.append((error, message))
    return results


def _explains(after: float, before: float, bound: float) -> bool:
    return after <= bound and after * _FIX_GAIN <= before


def _final_state_findings(
    ctx: _Context, target: dict[str, np.ndarray], full: dict[str, np.ndarray], units: int
) -> list[_Finding]:
    """Actual's backward final state taken from the last step (torch ``output[:, -1, H:]``)."""
    last_step = full["output"][:, -1, units:]
    first_step = full["output"][:, 0, units:]
    fixed = dict(ctx.actual)
    if "h_backward" in ctx.actual and "h_backward" in target:
        state = ctx.actual["h_backward"]
        if _max_diff(state, target["h_backward"]) <= ctx.tolerance:
            return []
        if _max_diff(state, last_step) > ctx.bound:
            return []
        y = ctx.actual.get("output")
        has_sequence = y is not None and y.ndim == 3 and y.shape[-1] == 2 * units
        fixed["h_backward"] = y[:, 0, units:] if y is not None and has_sequence else first_step
        how = "output[:, 0, H:]" if has_sequence else "the state after reading x[0]"
        subject = "actual's backward final state"
    else:
        y = ctx.actual.get("output")
        if y is None or y.ndim != 2 or y.shape[-1] != 2 * units:
            return []
        if _max_diff(y[:, units:], last_step) > ctx.bound:
            return []
        fixed["output"] = np.concatenate([y[:, :units], first_step], axis=-1)
        how = "the state after reading x[0]"
        subject = "the backward half of actual's last output"
    error = ctx.error(target, fixed)
    if not _explains(error, ctx.error(target, ctx.actual), ctx.bound):
        return []
    return [
        _Finding(
            "final_state_from_last_output",
            f"{subject} is the backward output at the last time step (the state after reading "
            f"only x[T-1]); taking {how} instead makes them {ctx.evidence(error)}",
            error,
        )
    ]


def _valid_only(
    arrays: dict[str, np.ndarray], lengths: Any, layout: RecurrentStack | None
) -> dict[str, np.ndarray]:
    """Sequence outputs with padded steps set to zero (in processing order for go_backwards)."""
    steps = next(iter(a.shape[1] for a in arrays.values() if a.ndim == 3), 0)
    valid = np.arange(steps)[None, :] < np.asarray(lengths)[:, None]
    if layout is not None and layout.last.direction == "backward":
        valid = valid[:, ::-1]
    return {
        name: np.where(valid[..., None], a, 0.0) if name.startswith("output") and a.ndim == 3 else a
        for name, a in arrays.items()
    }


def _output_findings(
    ctx: _Context,
    target: dict[str, np.ndarray],
    target_stack: RecurrentStack | None,
    unmasked: dict[str, np.ndarray] | None,
    where: str,
) -> list[_Finding]:
    units = _bidirectional_units(ctx.layout)
    findings = _transform_findings(ctx, target, unmasked, units, where)
    if units is not None and target_stack is not None and not findings:
        full_stack = _full_stack(target_stack)
        if full_stack is not None:
            findings += _final_state_findings(ctx, target, ctx.reference(full_stack), units)
    return findings


def _full_stack(stack: RecurrentStack) -> RecurrentStack | None:
    """``stack`` returning its whole concatenated sequence and its states."""
    try:
        last = replace(stack.last, merge_mode="concat")
        return replace(
            stack, layers=(*stack.layers[:-1], last), return_sequences=True, return_state=True
        )
    except XFrameError:
        return None


# --------------------------------------------------------------------------- diagnose


def diagnose(
    expected: Any,
    actual: Any,
    *,
    inputs: np.ndarray | None = None,
    lengths: Sequence[int] | np.ndarray | None = None,
    seed: int = 0,
) -> Diagnosis:
    """Run ``expected`` and ``actual`` on one input and say why they differ, if they do.

    Args:
        expected: the reference object: a Keras 3 layer or ``Sequential``, a torch
            ``nn.LSTM``/``nn.GRU``/``nn.RNN``, a ``KerasRecurrent``, a ``RecurrentStack`` or
            a custom torch module (see the module docstring).
        actual: the object to check: any of those, or a pair ``(forward_layer,
            backward_layer)`` run alone and concatenated as they come.
        inputs: batch-first input (B, T, D); default a seeded float32 normal input with
            B=2, T=7.
        lengths: valid steps per row (B,) of right-padded input, passed to every side but
            custom modules.
        seed: seed of the default input.

    Returns:
        A :class:`Diagnosis`; truthy when they agree up to rounding.

    Example:
        >>> bi = keras.layers.Bidirectional(keras.layers.LSTM(2, return_sequences=True))
        >>> diagnose(bi, keras_to_torch(bi)).code  # doctest: +SKIP
        'equivalent'
    """
    exp, act = _side(expected, "expected"), _side(actual, "actual")
    _read_canonical(exp)
    _read_canonical(act)
    x = _input(inputs, exp, act, seed)
    for side in (exp, act):
        _build_keras(side, x)
        _read_canonical(side)
    flags = _target_flags(exp, act)
    _apply_flags(exp, flags)
    _apply_flags(act, flags)
    names, e, a = _align(_run(exp, x, lengths), _run(act, x, lengths))
    layout = exp.stack or act.stack
    strict = np.float64 if _is_double(exp) and _is_double(act) else np.float32
    tolerance, bound = _tolerances(layout, x, strict, lengths, list(e.values()))
    comparison = compare_outputs(
        names,
        [e[n] for n in names],
        [a[n] for n in names],
        atol=tolerance,
        label=f"expected {exp.label} vs actual {act.label}",
    )
    ctx = _Context(
        x, lengths, names, e, a, strict, tolerance, bound, comparison.max_abs_error, layout
    )
    if comparison:
        text = f"{np.dtype(strict).name} tolerance {format_error(tolerance)}"
        agree = _Finding(
            "equivalent", f"they agree to {format_error(ctx.before)}, within the {text}"
        )
        return _verdict(ctx, comparison, [agree])
    findings, structure, params_equal = _find_causes(ctx, exp, act)
    if not findings and params_equal and structure is None and ctx.before <= bound:
        findings = [
            _Finding(
                "numerical_only",
                f"they differ by up to {format_error(ctx.before)}, more than "
                f"{np.dtype(strict).name} rounding explains ({format_error(tolerance)}) but "
                "within the bound for 10-bit-mantissa (TF32/float16) rounding "
                f"({format_error(bound)}), and no hypothesis applies",
            )
        ]
    return _verdict(ctx, comparison, findings or [_unknown(ctx, comparison, structure)])


def _tolerances(
    layout: RecurrentStack | None,
    x: np.ndarray,
    strict: type[np.floating],
    lengths: Any,
    expected: list[np.ndarray],
) -> tuple[float, float]:
    """(strict tolerance, numerical bound): the same noise measure at ``strict`` precision
    and at a 10-bit mantissa (float16's eps 2**-10 is TF32's)."""
    if layout is None:
        steps = x.shape[1]
        return (
            _fallback_tolerance(expected, strict, steps),
            _fallback_tolerance(expected, np.float16, steps),
        )
    return (
        derived_tolerance(layout, x, dtype=strict, lengths=lengths),
        derived_tolerance(layout, x, dtype=np.float16, lengths=lengths),
    )


def _input(inputs: Any, expected: _Side, actual: _Side, seed: int) -> np.ndarray:
    if inputs is not None:
        x = np.asarray(inputs)
        if x.ndim != 3:
            raise WeightShapeError(f"inputs: expected shape (batch, time, features), got {x.shape}")
        return x
    stacks = [s.stack for side in (expected, actual) for s in (side, *_members(side)) if s.stack]
    if not stacks:
        raise WeightShapeError(
            "inputs: neither side tells its input size (custom modules and unbuilt Keras "
            "layers); pass inputs=... of shape (batch, time, features)"
        )
    rng = np.random.default_rng(seed)
    shape = (DIAGNOSIS_BATCH, DIAGNOSIS_STEPS, stacks[0].input_size)
    return rng.standard_normal(shape).astype(np.float32)


def _find_causes(
    ctx: _Context, expected: _Side, actual: _Side
) -> tuple[list[_Finding], str | None, bool]:
    """(findings, a structural difference if any, whether the weights and options match)."""
    findings: list[_Finding] = []
    structure: str | None = None
    report: _WeightReport | None = None
    if expected.stack is not None and actual.stack is not None:
        structure = _structure_difference(expected.stack, actual.stack)
        if structure is None:
            report = _weight_report(expected.stack, actual.stack, ctx)
            findings += report.findings
    # Output-level hypotheses compare actual with expected's layer; once weight faults are
    # found, with actual's weights (faults undone) in it, so that both kinds can show at once.
    target, target_stack, where = ctx.expected, expected.stack, ""
    if report is not None and not report.params_equal:
        raw = report.raw
        if raw is not None and ctx.error(ctx.reference(raw), ctx.actual) <= ctx.tolerance_for(raw):
            return findings, structure, False  # the weights explain all of it
        target, target_stack = ctx.reference(report.fixed), report.fixed
        where = "with actual's weights in expected's layer, "
    unmasked = None
    if ctx.lengths is not None and target_stack is not None:
        unmasked = ctx.reference(target_stack, masked=False)
    findings += _output_findings(ctx, target, target_stack, unmasked, where)
    return findings, structure, report is None or report.params_equal


def _unknown(ctx: _Context, comparison: Comparison, structure: str | None) -> _Finding:
    worst = max(comparison.arrays, key=lambda array: array.max_abs_error)
    problem = f" ({worst.problem})" if worst.problem else f" at index {worst.worst_index}"
    note = f"; {structure}" if structure else ""
    return _Finding(
        "unknown",
        f"no hypothesis explains the difference: max error {format_error(ctx.before)} in "
        f"{worst.name!r}{problem}{note}",
    )


def _verdict(ctx: _Context, comparison: Comparison, findings: list[_Finding]) -> Diagnosis:
    order = {code: rank for rank, code in enumerate(_PRIORITY)}
    unique: dict[str, _Finding] = {}
    for finding in sorted(findings, key=lambda f: order.get(f.code, -1)):
        unique.setdefault(finding.code, finding)
    primary = next(iter(unique.values()))
    return Diagnosis(
        code=primary.code,
        causes=tuple(unique),
        message=primary.message,
        max_abs_error=ctx.before,
        comparison=comparison,
        error_after_fix=primary.error_after,
        details=tuple(f.message for f in unique.values()),
    )


__all__ = ["CODES", "Diagnosis", "diagnose", "format_error"]
