"""One torch entry for any graph: a stack's graph ports as the stack's own module, any
other graph as its whole-model port; each takes the arguments its graph is called with.

Expected values come from the float64 reference.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xframe_bilstm.adapters.torch import KerasRecurrent, canonical_to_torch  # noqa: E402
from xframe_bilstm.factories import random_stack  # noqa: E402
from xframe_bilstm.graph import LayerRecord, ModelGraph  # noqa: E402
from xframe_bilstm.models.to_torch import KerasModel  # noqa: E402
from xframe_bilstm.models.torch_port import module_arguments, port_of  # noqa: E402
from xframe_bilstm.reference import reference_outputs  # noqa: E402
from xframe_bilstm.stack_graph import stack_graph  # noqa: E402

pytestmark = pytest.mark.torch


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(array, dtype=torch.float64)


def test_a_stack_graph_ports_as_the_stacks_own_module_with_states_and_lengths() -> None:
    rng = np.random.default_rng(0)
    stack = random_stack(rng, "lstm", 3, 4, direction="bidirectional", return_state=True)
    graph = stack_graph(stack)
    module = port_of(graph).double()
    assert isinstance(module, KerasRecurrent)
    own = canonical_to_torch(stack).double().state_dict()
    assert all(torch.equal(value, own[name]) for name, value in module.state_dict().items())
    x = rng.standard_normal((2, 5, 3))
    states = [rng.standard_normal((2, 4)) for _ in range(4)]
    lengths = np.array([5, 2])
    arguments = module_arguments(
        graph, [_tensor(x)], [_tensor(s) for s in states], torch.as_tensor(lengths)
    )
    assert len(arguments) == 3  # the input, then the states and lengths the layer takes
    with torch.no_grad():
        got = module(*arguments)
    expected = reference_outputs(stack, x, initial_states=states, lengths=lengths)
    assert len(got) == len(expected)
    for tensor, want in zip(got, expected):
        np.testing.assert_allclose(tensor.numpy(), want, rtol=0, atol=1e-12)


def test_a_whole_model_ports_as_its_model_and_takes_its_inputs_only() -> None:
    rng = np.random.default_rng(1)
    kernel, bias = rng.standard_normal((3, 2)), rng.standard_normal(2)
    graph = ModelGraph(
        "dense",
        (
            LayerRecord("x", "input", "InputLayer", options={"shape": (3,), "dtype": "float32"}),
            LayerRecord(
                "d",
                "dense",
                "Dense",
                ("x",),
                {"activation": "tanh", "time_distributed": False},
                {"kernel": kernel, "bias": bias},
            ),
        ),
        inputs=("x",),
        outputs=("d",),
    )
    module = port_of(graph).double()
    assert isinstance(module, KerasModel)
    x = rng.standard_normal((4, 3))
    # Lengths a run was given do not reach a model that masks by its values.
    arguments = module_arguments(graph, [_tensor(x)], None, torch.as_tensor([1, 1, 1, 1]))
    assert len(arguments) == 1
    with torch.no_grad():
        got = module(*arguments)
    (want,) = reference_outputs(graph, [x])
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)
