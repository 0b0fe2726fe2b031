"""Mixed precision and bfloat16 across the Keras → torch and torch → Keras conversions.

A ``mixed_float16``/``mixed_bfloat16`` Keras layer keeps float32 variables and computes in
float16 or bfloat16; its port keeps the float32 variables and computes in float32, so the
two differ by the Keras side's rounding. Verification must allow that rounding (derived
from the compute dtype's epsilon) and nothing more: a corrupted weight still fails.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # before Keras/TensorFlow: the reverse order can crash
keras = pytest.importorskip("keras")

from xframe_bilstm import ToleranceExceededError, keras_to_torch, torch_to_keras  # noqa: E402
from xframe_bilstm.adapters import torch as torch_adapter  # noqa: E402
from xframe_bilstm.adapters.keras import keras_to_canonical  # noqa: E402
from xframe_bilstm.adapters.torch import module as torch_module  # noqa: E402
from xframe_bilstm.canonical import is_float_dtype  # noqa: E402
from xframe_bilstm.comparison import derived_tolerance, dtype_epsilon  # noqa: E402
from xframe_bilstm.models import recurrent as recurrent_module  # noqa: E402
from xframe_bilstm.reference import run_reference  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

CLASSES = ("LSTM", "GRU", "SimpleRNN")
POLICIES = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


def randomized(layer, seed: int, scale: float = 0.5):
    rng = np.random.default_rng(seed)
    layer.set_weights(
        [(rng.standard_normal(w.shape) * scale).astype(w.dtype) for w in layer.get_weights()]
    )
    return layer


def mixed_layer(class_name: str, policy: str, *, bidirectional: bool = False):
    cls = getattr(keras.layers, class_name)
    layer = cls(8, return_sequences=True, dtype=policy)
    if bidirectional:
        layer = keras.layers.Bidirectional(layer, dtype=policy)
    layer(np.zeros((1, 4, 5), "float32"))
    return randomized(layer, seed=len(class_name))


def x_input(seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((2, 7, 5)).astype("float32")


def corrupt_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every recurrent weight copy into torch add 0.5 to the input kernel.

    bfloat16 resolves about 2 significant digits: a corruption it must catch is a large one.
    """
    original = torch_module.load_layer

    def load_and_corrupt(module, index, layer):
        original(module, index, layer)
        with torch.no_grad():
            getattr(module, f"weight_ih_l{index}").add_(0.5)

    monkeypatch.setattr(torch_module, "load_layer", load_and_corrupt)
    monkeypatch.setattr(recurrent_module, "load_layer", load_and_corrupt)


# --------------------------------------------------------------------------- mixed precision


@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize("class_name", CLASSES)
def test_mixed_precision_layer_ports_and_says_what_it_computes_in(
    class_name: str, policy: str
) -> None:
    layer = mixed_layer(class_name, policy)
    module = keras_to_torch(layer)

    assert (module.compute_dtype, module.keras_compute_dtype) == ("float32", POLICIES[policy])
    assert module.verified_against == "the Keras layer's own call"
    assert next(module.parameters()).dtype == torch.float32  # float32 variables kept
    x = x_input()
    actual = module(torch.from_numpy(x)).detach().numpy()
    # The port computes the float32 variables in float32: float32 rounding of the float64
    # reference of those variables.
    stack = keras_to_canonical(layer)
    (exact,) = run_reference(stack, x, dtype=np.float64)
    assert np.abs(actual - exact).max() <= derived_tolerance(stack, x)
    # Keras computes in float16/bfloat16: within that dtype's rounding, beyond float32's.
    keras_out = np.asarray(layer(x), dtype=np.float64)
    difference = np.abs(actual - keras_out).max()
    assert difference <= derived_tolerance(stack, x, dtype=POLICIES[policy])
    assert difference > derived_tolerance(stack, x)


