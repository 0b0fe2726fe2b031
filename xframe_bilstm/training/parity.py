"""k optimizer steps in Keras and in PyTorch from the same weights and batches, each checked
against a float64 run of the update rule it was given."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .._imports import require
from ..canonical import RecurrentStack
from ..errors import UnsupportedFeatureError
from .optimizers import (
    UpdateRule,
    check_hyperparameters,
    conventions,
    keras_rule,
    mapped_epsilon,
    mapped_torch_arguments,
    torch_rule,
)
from .referee import (
    Batch,
    Trajectory,
    convention_effect,
    distance,
    mse,
    output_count,
    outputs_of,
    reference_run,
    tolerance,
)
from .report import TrainingReport, WeightStep
from .weights import flat_weights, folded_biases, keras_names, torch_names

KERAS_CLASSES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}
TORCH_NAMES = {"momentum": "momentum", "nesterov": "nesterov", "epsilon": "eps",
               "weight_decay": "weight_decay"}  # fmt: skip
DEFAULT_LEARNING_RATE = {"sgd": 0.01, "adam": 0.001, "adamw": 0.001}


def optimizer_parity(
    keras_model_or_layer: Any,
    *,
    optimizer: str = "adam",
    steps: int = 5,
    seed: int = 0,
    loss: str = "mse",
    batch: Any = None,
    learning_rate: float | None = None,
    mapped: bool = True,
    **hyperparameters: Any,
) -> TrainingReport:
    """Run ``steps`` optimizer steps in Keras 3 and on the PyTorch port, and compare weights.

    Both start from the Keras weights (the port is :func:`~xframe_bilstm.keras_to_torch`'s,
    verified against the layer) and see the same batches; the loss is the mean squared error
    of each output (states excluded) against a target. After every step each weight is
    compared under its canonical name: Keras with PyTorch, and each with a float64 run of the
    rule it was given (gradients from float64 autograd of the port, updates in numpy). The
    tolerance per step and weight is ten times how far that run drifts in float32, plus a few
    units in the last place.

    Hyperparameters are Keras's (``momentum``, ``nesterov``, ``beta_1``, ``beta_2``,
    ``epsilon``, ``weight_decay``) and mean what they mean in Keras. With ``mapped=True``
    PyTorch gets the arguments that take Keras's step (per-step ``eps`` for Adam, ``AdamW``
    for decoupled decay, decay by hand for SGD, ``bias_hh`` frozen at zero where Keras has
    one bias); with ``mapped=False`` it gets the same numbers under its own names, and the
    report names the conventions that then part the two.

    The Keras layer's weights are restored afterwards; dropout is off (``training=False``).

    Args:
        keras_model_or_layer: a built Keras ``LSTM``/``GRU``/``SimpleRNN``, a
            ``Bidirectional`` of one, or a ``Sequential`` of those.
        optimizer: ``"sgd"``, ``"adam"`` or ``"adamw"``.
        steps: optimizer steps (at least 1).
        seed: draws the batches and targets when ``batch`` is None.
        loss: ``"mse"``.
        batch: None (a seeded batch of 4 sequences of 6 steps per optimizer step), an
            ``(x, y)`` pair used at every step, or a list of ``steps`` pairs; ``y`` is one
            target array, or a list of them for a ``merge_mode=None`` layer's two outputs.
        learning_rate: default Keras's (0.01 for SGD, 0.001 for Adam and AdamW).
        mapped: give PyTorch the mapped arguments (True) or the same numbers (False).
        **hyperparameters: the optimizer's other hyperparameters, Keras names.

    Returns:
        A :class:`~xframe_bilstm.training.TrainingReport`.

    Raises:
        UnsupportedFeatureError: an optimizer, hyperparameter, loss or model not compared.
        FrameworkUnavailableError: Keras (TensorFlow backend) or PyTorch is missing.
    """
    check_hyperparameters(optimizer, hyperparameters)
    if loss != "mse":
        raise UnsupportedFeatureError(f"loss={loss!r} is not compared; use loss='mse'")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise UnsupportedFeatureError(f"steps must be a positive integer, got {steps!r}")
    rate = DEFAULT_LEARNING_RATE[optimizer] if learning_rate is None else float(learning_rate)
    obj = keras_model_or_layer
    module, stack = _port(obj, seed)
    folded = folded_biases(stack)
    batches = _batches(batch, steps, seed, module, stack)
    keras = keras_rule(optimizer, rate, hyperparameters)
    raw = torch_rule(optimizer, rate, hyperparameters, split_bias=bool(folded))
    torch_ran = keras if mapped else raw
    keras_weights = _keras_run(obj, optimizer, rate, hyperparameters, batches)
    torch_weights, torch_text = _torch_run(module, keras, raw, mapped, hyperparameters, batches)
    references = {rule: reference_run(stack, rule, batches, folded) for rule in {keras, torch_ran}}
    bounds = tolerance(stack, keras, batches, folded, references[keras])
    rows = _rows(
        (keras_weights, references[keras]),
        (torch_weights, references[torch_ran]),
        bounds,
        keras_names(obj, stack),
        torch_names(module, stack),
    )
    effects = tuple(
        convention_effect(c, stack, batches, folded, references[keras], bounds, mapped)
        for c in conventions(keras, raw)
    )
    keras_text = _keras_text(optimizer, rate, hyperparameters)
    return TrainingReport(
        optimizer,
        mapped,
        steps,
        keras_text,
        torch_text,
        tuple(rows),
        effects,
        {"keras": keras_weights, "torch": torch_weights, "reference": references[keras]},
    )


def _port(obj: Any, seed: int) -> tuple[Any, RecurrentStack]:
    require("torch")
    keras = require("keras")
    if keras.backend.backend() != "tensorflow":
        raise UnsupportedFeatureError(
            f"optimizer_parity runs Keras on the TensorFlow backend; KERAS_BACKEND is "
            f"{keras.backend.backend()!r}: set KERAS_BACKEND=tensorflow before importing Keras"
        )
    from ..adapters.keras.read import keras_to_canonical
    from ..adapters.torch.module import KerasRecurrent
    from ..converters import keras_to_torch

    if not isinstance(obj, (keras.layers.Layer, keras.Model)):
        raise UnsupportedFeatureError(
            f"optimizer_parity takes a live Keras layer or Sequential, got {type(obj).__name__}"
        )
    module = keras_to_torch(obj, seed=seed)
    if not isinstance(module, KerasRecurrent):
        raise UnsupportedFeatureError(
            f"optimizer_parity compares recurrent layers and Sequential stacks of them; "
            f"{type(obj).__name__} {obj.name!r} has other layers (its port is a "
            f"{type(module).__name__}); compare its recurrent layer instead"
        )
    stack = keras_to_canonical(obj)
    if stack.stateful:
        raise UnsupportedFeatureError(
            "optimizer_parity refuses stateful=True: each step would start from the states "
            "the previous one left; build the layer with stateful=False to compare steps"
        )
    return module, stack


def _batches(batch: Any, steps: int, seed: int, module: Any, stack: RecurrentStack) -> list[Batch]:
    import torch

    def pair(item: Any) -> Batch:
        x, y = item
        targets = list(y) if isinstance(y, (list, tuple)) else [y]
        return np.asarray(x, np.float32), [np.asarray(t, np.float32) for t in targets]

    if batch is None:
        rng = np.random.default_rng(seed)
        xs = [rng.standard_normal((4, 6, stack.input_size)).astype(np.float32)]
        xs += [rng.standard_normal(xs[0].shape).astype(np.float32) for _ in range(steps - 1)]
        with torch.no_grad():
            shapes = [o.shape for o in outputs_of(module(torch.from_numpy(xs[0])), 99)]
        shapes = shapes[: output_count(stack)]
        return [(x, [rng.standard_normal(s).astype(np.float32) for s in shapes]) for x in xs]
    if isinstance(batch, tuple) and len(batch) == 2 and not isinstance(batch[0], tuple):
        return [pair(batch)] * steps
    items = list(batch)
    if len(items) != steps:
        raise UnsupportedFeatureError(
            f"batch: expected an (x, y) pair or a list of {steps} pairs (one per step), "
            f"got a list of {len(items)}"
        )
    return [pair(item) for item in items]


def _keras_text(optimizer: str, rate: float, hyperparameters: Mapping[str, Any]) -> str:
    arguments = ", ".join(
        f"{k}={v!r}" for k, v in {"learning_rate": rate, **hyperparameters}.items()
    )
    return f"keras.optimizers.{KERAS_CLASSES[optimizer]}({arguments})"


def _keras_run(
    obj: Any,
    optimizer: str,
    rate: float,
    hyperparameters: Mapping[str, Any],
    batches: list[Batch],
) -> Trajectory:
    import keras
    import tensorflow as tf

    from ..adapters.keras.read import keras_to_canonical

    made = getattr(keras.optimizers, KERAS_CLASSES[optimizer])(
        learning_rate=rate, **hyperparameters
    )
    variables = list(obj.trainable_variables)
    snapshot = [v.numpy() for v in obj.weights]
    trajectory = [flat_weights(keras_to_canonical(obj))]
    count = output_count(keras_to_canonical(obj))
    try:
        for x, targets in batches:
            with tf.GradientTape() as tape:
                outputs = outputs_of(obj(x, training=False), count)
                value = mse(outputs, targets, keras.ops.mean)
            made.apply_gradients(zip(tape.gradient(value, variables), variables))
            trajectory.append(flat_weights(keras_to_canonical(obj)))
    finally:
        for variable, value in zip(obj.weights, snapshot):
            variable.assign(value)
    return trajectory


def _torch_run(
    module: Any,
    keras: UpdateRule,
    raw: UpdateRule,
    mapped: bool,
    hyperparameters: Mapping[str, Any],
    batches: list[Batch],
) -> tuple[Trajectory, str]:
    import torch

    if mapped:
        name, arguments, manual = mapped_torch_arguments(keras)
        frozen = _freeze_bias_hh(module)
    else:
        (name, arguments), manual, frozen = _raw_torch_arguments(raw, hyperparameters), None, []
    trainable = [p for p in module.parameters() if p.requires_grad]
    made = getattr(torch.optim, name)(trainable, **arguments)
    count = output_count(module.to_canonical())
    trajectory = [flat_weights(module.to_canonical())]
    for step, (x, targets) in enumerate(batches, start=1):
        made.zero_grad()
        outputs = outputs_of(module(torch.from_numpy(x)), count)
        mse(outputs, [torch.from_numpy(t) for t in targets]).backward()
        with torch.no_grad():
            if manual:  # Keras's decoupled decay, which torch.optim.SGD does not offer
                for p in trainable:
                    p.sub_(p * keras.weight_decay * keras.learning_rate)
            if mapped and "eps" in arguments:
                for group in made.param_groups:
                    group["eps"] = mapped_epsilon(keras, step)
        made.step()
        trajectory.append(flat_weights(module.to_canonical()))
    text = f"torch.optim.{name}(" + ", ".join(f"{k}={v!r}" for k, v in arguments.items()) + ")"
    if mapped and "eps" in arguments:
        text += f"; eps set to {keras.epsilon:g}/√(1−β₂ᵗ) at each step t"
    if manual:
        text += f"; w ← w − lr·{keras.weight_decay:g}·w before each step"
    if frozen:
        text += f"; frozen at zero: {', '.join(frozen)}"
    return trajectory, text


def _raw_torch_arguments(
    raw: UpdateRule, hyperparameters: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    arguments: dict[str, Any] = {"lr": raw.learning_rate}
    for key, value in hyperparameters.items():
        if key in TORCH_NAMES:
            arguments[TORCH_NAMES[key]] = value
    if "beta_1" in hyperparameters or "beta_2" in hyperparameters:
        arguments["betas"] = (raw.beta_1, raw.beta_2)
    if arguments.get("weight_decay") is None:
        arguments.pop("weight_decay", None)
    return KERAS_CLASSES[raw.optimizer], arguments


def _freeze_bias_hh(module: Any) -> list[str]:
    """Freeze each ``bias_hh`` that the port holds at zero for a one-bias Keras layer."""
    frozen = []
    for index, (rnn, group) in enumerate(zip(module.rnns, module.groups)):
        for depth, layer in enumerate(group):
            if layer.cell == "gru" or not layer.use_bias:
                continue
            for suffix in ("", "_reverse")[: len(layer.weights)]:
                getattr(rnn, f"bias_hh_l{depth}{suffix}").requires_grad_(False)
                frozen.append(f"rnns.{index}.bias_hh_l{depth}{suffix}")
    return frozen


def _rows(
    keras: tuple[Trajectory, Trajectory],
    torch: tuple[Trajectory, Trajectory],
    tolerance: list[dict[str, float]],
    keras_native: Mapping[str, str],
    torch_native: Mapping[str, str],
) -> list[WeightStep]:
    (keras_run, keras_reference), (torch_run, torch_reference) = keras, torch
    rows = []
    for name in keras_reference[0]:
        for step in range(1, len(keras_run)):
            rows.append(
                WeightStep(
                    step,
                    name,
                    keras_native.get(name, "?"),
                    torch_native.get(name, "?"),
                    distance(keras_run[step][name], keras_reference[step][name]),
                    distance(torch_run[step][name], torch_reference[step][name]),
                    distance(keras_run[step][name], torch_run[step][name]),
                    tolerance[step][name],
                )
            )
    return rows
