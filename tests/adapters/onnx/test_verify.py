"""The noise an ONNX import is verified within: measured near the inputs, not at one point."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from xframe_bilstm import to_onnx  # noqa: E402
from xframe_bilstm.adapters.onnx import onnx_module  # noqa: E402
from xframe_bilstm.adapters.onnx.verify import graph_noise, run_torch_graph_module  # noqa: E402

pytestmark = pytest.mark.onnx


def _drift(model, inputs) -> float:
    exact = run_torch_graph_module(onnx_module(model, dtype=torch.float64), inputs)
    rounded = run_torch_graph_module(onnx_module(model, dtype=torch.float32), inputs)
    return max(float(np.abs(r - e).max()) for r, e in zip(rounded, exact))


def test_the_drift_is_the_largest_near_the_inputs() -> None:
    torch.manual_seed(0)
    model = to_onnx(torch.nn.LSTM(3, 8, batch_first=True))
    x = np.random.default_rng(1).normal(size=(2, 30, 3)).astype(np.float32)
    down, up = np.nextafter(x, np.float32(-np.inf)), np.nextafter(x, np.float32(np.inf))
    drifts = [_drift(model, (a,)) for a in (x, down, up)]
    noise = graph_noise(model, (x,)).float32
    # One unit in the last place away, float32 rounding moves the outputs further than at
    # the input itself: a bound from the input alone would be too tight.
    assert noise > drifts[0]
    assert noise == max(drifts)
