"""The PyTorch adapter against the float64 reference, and its module structure."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xframe_bilstm import UnsupportedFeatureError, WeightShapeError, run_reference  # noqa: E402
from xframe_bilstm.adapters.torch import (  # noqa: E402
    ExplicitRNN,
    canonical_to_torch,
    run_torch,
    torch_to_canonical,
)
from xframe_bilstm.adapters.torch.keras_run import run_group  # noqa: E402
from xframe_bilstm.adapters.torch.steps import Steps  # noqa: E402
from xframe_bilstm.canonical import initial_state_count, layer_state_names  # noqa: E402
from xframe_bilstm.factories import random_stack  # noqa: E402

pytestmark = pytest.mark.torch

CELLS = [("lstm", None), ("gru", True), ("gru", False), ("simple_rnn", None)]


def _cases():
    for (cell, reset_after), direction, merge, layers in itertools.product(
        CELLS,
        ["forward", "backward", "bidirectional"],
        ["concat", "sum", "mul", "ave", None],
        [1, 2],
    ):
        if direction != "bidirectional" and merge != "concat":
            continue
        flags = [(True, False), (False, True)] if merge in ("concat", None) else [(True, True)]
        for return_sequences, return_state in flags:
            name = f"{cell}{'' if reset_after is None else f'_reset_after={reset_after}'}"
            yield pytest.param(
                cell,
                reset_after,
                direction,
                merge,
                layers,
                return_sequences,
                return_state,
                id=f"{name}-{direction}-{merge}-L{layers}-seq={return_sequences}-state={return_state}",
            )


@pytest.mark.parametrize(
    ("cell", "reset_after", "direction", "merge", "layers", "return_sequences", "return_state"),
    list(_cases()),
)
@pytest.mark.parametrize("lengths", [None, [5, 2, 1]], ids=["unmasked", "masked"])
def test_module_matches_reference_in_float64(
    cell, reset_after, direction, merge, layers, return_sequences, return_state, lengths
) -> None:
    rng = np.random.default_rng(7)
    stack = random_stack(
        rng,
        cell,
        3,
        4,
        num_layers=layers,
        direction=direction,
        merge_mode=merge,
        reset_after=reset_after,
        return_sequences=return_sequences,
        return_state=return_state,
    )
    x = rng.standard_normal((3, 5, 3))
    states = [rng.standard_normal((3, 4)) for _ in range(initial_state_count(stack))]
    expected = run_reference(stack, x, initial_states=states, lengths=lengths)
    actual = run_torch(canonical_to_torch(stack), x, initial_states=states, lengths=lengths)
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("return_sequences", [True, False], ids=["sequences", "last"])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
@pytest.mark.parametrize(
    ("cell", "reset_after"), [("lstm", None), ("gru", True), ("simple_rnn", None)]
)
def test_traceable_run_of_a_fused_group_matches_reference(
    cell, reset_after, direction, return_sequences
) -> None:
    # The whole-model port's run (no packed sequences), here on two layers fused into one
    # native module and from given initial states, which that port never needs itself.
    rng = np.random.default_rng(11)
    stack = random_stack(
        rng,
        cell,
        3,
        4,
        num_layers=2,
        direction=direction,
        reset_after=reset_after,
        return_sequences=return_sequences,
    )
    module = canonical_to_torch(stack)
    (rnn,), (group,) = module.rnns, module.groups
    assert rnn.num_layers == 2
    x, lengths = rng.standard_normal((3, 5, 3)), [5, 2, 1]
    states = [rng.standard_normal((3, 4)) for _ in range(initial_state_count(stack))]
    per_layer, first = [], 0
    for layer in stack.layers:
        count = len(layer_state_names(layer))
        per_layer.append([torch.from_numpy(s) for s in states[first : first + count]])
        first += count
    (expected,) = run_reference(stack, x, initial_states=states, lengths=lengths)
    with torch.no_grad():
        (actual,), finals = run_group(
            rnn,
            group,
            torch.from_numpy(x),
            per_layer,
            return_sequences=return_sequences,
            steps=Steps.of_lengths(torch.tensor(lengths), 5),
            traceable=True,
        )
    assert finals is None
    np.testing.assert_allclose(actual.numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("return_sequences", [True, False], ids=["sequences", "last"])
@pytest.mark.parametrize(("cell", "activation"), [("lstm", "tanh"), ("gru", "relu")])
def test_zero_masked_outputs_match_reference(cell, activation, direction, return_sequences) -> None:
    rng = np.random.default_rng(9)
    stack = random_stack(
        rng,
        cell,
        3,
        4,
        num_layers=2,
        direction=direction,
        activation=activation,
        zero_masked_outputs=True,
        return_sequences=return_sequences,
        return_state=True,
    )
    x, lengths = rng.standard_normal((3, 5, 3)), [5, 2, 1]
    expected = run_reference(stack, x, lengths=lengths)
    actual = run_torch(canonical_to_torch(stack), x, lengths=lengths)
    for got, want in zip(actual, expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    carried = run_reference(
        random_stack(
            np.random.default_rng(9),
            cell,
            3,
            4,
            num_layers=2,
            direction=direction,
            activation=activation,
            return_sequences=return_sequences,
            return_state=True,
        ),
        x,
        lengths=lengths,
    )
    # Forward layers differ from the carrying default exactly on padded rows.
    assert (direction == "forward") == (not np.allclose(carried[0], expected[0]))


@pytest.mark.parametrize(
    ("activation", "recurrent_activation"),
    [
        ("relu", "hard_sigmoid_keras3"),
        ("softsign", "hard_sigmoid_keras2"),
        ("elu", "sigmoid"),
        ("selu", "silu"),
        ("softplus", "linear"),
        ("linear", "hard_sigmoid_keras2"),
    ],
)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_other_activations_run_exactly_on_explicit_loop(
    cell, activation, recurrent_activation
) -> None:
    rng = np.random.default_rng(3)
    stack = random_stack(
        rng,
        cell,
        3,
        2,
        direction="bidirectional",
        activation=activation,
        recurrent_activation=recurrent_activation,
    )
    module = canonical_to_torch(stack)
    assert isinstance(module.rnns[0], ExplicitRNN)
    x = rng.standard_normal((2, 6, 3)) * 0.5
    (expected,) = run_reference(stack, x)
    (actual,) = run_torch(module, x)
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12)


def test_relu_simple_rnn_runs_natively() -> None:
    stack = random_stack(np.random.default_rng(0), "simple_rnn", 3, 2, activation="relu")
    rnn = canonical_to_torch(stack).rnns[0]
    assert type(rnn) is torch.nn.RNN and rnn.nonlinearity == "relu"


def test_bidirectional_stack_fuses_into_one_native_module_with_native_names() -> None:
    stack = random_stack(
        np.random.default_rng(0), "lstm", 3, 4, num_layers=3, direction="bidirectional"
    )
    module = canonical_to_torch(stack)
    (rnn,) = module.rnns
    assert type(rnn) is torch.nn.LSTM and rnn.num_layers == 3 and rnn.bidirectional
    assert "weight_ih_l2_reverse" in rnn.state_dict()
    assert tuple(rnn.weight_ih_l1.shape) == (16, 8)


def test_stack_ending_in_sum_fuses_and_sums_after() -> None:
    rng = np.random.default_rng(0)
    stack = random_stack(
        rng, "gru", 3, 2, num_layers=2, direction="bidirectional", merge_mode="sum"
    )
    module = canonical_to_torch(stack)
    # Only the last layer sums, after the native module's concatenated output.
    (rnn,) = module.rnns
    assert type(rnn) is torch.nn.GRU and rnn.num_layers == 2
    x = rng.standard_normal((2, 4, 3))
    np.testing.assert_allclose(run_torch(module, x)[0], run_reference(stack, x)[0], atol=1e-12)


def test_sum_below_another_layer_splits_the_module() -> None:
    rng = np.random.default_rng(0)
    first = random_stack(rng, "lstm", 3, 2, direction="bidirectional", merge_mode="sum").layers[0]
    second = random_stack(rng, "lstm", 2, 2, direction="bidirectional").layers[0]
    stack = type(random_stack(rng, "lstm", 3, 2))((first, second))
    assert len(canonical_to_torch(stack).rnns) == 2


def test_go_backwards_is_not_fused() -> None:
    stack = random_stack(np.random.default_rng(0), "lstm", 3, 2, num_layers=2, direction="backward")
    assert len(canonical_to_torch(stack).rnns) == 2


def test_gru_reset_before_uses_explicit_loop_without_recurrent_bias() -> None:
    stack = random_stack(np.random.default_rng(0), "gru", 3, 2, reset_after=False)
    (rnn,) = canonical_to_torch(stack).rnns
    assert isinstance(rnn, ExplicitRNN)
    assert sorted(rnn.state_dict()) == ["bias_ih_l0", "weight_hh_l0", "weight_ih_l0"]


@pytest.mark.parametrize(("cell", "reset_after"), CELLS)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_module_round_trip_is_bit_exact(cell, reset_after, bidirectional, bias) -> None:
    stack = random_stack(
        np.random.default_rng(1),
        cell,
        3,
        2,
        num_layers=2,
        reset_after=reset_after,
        direction="bidirectional" if bidirectional else "forward",
        bias=None if bias else "none",
    )
    back = torch_to_canonical(canonical_to_torch(stack))
    for before, after in zip(stack.layers, back.layers):
        for w_before, w_after in zip(before.weights, after.weights):
            assert np.array_equal(w_before.kernel, w_after.kernel)
            assert np.array_equal(w_before.recurrent_kernel, w_after.recurrent_kernel)
            if w_before.bias is None:
                assert w_after.bias is None
            else:  # a single bias comes back as [bias, 0]: the same sum, bit for bit
                assert np.array_equal(w_before.summed_bias, w_after.summed_bias)


@pytest.mark.parametrize(
    "module",
    [
        pytest.param(
            lambda: torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True), id="lstm-bi-L2"
        ),
        pytest.param(lambda: torch.nn.GRU(3, 4, batch_first=True), id="gru"),
        pytest.param(lambda: torch.nn.RNN(3, 4, nonlinearity="relu", bias=False), id="rnn-relu"),
    ],
)
def test_native_module_matches_reference(module) -> None:
    torch.manual_seed(0)
    rnn = module().double()
    stack = torch_to_canonical(rnn)
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    inputs = torch.from_numpy(x if rnn.batch_first else x.transpose(1, 0, 2).copy())
    with torch.no_grad():
        output, _ = rnn(inputs)
    output = output.numpy() if rnn.batch_first else output.numpy().transpose(1, 0, 2)
    (expected,) = run_reference(stack, x)
    np.testing.assert_allclose(output, expected, rtol=0, atol=1e-12)


def test_native_biases_are_kept_as_two_rows() -> None:
    rnn = torch.nn.LSTM(3, 2)
    (layer,) = torch_to_canonical(rnn).layers
    assert layer.bias_layout == "split"
    np.testing.assert_array_equal(layer.weights[0].recurrent_bias, rnn.bias_hh_l0.detach().numpy())


def test_proj_size_is_refused() -> None:
    with pytest.raises(UnsupportedFeatureError, match="proj_size=2"):
        torch_to_canonical(torch.nn.LSTM(3, 4, proj_size=2))


def test_other_modules_are_refused() -> None:
    with pytest.raises(UnsupportedFeatureError, match="Linear"):
        torch_to_canonical(torch.nn.Linear(3, 4))


def test_stateful_module_carries_states_and_resets() -> None:
    rng = np.random.default_rng(2)
    stack = random_stack(rng, "lstm", 3, 2, direction="bidirectional")
    stateful = canonical_to_torch(type(stack)(stack.layers, stateful=True))
    x1, x2 = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 3, 3))
    run_torch(stateful, x1)
    (second,) = run_torch(stateful, x2)
    # The second call starts where the first ended: the reference with those states.
    finals = run_reference(type(stack)(stack.layers, return_state=True), x1)[1:]
    (expected,) = run_reference(stack, x2, initial_states=finals)
    np.testing.assert_allclose(second, expected, rtol=0, atol=1e-12)
    stateful.reset_states()
    np.testing.assert_allclose(run_torch(stateful, x2)[0], run_reference(stack, x2)[0], atol=1e-12)


def test_wrong_initial_state_count_names_argument() -> None:
    module = canonical_to_torch(random_stack(np.random.default_rng(0), "lstm", 3, 2))
    with pytest.raises(WeightShapeError, match="initial_state: expected 2 tensors"):
        module(torch.zeros(1, 2, 3, dtype=torch.float64), [torch.zeros(1, 2, dtype=torch.float64)])


def test_run_module_runs_in_inference_mode_and_puts_each_mode_back() -> None:
    from xframe_bilstm.adapters.torch import run_module

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5)).double()
    module.train()
    module[0].eval()  # a mixed state, as a user may leave it
    x = np.random.default_rng(0).standard_normal((5, 3))
    (first,) = run_module(module, [x])
    (second,) = run_module(module, [x])
    with torch.no_grad():
        expected = module[0](torch.from_numpy(x)).numpy()  # dropout is identity at inference
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, expected, rtol=0, atol=0)
    assert module.training and not module[0].training and module[1].training


@pytest.mark.parametrize(
    "module",
    [
        pytest.param(lambda: torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True), id="lstm"),
        pytest.param(lambda: torch.nn.GRU(3, 4, batch_first=True), id="gru"),
    ],
)
def test_canonical_form_owns_its_weights_unless_it_borrows(module) -> None:
    torch.manual_seed(0)
    rnn = module()
    owned, borrowed = torch_to_canonical(rnn), torch_to_canonical(rnn, borrow=True)
    arrays = [
        (mine, lent)
        for a, b in zip(owned.layers, borrowed.layers)
        for wa, wb in zip(a.weights, b.weights)
        for mine, lent in ((wa.kernel, wb.kernel), (wa.recurrent_kernel, wb.recurrent_kernel))
    ]
    parameters = [p.detach().numpy() for p in rnn.parameters()]
    for mine, lent in arrays:
        assert np.array_equal(mine, lent)  # the same reading, bit for bit
        assert not mine.flags.writeable and not lent.flags.writeable
        assert not any(np.shares_memory(mine, p) for p in parameters)
    # An LSTM's kernels need no gate blocks moved: lent as views; a GRU's are moved (copies).
    shared = [any(np.shares_memory(lent, p) for p in parameters) for _, lent in arrays]
    assert all(shared) if isinstance(rnn, torch.nn.LSTM) else not any(shared)
    kept = owned.layers[0].weights[0].kernel.copy()
    with torch.no_grad():
        for parameter in rnn.parameters():
            parameter.add_(1.0)  # an optimizer step, in place
    assert np.array_equal(owned.layers[0].weights[0].kernel, kept)


@pytest.mark.parametrize(("cell", "reset_after"), CELLS)
def test_module_parameters_are_copies_in_torch_order(cell, reset_after) -> None:
    stack = random_stack(
        np.random.default_rng(3), cell, 5, 4, reset_after=reset_after, direction="bidirectional"
    )
    module = canonical_to_torch(stack)
    order = {"lstm": (0, 1, 2, 3), "gru": (1, 0, 2), "simple_rnn": (0,)}[cell]  # ifco, zrh
    for suffix, weights in zip(("", "_reverse"), stack.layers[0].weights):
        parameter = getattr(module.rnns[0], f"weight_ih_l0{suffix}").detach().numpy()
        blocks = np.split(weights.kernel.T, len(order))  # canonical (D, G·H) -> (G·H, D)
        assert np.array_equal(parameter, np.concatenate([blocks[i] for i in order]))
        assert parameter.flags.c_contiguous
        assert not np.shares_memory(parameter, weights.kernel)
