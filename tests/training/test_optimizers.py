"""The float64 update rules against Keras's and PyTorch's own optimizers, step by step on one
weight, and the mappings that make PyTorch take Keras's step."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xframe_bilstm.errors import UnsupportedFeatureError
from xframe_bilstm.training import apply_rule, keras_rule, mapped_torch_arguments, torch_rule
from xframe_bilstm.training.optimizers import (
    check_hyperparameters,
    conventions,
    mapped_epsilon,
)
from xframe_bilstm.training.referee import constant_rounding

CASES = [
    ("sgd", 0.1, {}),
    ("sgd", 0.1, {"momentum": 0.9}),
    ("sgd", 0.1, {"momentum": 0.8, "nesterov": True}),
    ("sgd", 0.1, {"momentum": 0.9, "weight_decay": 0.5}),
    ("adam", 1e-2, {}),
    ("adam", 1e-2, {"beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-3}),
    ("adam", 1e-2, {"weight_decay": 0.5}),
    ("adamw", 1e-2, {}),
    ("adamw", 1e-2, {"weight_decay": 0.3, "epsilon": 1e-4}),
]
STEPS = 3


def tiny_problem() -> tuple[np.ndarray, list[np.ndarray]]:
    """A (3, 4) weight and three gradients spanning 1e-7..1 (epsilon matters for the small)."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((3, 4)).astype(np.float32)
    scales = np.logspace(-7, 0, 12).reshape(3, 4)
    grads = [(rng.standard_normal((3, 4)) * scales).astype(np.float32) for _ in range(STEPS)]
    return weight, grads


def reference(rule, weight, grads) -> list[np.ndarray]:
    params, state, out = {"w": weight.astype(np.float64)}, {}, []
    for step, g in enumerate(grads, start=1):
        apply_rule(rule, params, {"w": g.astype(np.float64)}, state, step=step)
        out.append(params["w"].copy())
    return out


def assert_float32_close(actual, expected, start, rule) -> None:
    """float32 rounding of the weight and of the rule's constants, nothing more."""
    moved = np.max(np.abs(expected - start))
    bound = 8 * np.finfo(np.float32).eps * np.max(np.abs(expected))
    bound += 2 * constant_rounding(rule) * moved
    np.testing.assert_allclose(actual, expected, rtol=0, atol=bound)


@pytest.mark.keras
@pytest.mark.parametrize(("optimizer", "rate", "hyper"), CASES)
def test_keras_optimizer_takes_the_keras_rule(optimizer, rate, hyper):
    pytest.importorskip("torch")
    keras = pytest.importorskip("keras")
    weight, grads = tiny_problem()
    made = getattr(keras.optimizers, {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}[optimizer])(
        learning_rate=rate, **hyper
    )
    variable = keras.Variable(weight)
    rule = keras_rule(optimizer, rate, hyper)
    expected = reference(rule, weight, grads)
    for g, want in zip(grads, expected):
        made.apply_gradients([(keras.ops.convert_to_tensor(g), variable)])
        assert_float32_close(np.asarray(variable.numpy()), want, weight, rule)


@pytest.mark.torch
@pytest.mark.parametrize(("optimizer", "rate", "hyper"), CASES)
def test_mapped_torch_optimizer_takes_the_keras_rule(optimizer, rate, hyper):
    torch = pytest.importorskip("torch")
    weight, grads = tiny_problem()
    rule = keras_rule(optimizer, rate, hyper)
    name, arguments, manual = mapped_torch_arguments(rule)
    parameter = torch.nn.Parameter(torch.from_numpy(weight.copy()))
    made = getattr(torch.optim, name)([parameter], **arguments)
    expected = reference(rule, weight, grads)
    for step, (g, want) in enumerate(zip(grads, expected), start=1):
        parameter.grad = torch.from_numpy(g)
        with torch.no_grad():
            if manual:
                parameter.sub_(parameter * rule.weight_decay * rule.learning_rate)
            if "eps" in arguments:
                made.param_groups[0]["eps"] = mapped_epsilon(rule, step)
        made.step()
        assert_float32_close(parameter.detach().numpy(), want, weight, rule)


@pytest.mark.torch
@pytest.mark.parametrize(("optimizer", "rate", "hyper"), CASES)
def test_raw_torch_optimizer_takes_the_torch_rule(optimizer, rate, hyper):
    """The rule the unmapped run is checked against is what torch.optim really does."""
    torch = pytest.importorskip("torch")
    weight, grads = tiny_problem()
    rule = torch_rule(optimizer, rate, hyper, split_bias=False)
    names = {"epsilon": "eps", "momentum": "momentum", "nesterov": "nesterov"}
    arguments = {names[k]: v for k, v in hyper.items() if k in names}
    arguments["betas"] = (rule.beta_1, rule.beta_2) if optimizer != "sgd" else None
    arguments = {k: v for k, v in arguments.items() if v is not None}
    if "weight_decay" in hyper:
        arguments["weight_decay"] = hyper["weight_decay"]
    parameter = torch.nn.Parameter(torch.from_numpy(weight.copy()))
    made = getattr(torch.optim, {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}[optimizer])(
        [parameter], lr=rate, **arguments
    )
    for g, want in zip(grads, reference(rule, weight, grads)):
        parameter.grad = torch.from_numpy(g)
        made.step()
        assert_float32_close(parameter.detach().numpy(), want, weight, rule)


