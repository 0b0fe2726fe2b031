"""Optimizer update rules in float64 numpy, and the hyperparameters that make Keras and PyTorch
take the same step.

An :class:`UpdateRule` is one optimizer with one set of conventions: whose formulas
(``"keras"``: ε added to √v, then the whole step scaled by √(1−β₂ᵗ)/(1−β₁ᵗ); ``"torch"``: ε
added to √v̂), how weight decay enters (``"decoupled"``: w ← w − lr·wd·w before the step, as
every Keras optimizer and ``torch.optim.AdamW`` do; ``"coupled"``: wd·w added to the gradient,
as ``torch.optim.SGD``/``Adam`` do) and whether a folded bias is trained as two parameters
(``split_bias``: PyTorch's ``bias_ih`` and ``bias_hh``, each given the full gradient).
:func:`apply_rule` takes one step of it on named arrays, in the arrays' dtype.

:func:`keras_rule` is what a Keras optimizer does with the user's numbers, :func:`torch_rule`
what ``torch.optim`` does with the same numbers passed as they are, and
:func:`mapped_torch_arguments` the ``torch.optim`` arguments (and per-step epsilon) that take
Keras's step. :func:`conventions` lists where the two rules differ, each with its cause.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UnsupportedFeatureError

OPTIMIZERS = ("sgd", "adam", "adamw")
HYPERPARAMETERS = {
    "sgd": ("momentum", "nesterov", "weight_decay"),
    "adam": ("beta_1", "beta_2", "epsilon", "weight_decay"),
    "adamw": ("beta_1", "beta_2", "epsilon", "weight_decay"),
}
# Defaults of keras.optimizers.{SGD,Adam,AdamW} and torch.optim.{SGD,Adam,AdamW}.
KERAS_DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0},
    "adam": {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "weight_decay": 0.0},
    "adamw": {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "weight_decay": 0.004},
}
TORCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0},
    "adam": {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8, "weight_decay": 0.0},
    "adamw": {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8, "weight_decay": 0.01},
}


@dataclass(frozen=True)
class UpdateRule:
    """One optimizer with its hyperparameters and conventions.

    Example:
        >>> rule = UpdateRule("sgd", learning_rate=0.5)
        >>> params = {"w": np.array([1.0])}
        >>> apply_rule(rule, params, {"w": np.array([0.2])}, {}, step=1)
        >>> params["w"]
        array([0.9])
    """

    optimizer: str
    learning_rate: float
    momentum: float = 0.0
    nesterov: bool = False
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    weight_decay: float = 0.0
    formulas: str = "keras"  # "keras" or "torch"
    decay: str = "decoupled"  # "decoupled" or "coupled"
    split_bias: bool = False


def check_hyperparameters(optimizer: str, hyperparameters: Mapping[str, Any]) -> None:
    """Refuse an unknown optimizer or a hyperparameter it does not take, naming the valid ones."""
    if optimizer not in OPTIMIZERS:
        raise UnsupportedFeatureError(
            f"optimizer={optimizer!r} is not compared; use one of {', '.join(OPTIMIZERS)}"
        )
    unknown = sorted(set(hyperparameters) - set(HYPERPARAMETERS[optimizer]))
    if unknown:
        raise UnsupportedFeatureError(
            f"optimizer={optimizer!r} takes no {', '.join(unknown)}; its hyperparameters "
            f"(Keras names) are learning_rate, {', '.join(HYPERPARAMETERS[optimizer])}"
        )
    if (
        optimizer == "sgd"
        and hyperparameters.get("nesterov")
        and not hyperparameters.get("momentum")
    ):
        raise UnsupportedFeatureError(
            "nesterov=True needs a momentum > 0 (torch.optim.SGD refuses it without)"
        )


def keras_rule(
    optimizer: str, learning_rate: float, hyperparameters: Mapping[str, Any]
) -> UpdateRule:
    """The update a Keras 3 optimizer makes with these numbers (its own defaults elsewhere)."""
    values = {**KERAS_DEFAULTS[optimizer], **hyperparameters}
    values["weight_decay"] = float(values["weight_decay"] or 0.0)
    return UpdateRule(optimizer, float(learning_rate), **values)


def torch_rule(
    optimizer: str,
    learning_rate: float,
    hyperparameters: Mapping[str, Any],
    *,
    split_bias: bool,
) -> UpdateRule:
    """The update ``torch.optim`` makes with the same numbers passed as they are.

    ``split_bias``: the port trains a folded bias as ``bias_ih`` and ``bias_hh``.
    """
    values = {**TORCH_DEFAULTS[optimizer], **hyperparameters}
    values["weight_decay"] = float(values["weight_decay"] or 0.0)
    decay = "decoupled" if optimizer == "adamw" else "coupled"
    return UpdateRule(
        optimizer,
        float(learning_rate),
        formulas="torch",
        decay=decay,
        split_bias=split_bias,
        **values,
    )


@dataclass(frozen=True)
class Convention:
    """One way the raw torch rule differs from Keras's: a name and its cause in words."""

    name: str
    cause: str
    # The Keras rule with this one convention switched to the raw torch rule's.
    rule: UpdateRule


