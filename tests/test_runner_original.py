"""compare(source) runs a live source itself (``@original``) beside our reading of it.

Every other column runs the reading (the float64 oracle, a torch module and a Keras layer
rebuilt from it), so a reader that misread an option would agree with itself in every
column. The user's own object, run by its own framework, is what catches it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import compare, keras_to_torch  # noqa: E402
from xframe_bilstm.adapters import keras as keras_adapter  # noqa: E402
from xframe_bilstm.adapters import torch as torch_adapter  # noqa: E402
from xframe_bilstm.canonical import RecurrentStack  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

STEPS = 6


def _nudged(stack: RecurrentStack) -> RecurrentStack:
    """``stack`` with one input weight of its first layer off by 0.25: a misreading."""
    layer = stack.layers[0]
    weights = layer.weights[0]
    kernel = np.array(weights.kernel, copy=True)
    kernel[0, 0] += 0.25
    nudged = dataclasses.replace(weights, kernel=kernel)
    layer = dataclasses.replace(layer, weights=(nudged, *layer.weights[1:]))
    return dataclasses.replace(stack, layers=(layer, *stack.layers[1:]))


def _set_weights(layer, seed: int) -> None:
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype("float32") for w in layer.weights])


def _bilstm(seed: int = 0):
    layer = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True))
    layer.build((None, None, 3))
    _set_weights(layer, seed)
    return layer


def _labels(report) -> list[str]:
    return [pair.label for pair in report.pairs]


def _explain(report) -> str:
    return "\n".join([*report.lines(), *(f"{r.label}: {r.error}" for r in report.runs)])


def test_a_misread_keras_layer_fails_on_its_original(monkeypatch) -> None:
    """Before ``@original``, every column ran the nudged reading and the report passed:
    the pairs without ``@original`` below are exactly that report, and they still pass."""
    read = keras_adapter.keras_to_canonical
    monkeypatch.setattr(keras_adapter, "keras_to_canonical", lambda obj: _nudged(read(obj)))
    report = compare(_bilstm(), frameworks=["torch", "keras"], steps=STEPS)
    ours = [pair for pair in report.pairs if "@original" not in pair.label]
    original = [pair for pair in report.pairs if "@original" in pair.label]
    assert ours and all(ours), _explain(report)
    assert not report
    assert [pair.label for pair in original] == [
        "keras[cpu,float32]@original vs reference[cpu,float64]",
        "torch[cpu,float32] vs keras[cpu,float32]@original",
        "keras[cpu,float32] vs keras[cpu,float32]@original",
    ]
    assert not any(original)
    assert all(pair.max_abs_error > 1e-3 for pair in original)


def test_a_misread_torch_module_fails_on_its_original(monkeypatch) -> None:
    """As for Keras: without ``@original`` the misread GRU passed everywhere."""
    read = torch_adapter.torch_to_canonical
    monkeypatch.setattr(torch_adapter, "torch_to_canonical", lambda obj: _nudged(read(obj)))
    torch.manual_seed(0)
    module = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True)
    report = compare(module, frameworks=["torch"], steps=STEPS)
    ours = [pair for pair in report.pairs if "@original" not in pair.label]
    assert ours and all(ours), _explain(report)
    assert not report
    failed = [pair.label for pair in report.pairs if not pair]
    assert failed == [
        "torch[cpu,float32]@original vs reference[cpu,float64]",
        "torch[cpu,float32] vs torch[cpu,float32]@original",
    ]


def test_a_keras_layer_agrees_with_its_original() -> None:
    layer = _bilstm(1)
    report = compare(layer, frameworks=["torch", "keras"], steps=STEPS)
    assert report, _explain(report)
    labels = [run.label for run in report.runs]
    assert labels == [
        "reference[cpu,float64]",
        "torch[cpu,float32]",
        "keras[cpu,float32]",
        "keras[cpu,float32]@original",
    ]
    assert "layer" in report.runs[-1].settings
    assert "torch[cpu,float32] vs keras[cpu,float32]@original" in _labels(report)
    # Planned whatever frameworks= says: the original is the ground truth.
    alone = compare(layer, frameworks=["torch"], steps=STEPS)
    assert alone and alone.runs[-1].label == "keras[cpu,float32]@original"


def test_a_torch_module_runs_in_its_own_dtype_against_every_run() -> None:
    torch.manual_seed(1)
    module = torch.nn.GRU(3, 4, batch_first=True).double()
    report = compare(module, frameworks=["torch"], dtypes=["float32", "float64"], steps=STEPS)
    assert report, _explain(report)
    assert report.runs[-1].label == "torch[cpu,float64]@original"
    assert {
        "torch[cpu,float64]@original vs reference[cpu,float64]",
        "torch[cpu,float32] vs torch[cpu,float64]@original",
        "torch[cpu,float64] vs torch[cpu,float64]@original",
    } <= set(_labels(report))
    assert next(module.parameters()).dtype == torch.float64  # the user's module as it was


def test_a_state_dict_file_runs_the_module_it_holds(tmp_path) -> None:
    torch.manual_seed(2)
    path = tmp_path / "lstm.pt"
    torch.save(torch.nn.LSTM(3, 4, batch_first=True).state_dict(), path)
    report = compare(str(path), frameworks=["torch"], steps=STEPS)
    assert report, _explain(report)
    assert report.runs[-1].label == "torch[cpu,float32]@original"


def test_a_stateful_keras_layer_keeps_its_states() -> None:
    lstm = keras.layers.LSTM(4, stateful=True, return_sequences=True)
    model = keras.Sequential([keras.Input((None, 3), batch_size=2), lstm])
    _set_weights(lstm, 3)
    model(np.random.default_rng(4).standard_normal((2, 5, 3)).astype("float32"))  # mid-sequence
    before = [state.numpy().copy() for state in lstm.states]
    assert np.abs(before[0]).max() > 0.01
    report = compare(model, frameworks=["torch", "keras"], steps=STEPS)
    assert report, _explain(report)
    assert report.input_shape[0] == 2  # the batch its states are kept for
    assert report.runs[-1].label == "keras[cpu,float32]@original"
    for state, kept in zip(lstm.states, before, strict=True):
        np.testing.assert_array_equal(state.numpy(), kept)
    other = compare(model, frameworks=["torch"], batch=3, steps=STEPS)
    assert not other
    assert "keeps states for a batch of 2" in (other.runs[-1].error or "")
    for state, kept in zip(lstm.states, before, strict=True):
        np.testing.assert_array_equal(state.numpy(), kept)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["forward", "bidirectional"])
def test_a_native_module_with_lengths_and_initial_states(bidirectional: bool) -> None:
    # Time-major, two layers: h_0/c_0 come from the Keras-order states, lengths go in packed.
    # A packed native module writes zeros at padded steps where a plain Keras layer repeats
    # its last output: the sequences are compared on valid steps.
    torch.manual_seed(5)
    module = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=bidirectional)
    rng = np.random.default_rng(6)
    count = 2 * 2 * (2 if bidirectional else 1)
    states = [rng.standard_normal((4, 4)) for _ in range(count)]
    lengths = [STEPS, 2, 1, STEPS]
    report = compare(
        module, frameworks=["torch"], lengths=lengths, initial_states=states, steps=STEPS
    )
    assert report, _explain(report)
    assert report.runs[-1].label == "torch[cpu,float32]@original"
    assert "valid steps only" in report.correspondence
    # Had the states or the lengths not reached the module, its own run would differ from
    # the reference's on valid steps: the states are O(1), the padding changes h_n.
    pair = next(p for p in report.pairs if p.label.startswith("torch[cpu,float32]@original"))
    assert pair.expected == "reference[cpu,float64]" and pair


@pytest.mark.parametrize("kind", ["GRU", "RNN"])
def test_a_native_module_of_one_state_takes_h_0_from_the_keras_order_states(kind: str) -> None:
    # One state per layer and direction: the Keras-order states are h_0 as they come.
    torch.manual_seed(8)
    module = getattr(torch.nn, kind)(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    rng = np.random.default_rng(9)
    states = [rng.standard_normal((4, 4)) for _ in range(4)]
    report = compare(module, frameworks=["torch"], initial_states=states, steps=STEPS)
    assert report, _explain(report)
    pair = next(p for p in report.pairs if p.label.startswith("torch[cpu,float32]@original"))
    assert pair.expected == "reference[cpu,float64]" and pair


def test_a_faithful_native_port_with_lengths_passes() -> None:
    # The port's packed output is zero at padded steps, the Keras layer's is its last output.
    layer = keras.layers.LSTM(4, return_sequences=True)
    layer.build((None, None, 3))
    _set_weights(layer, 7)
    port = keras_to_torch(layer).rnns[0]
    report = compare(layer, against=port, frameworks=["torch"], lengths=[5, 2, 1, 5], steps=5)
    assert report, _explain(report)
    assert "torch[cpu,float32]@against vs keras[cpu,float32]@original" in _labels(report)
    assert "@against outputs matched by meaning: sequences on valid steps only" in (
        report.correspondence
    )


def test_a_keras_against_runs_its_own_call_not_our_reading(monkeypatch) -> None:
    """A port that carries the same misreading as our reader agreed with a Keras ``against``
    rebuilt from that reading; the layer's own call tells them apart."""
    layer = _bilstm(seed=3)
    port = torch_adapter.canonical_to_torch(_nudged(keras_adapter.keras_to_canonical(layer)))
    read = keras_adapter.keras_to_canonical
    monkeypatch.setattr(keras_adapter, "keras_to_canonical", lambda obj: _nudged(read(obj)))
    report = compare(port, against=layer, frameworks=["torch"], steps=STEPS)
    against = [pair for pair in report.pairs if "@against" in pair.label]
    assert against and "keras[cpu,float32]@against" in {run.label for run in report.runs}
    assert not any(against), _explain(report)
    assert not report


def test_a_keras_file_of_fixed_length_runs_on_that_length(tmp_path) -> None:
    # Read as a stack, the file forgets its input's shape; Keras still refuses other lengths.
    x = keras.Input((STEPS, 3))
    model = keras.Model(x, keras.layers.LSTM(4)(x))
    path = tmp_path / "fixed.keras"
    model.save(path)
    report = compare(path, frameworks=["torch", "keras"])
    assert bool(report), "\n".join(report.lines())
    assert "keras[cpu,float32]@original" in [run.label for run in report.runs]
    assert report.input_shape[1] == STEPS