def test_adam_first_step_by_hand():
    """Step 1 from zero moments: Keras moves lr·g/(|g| + ε/√(1−β₂)), PyTorch lr·g/(|g| + ε)."""
    g, lr, eps, beta_2 = 2e-6, 0.1, 1e-6, 0.999
    hyper = {"epsilon": eps, "beta_2": beta_2}
    for rule, effective in (
        (keras_rule("adam", lr, hyper), eps / math.sqrt(1 - beta_2)),
        (torch_rule("adam", lr, hyper, split_bias=False), eps),
    ):
        params = {"w": np.array([0.0])}
        apply_rule(rule, params, {"w": np.array([g])}, {}, step=1)
        assert params["w"][0] == pytest.approx(-lr * g / (g + effective), rel=1e-12)


@pytest.mark.parametrize("hyper", [{"momentum": 0.9}, {"momentum": 0.7, "nesterov": True}])
def test_sgd_momentum_formulas_agree(hyper):
    """Keras's m ← μm − lr·g and PyTorch's b ← μb + g (dampening 0) are one update."""
    weight, grads = tiny_problem()
    keras = keras_rule("sgd", 0.1, hyper)
    torch = torch_rule("sgd", 0.1, hyper, split_bias=False)
    for a, b in zip(reference(keras, weight, grads), reference(torch, weight, grads)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def split_vs_doubled(rule, doubled) -> float:
    """A bias trained as two terms at lr, against one bias at 2·lr: the largest difference."""
    _, grads = tiny_problem()
    b = np.ones(4)
    two = {"ih": b.copy(), "hh": np.zeros(4)}
    one = {"b": b.copy()}
    two_state: dict = {}
    one_state: dict = {}
    for step, g in enumerate(grads, start=1):
        g = g[0].astype(np.float64)
        apply_rule(rule, two, {"ih": g, "hh": g}, two_state, step=step)
        apply_rule(doubled, one, {"b": g}, one_state, step=step)
    return float(np.max(np.abs(two["ih"] + two["hh"] - one["b"])))


@pytest.mark.parametrize(
    ("optimizer", "hyper", "exact"),
    [
        ("sgd", {}, True),
        ("sgd", {"momentum": 0.9, "nesterov": True}, True),
        ("adam", {}, True),
        ("sgd", {"weight_decay": 0.5}, False),
        ("adamw", {"weight_decay": 0.5}, False),
    ],
)
def test_doubling_the_bias_learning_rate_is_exact_only_without_decay(optimizer, hyper, exact):
    rule = keras_rule(optimizer, 0.01, hyper)
    doubled = keras_rule(optimizer, 0.02, hyper)
    difference = split_vs_doubled(rule, doubled)
    assert (difference < 1e-15) is exact, difference


def test_conventions_name_what_differs():
    def names(optimizer, hyper, split=True):
        keras = keras_rule(optimizer, 1e-3, hyper)
        return [
            c.name for c in conventions(keras, torch_rule(optimizer, 1e-3, hyper, split_bias=split))
        ]

    assert names("sgd", {"momentum": 0.9}) == ["two biases"]
    assert names("sgd", {"momentum": 0.9}, split=False) == []
    assert names("sgd", {"weight_decay": 0.1}) == ["weight decay coupling", "two biases"]
    assert names("adam", {}) == ["epsilon placement", "epsilon value", "two biases"]
    assert names("adam", {"epsilon": 1e-8}, split=False) == ["epsilon placement"]
    assert names("adamw", {"epsilon": 1e-8}, split=False) == [
        "epsilon placement",
        "weight decay value",
    ]
    assert names("adamw", {"epsilon": 1e-8, "weight_decay": 0.01}, split=False) == [
        "epsilon placement"
    ]


def test_mapping_chooses_adamw_for_decoupled_decay():
    assert mapped_torch_arguments(keras_rule("adam", 1e-3, {}))[0] == "Adam"
    assert mapped_torch_arguments(keras_rule("adam", 1e-3, {"weight_decay": 0.1}))[0] == "AdamW"
    name, arguments, manual = mapped_torch_arguments(keras_rule("sgd", 0.1, {"weight_decay": 0.1}))
    assert (name, arguments["weight_decay"], manual) == ("SGD", 0.0, "decoupled")
    assert mapped_epsilon(keras_rule("adam", 1e-3, {}), 1) == pytest.approx(1e-7 / math.sqrt(1e-3))


@pytest.mark.parametrize(
    ("optimizer", "hyper", "words"),
    [
        ("rmsprop", {}, ["rmsprop", "sgd, adam, adamw"]),
        ("sgd", {"dampening": 0.1}, ["dampening", "momentum, nesterov, weight_decay"]),
        ("adam", {"betas": (0.9, 0.99)}, ["betas", "beta_1, beta_2"]),
        ("sgd", {"nesterov": True}, ["nesterov=True", "momentum"]),
    ],
)
def test_refusals_name_what_was_refused(optimizer, hyper, words):
    with pytest.raises(UnsupportedFeatureError) as error:
        check_hyperparameters(optimizer, hyper)
    for word in words:
        assert word in str(error.value)


def test_importing_training_imports_no_framework():
    import subprocess
    import sys

    code = (
        "import sys, xframe_bilstm.training; "
        "print(','.join(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == ""
