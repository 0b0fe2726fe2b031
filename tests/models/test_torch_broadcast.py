"""The torch port of ``broadcast`` records (a held tensor repeated over the batch of token
ids) beyond tests/reference/test_broadcast.py: the dtype and device it keeps, reading the
value back, ``torch.export`` for any batch, and its gradient in ``compare()``.

Expected values come from the float64 reference.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xframe_bilstm import compare  # noqa: E402
from xframe_bilstm.models.to_torch import build_torch  # noqa: E402
from xframe_bilstm.models.torch_readback import current_graph  # noqa: E402
from xframe_bilstm.reference.graph import run_model_reference  # noqa: E402

from ..broadcast_models import IDS, ids_graph  # noqa: E402

pytestmark = pytest.mark.torch


def test_token_ids_give_their_batch_and_the_value_keeps_its_dtype() -> None:
    graph = ids_graph()
    port = build_torch(graph).to(torch.float32)
    got = port(torch.tensor(IDS))
    assert [tuple(value.shape) for value in got] == [(3, 4), (3, 2, 3), (3,)]
    assert all(value.dtype == torch.float32 for value in got)
    for value, want in zip(got, run_model_reference(graph, [IDS]), strict=True):
        np.testing.assert_allclose(value.detach().numpy(), want, rtol=0, atol=1e-6)


def test_the_value_reads_back_as_the_port_holds_it_now() -> None:
    port = build_torch(ids_graph())
    with torch.no_grad():
        port.cls.value[1, 2] = 7.0
    value = current_graph(port).layer("cls").weights["value"]
    assert value.shape == (2, 3) and value[1, 2] == 7.0


def test_the_port_traces_with_torch_export_for_any_batch() -> None:
    graph = ids_graph()
    batch = torch.export.Dim("batch", min=2)
    port = build_torch(graph)
    # forward(*inputs): one dynamic-shape entry for the whole tuple of inputs
    traced = torch.export.export(
        port, (torch.tensor(IDS),), dynamic_shapes=(({0: batch},),)
    ).module()
    ids = np.random.default_rng(5).integers(0, 10, (6, 5))
    for value, want in zip(traced(torch.tensor(ids)), run_model_reference(graph, [ids])):
        np.testing.assert_allclose(value.detach().numpy(), want, rtol=0, atol=1e-12)


def _gradient_names(report) -> set[str]:
    return {array.name for pair in report.gradient_pairs for array in pair.comparison.arrays}


def test_compare_checks_the_gradient_of_each_held_value() -> None:
    report = compare(build_torch(ids_graph()), frameworks=["torch"], gradients=True, seed=0)
    assert report, report.to_text()
    names = _gradient_names(report)
    for name in ("h0", "cls", "scale"):
        assert f"grad {name}/value (torch {name}.value)" in names, names


def test_a_hook_on_one_held_value_fails_on_that_value_only() -> None:
    port = build_torch(ids_graph())
    port.cls.value.register_hook(lambda grad: grad * 1.5)
    report = compare(port, frameworks=["torch"], gradients=True, seed=0)
    assert all(report.pairs), report.to_text()  # the forward agrees
    failed = [pair for pair in report.gradient_pairs if not pair]
    assert failed and all("@original" in pair.label for pair in failed), report.to_text()
    worst = {a.name for pair in failed for a in pair.comparison.arrays if not a.passed}
    assert worst == {"grad cls/value (torch cls.value)"}