def conventions(keras: UpdateRule, torch: UpdateRule) -> list[Convention]:
    """Where ``torch`` (the same numbers given to ``torch.optim``) differs from ``keras``."""
    found: list[Convention] = []
    adam = keras.optimizer in ("adam", "adamw")
    if adam and keras.formulas != torch.formulas:
        found.append(
            Convention(
                "epsilon placement",
                "Keras adds epsilon to √v and scales the step by √(1−β₂ᵗ)/(1−β₁ᵗ); PyTorch "
                "adds it to √v̂ = √(v/(1−β₂ᵗ)), so Keras's epsilon acts as ε/√(1−β₂ᵗ) in "
                "PyTorch's formula (31.6·ε at step 1 with β₂ = 0.999)",
                dataclasses.replace(keras, formulas=torch.formulas),
            )
        )
    if adam and keras.epsilon != torch.epsilon:
        found.append(
            Convention(
                "epsilon value",
                f"epsilon {keras.epsilon:g} in Keras, {torch.epsilon:g} in PyTorch (each "
                "framework's default where none was given)",
                dataclasses.replace(keras, epsilon=torch.epsilon),
            )
        )
    if keras.weight_decay != torch.weight_decay:
        found.append(
            Convention(
                "weight decay value",
                f"weight_decay {keras.weight_decay:g} in Keras, {torch.weight_decay:g} in "
                "PyTorch (each framework's default where none was given)",
                dataclasses.replace(keras, weight_decay=torch.weight_decay),
            )
        )
    if keras.decay != torch.decay and (keras.weight_decay or torch.weight_decay):
        found.append(
            Convention(
                "weight decay coupling",
                f"Keras decays the weights (w ← w − lr·wd·w) before the step; torch.optim."
                f"{_torch_class(keras.optimizer)} adds wd·w to the gradient instead (L2)",
                dataclasses.replace(keras, decay=torch.decay),
            )
        )
    if torch.split_bias and not keras.split_bias:
        found.append(
            Convention(
                "two biases",
                "PyTorch trains bias_ih and bias_hh, each given the full gradient of the one "
                "Keras bias, so their sum (the Keras bias) takes two steps per step",
                dataclasses.replace(keras, split_bias=True),
            )
        )
    return found


def _torch_class(optimizer: str) -> str:
    return {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}[optimizer]


def mapped_torch_arguments(keras: UpdateRule) -> tuple[str, dict[str, Any], str | None]:
    """The ``torch.optim`` class name and arguments that take the Keras rule's step.

    Returns ``(class name, arguments, manual decay)``: ``manual decay`` is ``"decoupled"``
    when the caller must decay the weights (w ← w − lr·wd·w) before each step because
    ``torch.optim.SGD`` can only couple it. Adam's ``eps`` is set per step by
    :func:`mapped_epsilon`, and the port's folded biases train as ``bias_ih`` alone.

    Example:
        >>> mapped_torch_arguments(keras_rule("adam", 1e-3, {"weight_decay": 0.1}))[0]
        'AdamW'
    """
    arguments: dict[str, Any]
    if keras.optimizer == "sgd":
        arguments = {
            "lr": keras.learning_rate,
            "momentum": keras.momentum,
            "nesterov": keras.nesterov,
            "dampening": 0.0,
            "weight_decay": 0.0,
        }
        return "SGD", arguments, "decoupled" if keras.weight_decay else None
    arguments = {
        "lr": keras.learning_rate,
        "betas": (keras.beta_1, keras.beta_2),
        "eps": mapped_epsilon(keras, 1),
        "weight_decay": keras.weight_decay,
    }
    # Keras's decay is decoupled for Adam too: torch's decoupled decay is AdamW.
    return ("AdamW" if keras.weight_decay else "Adam"), arguments, None


