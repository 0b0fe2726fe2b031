"""Statistics pooling in a captured ``forward``: the mean and standard deviation of an LSTM's
outputs over the steps (x-vector style speaker and language identifiers), a variance
without correction kept as an axis, and log-sum-exp pooling (a soft maximum). Expected
values are the module's own ``forward`` run by torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError, torch_to_keras  # noqa: E402
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402

from .every_framework import assert_agrees_everywhere  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

nn = torch.nn
FRAMES = np.random.default_rng(0).standard_normal((3, 9, 6)).astype("float32")


class StatisticsPooling(nn.Module):
    """An LSTM over frames, its outputs' mean and (unbiased) deviation over the steps
    joined, then a Linear; beside it the biased variance of the frames, kept (B, 1, F)."""

    def __init__(self, body=None) -> None:
        super().__init__()
        torch.manual_seed(121)
        self.lstm = nn.LSTM(6, 5, batch_first=True)
        self.out = nn.Linear(10, 4)
        self.body = body

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.body is not None:
            return self.body(self, x)
        h, _ = self.lstm(x)
        pooled = torch.cat([h.mean(dim=1), h.std(dim=1)], dim=-1)
        return self.out(pooled), x.var(dim=1, unbiased=False, keepdim=True)


def test_statistics_pooling_agrees_on_every_framework() -> None:
    module = StatisticsPooling().eval()
    graph = graph_from_torch(module)
    spreads = {r.options["op"]: r.options for r in graph.layers if r.kind == "reduce"}
    assert spreads["std"]["correction"] == 1 and spreads["var"]["correction"] == 0
    assert spreads["var"]["keepdims"]
    assert_agrees_everywhere(module, inputs=FRAMES)
    longer = np.random.default_rng(1).standard_normal((2, 17, 6)).astype("float32")
    port = torch_to_keras(module)  # checked against forward
    with torch.no_grad():
        want = [t.numpy() for t in module(torch.as_tensor(longer))]
    for got, expected in zip(port(longer), want):
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-6)


def test_log_sum_exp_pooling_agrees_on_every_framework() -> None:
    def body(m, x):  # a soft maximum over the steps, large enough to need the shift
        h, _ = m.lstm(x * 40.0)
        return m.out(torch.cat([torch.logsumexp(h * 50.0, dim=1), h.mean(1)], -1))

    module = StatisticsPooling(body).eval()
    reductions = [r.options for r in graph_from_torch(module).layers if r.kind == "reduce"]
    assert {"op": "logsumexp", "axes": (1,), "keepdims": False} in reductions
    assert_agrees_everywhere(module, inputs=FRAMES)


def test_a_fractional_correction_is_refused_by_name() -> None:
    def body(m, x):
        return m.lstm(x)[0].std(dim=1, correction=0.5)

    with pytest.raises(UnsupportedFeatureError, match=r"correction=0\.5"):
        torch_to_keras(StatisticsPooling(body).eval())
