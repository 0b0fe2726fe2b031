"""optimizer_parity(): real Keras layers trained by their own optimizers against their PyTorch
ports trained by torch.optim, each checked against the float64 rule it was given."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402
from xframe_bilstm.training import optimizer_parity  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]


def built(layer, input_size: int = 2):
    keras.utils.set_random_seed(0)
    layer.build((None, None, input_size))
    return layer


def lstm():
    return built(keras.layers.LSTM(3, return_sequences=True))


def bigru():
    return built(keras.layers.Bidirectional(keras.layers.GRU(3, return_sequences=True)))


def test_mapped_adam_on_an_lstm_agrees_and_leaves_the_layer_as_it_was():
    layer = lstm()
    before = [w.copy() for w in layer.get_weights()]
    report = optimizer_parity(layer, optimizer="adam", steps=2)
    assert report, str(report)
    assert report.explained
    assert {r.torch_name for r in report.rows} >= {"rnns.0.bias_ih_l0 + rnns.0.bias_hh_l0"}
    assert any(r.keras_name.endswith("lstm_cell/bias") for r in report.rows)
    assert "frozen at zero: rnns.0.bias_hh_l0" in report.torch_optimizer
    assert str(report).startswith("PASSED | adam, 2 steps, mapped")
    for a, b in zip(before, layer.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_bidirectional_gru_over_three_adam_steps_agrees():
    report = optimizer_parity(bigru(), optimizer="adam", steps=3)
    assert report, str(report)
    assert report.steps == 3 and {r.step for r in report.rows} == {1, 2, 3}
    assert "rnns.0.weight_hh_l0_reverse" in {r.torch_name for r in report.rows}
    # Keras's reset_after GRU has two biases as PyTorch does: nothing to fold.
    assert "two biases" not in [c.name for c in report.conventions]


def test_unmapped_sgd_moves_the_summed_bias_twice_as_far():
    layer = lstm()
    start = layer.cell.bias.numpy().copy()
    report = optimizer_parity(layer, optimizer="sgd", steps=1, mapped=False, learning_rate=0.1)
    keras_moved = report.trajectories["keras"][1]["layer0/forward/bias"] - start
    torch_moved = report.trajectories["torch"][1]["layer0/forward/bias"] - start
    np.testing.assert_allclose(torch_moved, 2 * keras_moved, rtol=1e-4, atol=1e-9)
    assert not report
    assert report.explained
    assert [c.name for c in report.causes] == ["two biases"]
    # The kernels have the same gradient at step 1: only the bias parts on the first step.
    assert report.divergence(1, "layer0/forward/kernel") < 1e-7
    assert report.divergence(1, "layer0/forward/bias") > 1e-3
    assert "CAUSE | two biases" in str(report)


def test_mapped_sgd_with_momentum_and_decay_on_a_stack_agrees():
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((None, 2)),
            keras.layers.LSTM(3, return_sequences=True),
            keras.layers.SimpleRNN(2),
        ]
    )
    report = optimizer_parity(
        model, optimizer="sgd", steps=2, momentum=0.9, nesterov=True, weight_decay=0.1
    )
    assert report, str(report)
    assert "w ← w − lr·0.1·w before each step" in report.torch_optimizer
    assert {r.name for r in report.rows} >= {"layer1/forward/bias"}
    effects = {c.name: c for c in report.conventions}
    assert (
        effects["weight decay coupling"].mapped and effects["weight decay coupling"].divergence > 0
    )


@pytest.mark.parametrize(
    ("hyper", "causes"),
    [
        ({}, ["epsilon placement", "epsilon value"]),
        ({"epsilon": 1e-8}, ["epsilon placement"]),
    ],
)
def test_unmapped_adam_diverges_by_epsilon(hyper, causes):
    report = optimizer_parity(bigru(), optimizer="adam", steps=2, mapped=False, **hyper)
    assert not report
    assert report.explained, str(report)
    assert [c.name for c in report.causes] == causes
    assert report.torch_optimizer.startswith("torch.optim.Adam(lr=0.001")


def test_mapping_removes_the_epsilon_divergence():
    """Same numbers and the same starting weights: the mapped run agrees, the raw one not."""
    raw = optimizer_parity(bigru(), optimizer="adam", steps=2, mapped=False, epsilon=1e-8)
    mapped = optimizer_parity(bigru(), optimizer="adam", steps=2, epsilon=1e-8)
    assert mapped and not raw
    assert raw.max_divergence() > 10 * mapped.max_divergence()


def test_unmapped_adam_weight_decay_is_coupled_in_torch():
    report = optimizer_parity(
        bigru(), optimizer="adam", steps=2, mapped=False, epsilon=1e-8, weight_decay=0.1
    )
    assert "weight decay coupling" in [c.name for c in report.causes]
    mapped = optimizer_parity(bigru(), optimizer="adam", steps=2, weight_decay=0.1)
    assert mapped, str(mapped)
    assert mapped.torch_optimizer.startswith("torch.optim.AdamW(")


def test_unmapped_adamw_defaults_differ():
    report = optimizer_parity(bigru(), optimizer="adamw", steps=2, mapped=False, epsilon=1e-8)
    assert [c.name for c in report.causes] == ["epsilon placement", "weight decay value"]
    assert report.explained


def test_a_given_batch_is_used_at_every_step():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 2)).astype("float32")
    y = rng.standard_normal((2, 4, 3)).astype("float32")
    report = optimizer_parity(lstm(), optimizer="sgd", steps=2, batch=(x, y))
    assert report, str(report)
    with pytest.raises(UnsupportedFeatureError, match="a list of 2 pairs"):
        optimizer_parity(lstm(), optimizer="sgd", steps=2, batch=[(x, y)] * 3)


def test_refusals_name_what_was_refused():
    with pytest.raises(UnsupportedFeatureError, match="loss='mae'"):
        optimizer_parity(lstm(), loss="mae")
    with pytest.raises(UnsupportedFeatureError, match="dampening"):
        optimizer_parity(lstm(), optimizer="sgd", dampening=0.5)
    with pytest.raises(UnsupportedFeatureError, match="stateful=True"):
        stateful = keras.layers.LSTM(2, stateful=True)
        stateful.build((3, 4, 2))
        optimizer_parity(stateful, steps=1)
    model = keras.Sequential(
        [keras.Input((None, 2)), keras.layers.LSTM(3), keras.layers.Dense(1, name="head")]
    )
    with pytest.raises(UnsupportedFeatureError, match="has other layers"):
        optimizer_parity(model, steps=1)


@pytest.mark.parametrize(
    "layer",
    [
        lambda: keras.layers.Bidirectional(
            keras.layers.LSTM(3, return_sequences=True), merge_mode=None
        ),
        lambda: keras.layers.LSTM(3, return_state=True),
    ],
    ids=["merge_mode_none", "return_state"],
)
def test_layers_with_several_outputs_agree(layer):
    report = optimizer_parity(built(layer()), optimizer="sgd", steps=2, momentum=0.5)
    assert report, str(report)
