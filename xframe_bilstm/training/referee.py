"""The float64 referee: an update rule in numpy on gradients from float64 autograd of the
port, its float32 drift (the tolerance), and what one convention alone changes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..canonical import RecurrentStack
from ..comparison import FLOOR_ULPS, NOISE_FACTOR
from .optimizers import Convention, UpdateRule, apply_rule, split_names
from .report import ConventionEffect
from .weights import flat_weights, torch_gradients, with_weights

Batch = tuple[np.ndarray, list[np.ndarray]]
Trajectory = list[dict[str, np.ndarray]]


def output_count(stack: RecurrentStack) -> int:
    last = stack.last
    return 2 if last.direction == "bidirectional" and last.merge_mode is None else 1


def outputs_of(result: Any, count: int) -> list[Any]:
    return list(result[:count]) if isinstance(result, (tuple, list)) else [result]


def mse(outputs: Sequence[Any], targets: Sequence[Any], mean: Any = None) -> Any:
    """The sum over outputs of each one's mean squared error (``mean``: the framework's)."""
    average = mean or (lambda value: value.mean())
    return sum(average((o - t) ** 2) for o, t in zip(outputs, targets, strict=True))


def reference_run(
    stack: RecurrentStack,
    rule: UpdateRule,
    batches: list[Batch],
    folded: set[str],
    dtype: Any = np.float64,
) -> Trajectory:
    """``rule`` in numpy on gradients from autograd of the port built in ``dtype``."""
    start = flat_weights(stack, dtype)
    slots = split_names(list(start), folded if rule.split_bias else set())
    params: dict[str, np.ndarray] = {}
    for name, names in slots.items():
        params[names[0]] = start[name].copy()
        for extra in names[1:]:  # bias_hh starts at zero, as in the port
            params[extra] = np.zeros_like(start[name])

    def canonical() -> dict[str, np.ndarray]:
        return {name: np.sum([params[s] for s in names], axis=0) for name, names in slots.items()}

    state: dict[str, np.ndarray] = {}
    trajectory = [canonical()]
    for step, (x, targets) in enumerate(batches, start=1):
        grads = gradients(stack, canonical(), x, targets, dtype)
        apply_rule(
            rule,
            params,
            {s: grads[name].astype(dtype) for name, names in slots.items() for s in names},
            state,
            step=step,
        )
        trajectory.append(canonical())
    return trajectory


def gradients(
    stack: RecurrentStack,
    flat: Mapping[str, np.ndarray],
    x: np.ndarray,
    targets: Sequence[np.ndarray],
    dtype: Any,
) -> dict[str, np.ndarray]:
    import torch

    from ..adapters.torch.module import canonical_to_torch

    module = canonical_to_torch(with_weights(stack, flat))
    outputs = outputs_of(module(torch.from_numpy(x.astype(dtype))), output_count(stack))
    mse(outputs, [torch.from_numpy(t.astype(dtype)) for t in targets]).backward()
    return torch_gradients(module)


def tolerance(
    stack: RecurrentStack,
    rule: UpdateRule,
    batches: list[Batch],
    folded: set[str],
    reference: Trajectory,
) -> list[dict[str, float]]:
    """Per step and weight: what float32 can move a correct run by.

    Ten times the float32 run's drift from the float64 one, plus a few float32 ulps of the
    weight, plus twice the distance moved times the relative error of the rule's constants
    in float32 (:func:`constant_rounding`).
    """
    single = reference_run(stack, rule, batches, folded, np.float32)
    eps = float(np.finfo(np.float32).eps)
    rounding = constant_rounding(rule)
    return [
        {
            name: NOISE_FACTOR * distance(ours[name], exact[name])
            + FLOOR_ULPS * eps * float(np.max(np.abs(exact[name])))
            + 2.0 * rounding * distance(exact[name], reference[0][name])
            for name in exact
        }
        for ours, exact in zip(single, reference)
    ]


def constant_rounding(rule: UpdateRule) -> float:
    """The relative error of a step whose constants are computed in float32.

    Keras computes 1 − β₂ᵗ from float32(β₂) but 1 − β₂ from the Python float: for β₂ = 0.999
    the first is 1.3e-5 off in relative terms, which scales every Adam step by 1 − 6.4e-6.

    Example:
        >>> from xframe_bilstm.training import keras_rule
        >>> print(f"{constant_rounding(keras_rule('adam', 1e-3, {})):.1e}")
        1.3e-05
    """
    eps = float(np.finfo(np.float32).eps)
    if rule.optimizer == "sgd":
        return eps
    errors = [
        abs((1.0 - float(np.float32(beta))) - (1.0 - beta)) / (1.0 - beta)
        for beta in (rule.beta_1, rule.beta_2)
        if beta < 1.0
    ]
    return max([eps, *errors])


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def convention_effect(
    convention: Convention,
    stack: RecurrentStack,
    batches: list[Batch],
    folded: set[str],
    reference: Trajectory,
    tolerance: list[dict[str, float]],
    mapped: bool,
) -> ConventionEffect:
    changed = reference_run(stack, convention.rule, batches, folded)
    worst, size, above = "", -1.0, False
    for step in range(1, len(reference)):
        for name in reference[step]:
            d = distance(changed[step][name], reference[step][name])
            above = above or d > 2.0 * tolerance[step][name]
            if d > size:
                worst, size = name, d
    return ConventionEffect(convention.name, convention.cause, size, worst, above, mapped)
