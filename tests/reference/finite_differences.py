"""Central finite differences of a canonical stack's weighted outputs, in float64.

The independent check of the reference gradient: every input, initial state and weight
element is nudged by ±ε and the stack re-run by :func:`run_reference`; nothing here uses
the backward pass.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from xframe_bilstm import DirectionWeights, RecurrentLayer, RecurrentStack, run_reference
from xframe_bilstm.canonical import initial_state_count, output_names

EPSILON = 1e-6
SIDES = ("forward", "backward")


def random_layer(
    rng: np.random.Generator,
    cell: str,
    input_size: int,
    units: int,
    *,
    direction: str = "forward",
    merge_mode: str | None = "concat",
    activation: str = "tanh",
    recurrent_activation: str | None = "sigmoid",
    reset_after: bool | None = None,
    bias: str = "split",
    zero_masked_outputs: bool = False,
    scale: float = 0.6,
) -> RecurrentLayer:
    """A layer with random weights of standard deviation ``scale`` (biases half that);
    ``bias`` is "none", "single" or "split" (where the cell allows it)."""
    gates = {"lstm": 4, "gru": 3, "simple_rnn": 1}[cell]
    if cell == "gru":
        reset_after = True if reset_after is None else reset_after
        bias = "split" if reset_after and bias != "none" else bias
        bias = "single" if not reset_after and bias == "split" else bias
    if cell == "simple_rnn":
        recurrent_activation = None
    width = gates * units

    def direction_weights() -> DirectionWeights:
        shape = {"none": None, "single": (width,), "split": (2, width)}[bias]
        return DirectionWeights(
            rng.normal(0, scale, (input_size, width)),
            rng.normal(0, scale, (units, width)),
            None if shape is None else rng.normal(0, scale / 2, shape),
        )

    count = 2 if direction == "bidirectional" else 1
    return RecurrentLayer(
        cell,
        input_size,
        units,
        tuple(direction_weights() for _ in range(count)),
        direction,
        merge_mode,
        activation,
        recurrent_activation,
        reset_after,
        zero_masked_outputs,
    )


def random_cotangents(
    rng: np.random.Generator,
    stack: RecurrentStack,
    x: np.ndarray,
    initial_states: list[np.ndarray] | None = None,
    lengths: list[int] | None = None,
) -> list[np.ndarray]:
    """One random array per output, shaped as the output."""
    outputs = run_reference(stack, x, initial_states=initial_states, lengths=lengths)
    assert len(outputs) == len(output_names(stack))
    return [rng.standard_normal(y.shape) for y in outputs]


def random_states(rng: np.random.Generator, stack: RecurrentStack, batch: int) -> list:
    units = [u for layer in stack.layers for u in [layer.units] * _states(layer)]
    assert len(units) == initial_state_count(stack)
    return [rng.normal(0, 0.5, (batch, u)) for u in units]


def _states(layer: RecurrentLayer) -> int:
    return layer.num_states * len(layer.weights)


def _with_weight(stack: RecurrentStack, name: str, value: np.ndarray) -> RecurrentStack:
    """``stack`` with the weight named ``layers[k].side.field`` replaced by ``value``."""
    where, side, field = name.split(".")
    index = int(where[len("layers[") : -1])
    layer = stack.layers[index]
    weights = list(layer.weights)
    position = SIDES.index(side)
    weights[position] = replace(weights[position], **{field: value})
    layers = list(stack.layers)
    layers[index] = replace(layer, weights=tuple(weights))
    return replace(stack, layers=tuple(layers))


def weight_arrays(stack: RecurrentStack) -> dict[str, np.ndarray]:
    """Every weight by the library's name."""
    return {
        f"layers[{i}].{side}.{field}": getattr(w, field)
        for i, layer in enumerate(stack.layers)
        for side, w in zip(SIDES, layer.weights)
        for field in ("kernel", "recurrent_kernel", "bias")
        if getattr(w, field) is not None
    }


def finite_differences(
    stack: RecurrentStack,
    x: np.ndarray,
    cotangents: list[np.ndarray],
    *,
    initial_states: list[np.ndarray] | None = None,
    lengths: list[int] | None = None,
) -> dict[str, np.ndarray]:
    """The gradient of ``Σ g ⊙ y`` by central differences, named as ``named()`` names it."""
    states = initial_states or [
        np.zeros((x.shape[0], layer.units)) for layer in stack.layers for _ in range(_states(layer))
    ]

    def loss(s: RecurrentStack, x_: np.ndarray, states_: list[np.ndarray]) -> float:
        outputs = run_reference(s, x_, initial_states=states_, lengths=lengths)
        return float(sum(np.sum(g * y) for g, y in zip(cotangents, outputs)))

    def gradient(array: np.ndarray, evaluate) -> np.ndarray:
        result = np.zeros(array.shape)
        for position in np.ndindex(array.shape):
            plus, minus = np.array(array, np.float64), np.array(array, np.float64)
            plus[position] += EPSILON
            minus[position] -= EPSILON
            result[position] = (evaluate(plus) - evaluate(minus)) / (2 * EPSILON)
        return result

    named = {"inputs": gradient(x, lambda v: loss(stack, v, states))}
    for i, state in enumerate(states):

        def with_state(v: np.ndarray, i: int = i) -> float:
            return loss(stack, x, [*states[:i], v, *states[i + 1 :]])

        named[f"initial_states[{i}]"] = gradient(state, with_state)
    for name, weight in weight_arrays(stack).items():

        def with_weight(v: np.ndarray, name: str = name) -> float:
            return loss(_with_weight(stack, name, v), x, states)

        named[name] = gradient(weight, with_weight)
    return named


def assert_matches_finite_differences(
    ours: dict[str, np.ndarray], expected: dict[str, np.ndarray], atol: float = 1e-7
) -> None:
    """Every gradient agrees with its finite difference, named when it does not."""
    assert list(ours) == list(expected)
    for name, value in expected.items():
        assert ours[name].shape == value.shape, name
        np.testing.assert_allclose(ours[name], value, rtol=1e-6, atol=atol, err_msg=name)
