"""Weight-level hypotheses: compare both sides' canonical weights direction by direction.

Options first (:func:`structure_difference`, then activations and ``reset_after``); then
each of actual's directions is matched with expected's: identity first, then every gate
permutation, kernels reshaped instead of transposed, a doubled or missing bias, and the two
directions of a layer exchanged (``gate_order``, ``kernel_not_transposed``,
``bias_double_counted``, ``bias_missing``, ``directions_swapped``). What is found is verified
by running actual's weights with the mistakes undone through the reference; directions
nothing explains are ``weights_differ``. :func:`weight_report` returns the findings with the
stacks the output-level hypotheses run next.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from ..canonical import DirectionWeights, RecurrentLayer, RecurrentStack
from ..errors import XFrameError
from ..gates import CANONICAL_ORDER, TORCH_ORDER, reorder_gates
from .context import Context, max_diff
from .result import Finding, format_error

# Weights read back from float32 (or with two torch biases folded into one) may differ from
# the same weights elsewhere by a few float32 units in the last place; real faults are far off.
_WEIGHT_RTOL = 1e-6


def structure_difference(expected: RecurrentStack, actual: RecurrentStack) -> str | None:
    """Why the two stacks' weights cannot be compared at all (layers, sizes, directions)."""
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


def _option_findings(expected: RecurrentStack, actual: RecurrentStack) -> list[Finding]:
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
    return [Finding(code, "; ".join(parts)) for code, parts in found.items()]


# --------------------------------------------------------------------------- one direction


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


def _normalized(slot: _Slot, like: RecurrentLayer) -> _Arrays:
    w = slot.weights
    return (
        np.asarray(w.kernel, np.float64),
        np.asarray(w.recurrent_kernel, np.float64),
        _bias_rows(w, slot.owner, like.reset_after),
    )


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


@dataclass(frozen=True)
class _SlotFix:
    """How one actual slot becomes expected's: each fault undone, and the fixed arrays."""

    order: str
    kernel_fixes: tuple[str, ...]
    bias_fix: str | None
    kernel: np.ndarray
    recurrent_kernel: np.ndarray
    bias_rows: np.ndarray


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
        f"{name} by up to {format_error(max_diff(a, e))}"
        for name, a, e in zip(
            names, _normalized(actual, expected.owner), _normalized(expected, expected.owner)
        )
        if not _close(a, e)
    ]
    return f"{expected.where} ({', '.join(parts)})"


# --------------------------------------------------------------------------- the whole stack


# What was found where: code -> detail (e.g. a permutation) -> the directions it was found in.
_Notes = dict[str, dict[str, list[str]]]


def _note(notes: _Notes, code: str, detail: str, where: str) -> None:
    notes.setdefault(code, {}).setdefault(detail, []).append(where)


@dataclass(frozen=True)
class WeightReport:
    """The weight-level findings, and the stacks the output-level hypotheses run next."""

    findings: tuple[Finding, ...]
    fixed: RecurrentStack  # expected's layers, actual's weights with each found fault undone
    raw: RecurrentStack | None  # expected's wiring with actual's options and weights as they are
    params_equal: bool


def weight_report(expected: RecurrentStack, actual: RecurrentStack, ctx: Context) -> WeightReport:
    """Compare two stacks of the same structure (see :func:`structure_difference`)."""
    notes: _Notes = {}
    unexplained: list[str] = []
    fixed_layers, verify_layers = [], []
    for index, (e_layer, a_layer) in enumerate(zip(expected.layers, actual.layers)):
        fixed, verify = _match_layer(index, e_layer, a_layer, notes, unexplained)
        fixed_layers.append(replace(e_layer, weights=_layer_weights(e_layer, fixed)))
        verify_layers.append(replace(e_layer, weights=_layer_weights(e_layer, verify)))
    found = _option_findings(expected, actual) + [
        Finding(code, _fault_text(code, notes[code])) for code in _FAULT_TEXT if code in notes
    ]
    if found:
        # Verify by running the fixed weights (unexplained directions taken from expected).
        verified = ctx.reference(replace(expected, layers=tuple(verify_layers)))
        after = ctx.error(ctx.expected, verified)
        how = "that" if len(found) == 1 else f"these {len(found)} causes"
        evidence = f"with {how} undone the reference run and expected {ctx.evidence(after)}"
        found = [Finding(f.code, f"{f.message}; {evidence}", after) for f in found]
    if unexplained:
        found.append(
            Finding(
                "weights_differ",
                "the weights differ and no gate, bias, transpose or direction mix-up explains "
                f"it: {', '.join(unexplained)} (max error before: {format_error(ctx.before)})",
            )
        )
    return WeightReport(
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


def _layer_weights(layer: RecurrentLayer, arrays: list[_Arrays]) -> tuple[DirectionWeights, ...]:
    use_bias = layer.use_bias or any(_nonzero(rows) for _, _, rows in arrays)
    split = layer.cell == "gru" and bool(layer.reset_after)
    return tuple(
        DirectionWeights(k, r, None if not use_bias else (rows if split else rows[0]))
        for k, r, rows in arrays
    )


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