def mapped_epsilon(keras: UpdateRule, step: int) -> float:
    """PyTorch's ``eps`` at ``step`` (1-based) that equals Keras's epsilon placement."""
    return keras.epsilon / math.sqrt(1.0 - keras.beta_2**step)


def split_names(names: list[str], folded: set[str]) -> dict[str, list[str]]:
    """The parameters trained for each weight: ``name`` or, for a folded bias trained as two,
    ``name#ih`` and ``name#hh``."""
    return {name: [f"{name}#ih", f"{name}#hh"] if name in folded else [name] for name in names}


def apply_rule(
    rule: UpdateRule,
    params: MutableMapping[str, np.ndarray],
    grads: Mapping[str, np.ndarray],
    state: MutableMapping[str, np.ndarray],
    *,
    step: int,
) -> None:
    """One step of ``rule`` on ``params`` in place, in their dtype (``step`` is 1-based).

    ``state`` holds each parameter's moments between steps (``name:m``, ``name:v``).
    """
    for name, w in params.items():
        g = grads[name].astype(w.dtype)
        lr = w.dtype.type(rule.learning_rate)
        wd = w.dtype.type(rule.weight_decay)
        if rule.weight_decay and rule.decay == "decoupled":
            w -= w * wd * lr
        elif rule.weight_decay:
            g = g + wd * w
        if rule.optimizer == "sgd":
            _sgd(rule, name, w, g, lr, state)
        else:
            _adam(rule, name, w, g, lr, state, step)


def _sgd(
    rule: UpdateRule,
    name: str,
    w: np.ndarray,
    g: np.ndarray,
    lr: Any,
    state: MutableMapping[str, np.ndarray],
) -> None:
    if not rule.momentum:
        w -= lr * g
        return
    mu = w.dtype.type(rule.momentum)
    if rule.formulas == "keras":
        # keras/src/optimizers/sgd.py: m ← μm − lr·g; w ← w + m (Nesterov: w ← w + μm − lr·g).
        m = state.setdefault(f"{name}:m", np.zeros_like(w))
        m[...] = m * mu - g * lr
        w += m * mu - g * lr if rule.nesterov else m
        return
    # torch/optim/sgd.py (dampening 0): b ← g at step 1, then μb + g; w ← w − lr·b
    # (Nesterov: w ← w − lr·(g + μb)).
    b = state.get(f"{name}:m")
    b = g.copy() if b is None else b * mu + g
    state[f"{name}:m"] = b
    w -= lr * (g + mu * b if rule.nesterov else b)


def _adam(
    rule: UpdateRule,
    name: str,
    w: np.ndarray,
    g: np.ndarray,
    lr: Any,
    state: MutableMapping[str, np.ndarray],
    step: int,
) -> None:
    one = w.dtype.type(1)
    beta_1, beta_2 = w.dtype.type(rule.beta_1), w.dtype.type(rule.beta_2)
    eps = w.dtype.type(rule.epsilon)
    m = state.setdefault(f"{name}:m", np.zeros_like(w))
    v = state.setdefault(f"{name}:v", np.zeros_like(w))
    m += (g - m) * (one - beta_1)
    v += (g * g - v) * (one - beta_2)
    correction_1 = one - beta_1**step
    correction_2 = one - beta_2**step
    if rule.formulas == "keras":
        # keras/src/optimizers/adam.py: α = lr·√(1−β₂ᵗ)/(1−β₁ᵗ); w ← w − α·m/(√v + ε).
        alpha = lr * np.sqrt(correction_2) / correction_1
        w -= m * alpha / (np.sqrt(v) + eps)
    else:
        # torch/optim/adam.py: w ← w − lr/(1−β₁ᵗ) · m/(√v/√(1−β₂ᵗ) + ε).
        w -= (lr / correction_1) * m / (np.sqrt(v) / np.sqrt(correction_2) + eps)