def test_mixed_precision_bidirectional_reads_the_halves_compute_dtype() -> None:
    module = keras_to_torch(mixed_layer("GRU", "mixed_float16", bidirectional=True))
    assert module.keras_compute_dtype == "float16"


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_mixed_precision_still_fails_a_corrupted_port(
    monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    layer = mixed_layer("LSTM", policy)
    corrupt_loads(monkeypatch)
    with pytest.raises(ToleranceExceededError, match=f"computes in {POLICIES[policy]}"):
        keras_to_torch(layer)
    assert keras_to_torch(layer, verify=False).verified_against is None


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_mixed_precision_whole_model_ports_within_its_compute_dtype(
    monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    inputs = keras.Input((None, 5))
    hidden = keras.layers.GRU(6, return_sequences=True, dtype=policy)(inputs)
    outputs = keras.layers.Dense(3, dtype=policy)(keras.layers.LSTM(4, dtype=policy)(hidden))
    model = randomized(keras.Model(inputs, outputs), seed=9)

    module = keras_to_torch(model)
    assert (module.compute_dtype, module.keras_compute_dtype) == ("float32", POLICIES[policy])
    assert module.verified_against == "the Keras model's own call"

    corrupt_loads(monkeypatch)
    with pytest.raises(ToleranceExceededError):
        keras_to_torch(model)


# --------------------------------------------------------------------------- bfloat16


def test_dtype_helpers_know_bfloat16_by_name() -> None:
    assert is_float_dtype("bfloat16") and is_float_dtype(np.float16)
    assert not is_float_dtype(np.int32)
    assert dtype_epsilon("bfloat16") == 2.0**-7  # 8 significant bits
    assert dtype_epsilon(np.float16) == float(np.finfo(np.float16).eps)


@pytest.mark.parametrize("class_name", CLASSES)
def test_bfloat16_keras_layer_ports_to_a_bfloat16_module(class_name: str) -> None:
    cls = getattr(keras.layers, class_name)
    # Keras's orthogonal initializer has no bfloat16 kernel (tf.linalg.qr).
    layer = cls(4, return_sequences=True, dtype="bfloat16", recurrent_initializer="glorot_uniform")
    layer(np.zeros((1, 3, 5), "float32"))
    randomized(layer, seed=4)

    module = keras_to_torch(layer)
    assert next(module.parameters()).dtype == torch.bfloat16
    assert (module.compute_dtype, module.keras_compute_dtype) == ("bfloat16", "bfloat16")
    x = x_input()
    actual = module(torch.from_numpy(x).to(torch.bfloat16)).float().detach().numpy()
    expected = np.asarray(layer(x), dtype=np.float64)
    stack = keras_to_canonical(layer)
    assert np.abs(actual - expected).max() <= derived_tolerance(stack, x, dtype="bfloat16")


def test_bfloat16_weights_cross_bit_for_bit() -> None:
    layer = keras.layers.SimpleRNN(4, dtype="bfloat16", recurrent_initializer="glorot_uniform")
    layer(np.zeros((1, 3, 5), "float32"))
    randomized(layer, seed=5)
    rnn = keras_to_torch(layer).rnns[0]
    # One gate: torch's weight_ih is Keras's kernel transposed, in the same 16 bits.
    kernel = np.asarray(layer.cell.kernel.numpy()).astype(np.float32)
    assert np.array_equal(rnn.weight_ih_l0.detach().float().numpy(), kernel.T)


@pytest.mark.parametrize(
    "module",
    [
        torch.nn.LSTM(5, 4, batch_first=True),
        torch.nn.GRU(5, 3, num_layers=2, bidirectional=True),
        torch.nn.RNN(5, 4, nonlinearity="relu"),
    ],
    ids=["lstm", "gru-stack", "rnn"],
)
def test_bfloat16_torch_module_converts_to_a_bfloat16_keras_layer(module) -> None:
    torch.manual_seed(0)
    module = module.to(torch.bfloat16)
    converted = torch_to_keras(module)
    assert all(w.dtype == "bfloat16" for w in converted.weights)
    # Independent check: torch's own module against Keras's layer on the same input.
    x = x_input()
    inputs = torch.from_numpy(x).to(torch.bfloat16)
    with torch.no_grad():
        output, _ = module(inputs if module.batch_first else inputs.transpose(0, 1))
    output = output if module.batch_first else output.transpose(0, 1)
    expected = output.float().numpy()
    actual = np.asarray(converted(x), dtype=np.float64)
    stack = torch_adapter.torch_to_canonical(module)
    assert np.abs(actual - expected).max() <= derived_tolerance(stack, x, dtype="bfloat16")
    # The bfloat16 weights arrive unchanged: torch's first input kernel, read back.
    first = converted if not hasattr(converted, "layers") else converted.layers[0]
    cell = first.forward_layer.cell if hasattr(first, "forward_layer") else first.cell
    if isinstance(module, torch.nn.RNN):
        kernel = np.asarray(cell.kernel.numpy()).astype(np.float32)
        assert np.array_equal(kernel.T, module.weight_ih_l0.detach().float().numpy())


def test_bfloat16_model_file_ports_and_is_verified_against_keras(tmp_path) -> None:
    layers = keras.layers
    inputs = keras.Input((None, 5))
    sequence = layers.GRU(
        4, return_sequences=True, dtype="bfloat16", recurrent_initializer="glorot_uniform"
    )(inputs)
    outputs = layers.Dense(3, dtype="bfloat16")(
        layers.GlobalAveragePooling1D(dtype="bfloat16")(sequence)
    )
    model = randomized(keras.Model(inputs, outputs), seed=6)
    path = tmp_path / "bfloat16.keras"
    model.save(path)  # Keras stores bfloat16 as 2-byte opaque data marked "bfloat16"

    module = keras_to_torch(path)
    assert (module.compute_dtype, module.keras_compute_dtype) == ("bfloat16", "bfloat16")
    assert "keras.saving.load_model" in module.verified_against
    dense = model.layers[-1]
    ported = getattr(module, dense.name)  # submodules are named after the Keras layers
    assert ported.weight.dtype == torch.bfloat16
    # The Dense kernel arrives bit for bit (transposed for nn.Linear).
    kernel = np.asarray(dense.kernel.numpy()).astype(np.float32)
    assert np.array_equal(ported.weight.detach().float().numpy(), kernel.T)


def test_bfloat16_sequential_module_converts_within_bfloat16_rounding() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Embedding(10, 4), torch.nn.GRU(4, 3, batch_first=True), torch.nn.Linear(3, 2)
    ).to(torch.bfloat16)
    model = torch_to_keras(net)
    # Independent check: the children run by hand in bfloat16, the GRU passing its sequence.
    ids = np.random.default_rng(3).integers(0, 10, (2, 6))
    with torch.no_grad():
        expected = net[2](net[1](net[0](torch.from_numpy(ids)))[0]).float().numpy()
    actual = np.asarray(model(ids.astype(np.int32), training=False), np.float64)
    scale = float(np.abs(expected).max())
    assert np.abs(actual - expected).max() <= 4 * dtype_epsilon("bfloat16") * max(1.0, scale)
