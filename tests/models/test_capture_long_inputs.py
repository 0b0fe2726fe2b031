"""A ``forward`` whose windows are longer than the capture's 7 steps (raw audio into
strided convolutions, a long pool) is captured at longer lengths, and its port runs at
any length from the shortest one found. Expected values come from ``module(x)``."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError, compare, torch_to_keras  # noqa: E402
from xframe_bilstm.comparison import derived_tolerance  # noqa: E402
from xframe_bilstm.inputs import example_inputs  # noqa: E402
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402

from ..audio_models import WavEncoder  # noqa: E402
from ..tutorial_models import TextRCNN  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]
nn, F = torch.nn, torch.nn.functional


def _raw_audio() -> nn.Module:
    """wav2vec 2.0's feature encoder: a window of 400 samples, a stride of 320."""
    torch.manual_seed(61)
    return WavEncoder(((10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2))).eval()


class LongPool(nn.Module):
    """Frames (B, T, 4) pooled over 12 steps before a GRU."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(62)
        self.gru = nn.GRU(4, 3, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool1d(x.transpose(1, 2), 12, stride=4).transpose(1, 2)
        return self.gru(pooled)[0]


def _expected(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize(("make", "shortest"), [(_raw_audio, 400), (LongPool, 12)])
def test_the_port_runs_at_any_length_from_the_shortest(make, shortest: int) -> None:
    module = make().eval()
    graph = graph_from_torch(module)  # no shape given: the bare signal, (B, samples)
    (name,) = graph.inputs
    assert graph.layer(name).options["min_steps"] >= shortest
    model = torch_to_keras(module)  # verified at its examples' length, at least min_steps
    shape = graph.layer(name).options["shape"]
    for steps in (shortest, shortest + 1, 3 * shortest + 5):  # below min_steps too
        sizes = [steps if size is None else size for size in shape]
        x = np.random.default_rng(steps).standard_normal((2, *sizes)).astype("float32")
        tolerance = derived_tolerance(graph, [x])
        np.testing.assert_allclose(np.asarray(model(x)), _expected(module, x), atol=tolerance)


def test_examples_are_at_least_the_shortest_length() -> None:
    graph = graph_from_torch(_raw_audio())
    (name,) = graph.inputs
    (x,) = example_inputs(graph, steps=7)
    assert x.shape == (3, graph.layer(name).options["min_steps"])


def test_compare_runs_them_on_every_framework() -> None:
    report = compare(_raw_audio())
    assert report, report.lines()
    assert {"keras", "onnxruntime", "torch"} <= {run.spec.framework for run in report.runs}


def test_a_window_longer_than_every_length_tried_is_refused_with_torchs_reason() -> None:
    class Huge(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(1, 2, 5000)

        def forward(self, wav: torch.Tensor) -> torch.Tensor:
            return self.conv(wav.unsqueeze(1))

    with pytest.raises(UnsupportedFeatureError, match="Kernel size can't be greater"):
        graph_from_torch(Huge().eval())


def test_a_forward_of_one_length_alone_is_told_to_give_it() -> None:
    torch.manual_seed(63)
    module = TextRCNN().eval()
    with pytest.raises(UnsupportedFeatureError, match="runs at 56 steps but not at 224"):
        torch_to_keras(module)
    model = torch_to_keras(module, input_shape=(32,))  # checked against module(ids)
    assert model.input_shape == (None, 32)
    ids = np.random.default_rng(3).integers(0, 40, (4, 32))
    assert compare(module, inputs=ids, frameworks=["torch", "keras", "onnxruntime"])
