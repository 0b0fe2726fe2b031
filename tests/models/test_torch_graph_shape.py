"""torch activation, softmax, flatten and dropout-like children: torch_to_keras matches the
module, and what has no Keras meaning is refused by name."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import torch_to_keras  # noqa: E402
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402
from xframe_bilstm.reference import run_model_reference  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]
nn = torch.nn


class Tagger(nn.Module):
    """An LSTM, then the given children one after another."""

    def __init__(self, *children: nn.Module) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 6, batch_first=True)
        for index, child in enumerate(children):
            self.add_module(f"layer{index}", child)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = self.lstm(x)
        for layer in list(self.children())[1:]:
            x = layer(x)
        return x


def test_a_module_of_activation_children_rebuilds_in_keras() -> None:
    torch.manual_seed(0)
    module = Tagger(
        nn.GELU(),
        nn.Linear(6, 6),
        nn.GELU(approximate="tanh"),
        nn.LeakyReLU(0.05),
        nn.Linear(6, 6),
        nn.ELU(alpha=0.5),
        nn.Mish(),
        nn.Hardswish(),
        nn.ReLU6(),
        nn.PReLU(init=0.3),
        nn.Dropout1d(0.2),
        nn.Linear(6, 5),
        nn.Softmax(dim=1),
        nn.LogSoftmax(dim=-1),
        nn.Flatten(),
    ).eval()
    x = torch.randn(2, 4, 3) * 3
    with torch.no_grad():
        expected = module(x).numpy()
    graph = graph_from_torch(module)
    (reference,) = run_model_reference(graph, [x.numpy()])
    np.testing.assert_allclose(reference, expected, rtol=0, atol=1e-5)
    rebuilt = torch_to_keras(module)  # verified against the module
    np.testing.assert_allclose(np.asarray(rebuilt(x.numpy())), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("child", "message"),
    [
        (nn.PReLU(4), r"PReLU\(num_parameters=4\)"),
        (nn.Hardtanh(-2.0, 2.0), r"Hardtanh\(min_val=-2.0, max_val=2.0\)"),
        (nn.Flatten(2), r"Flatten\(start_dim=2"),
    ],
)
def test_children_without_a_keras_meaning_are_refused(child, message: str) -> None:
    with pytest.raises(UnsupportedFeatureError, match=message):
        graph_from_torch(nn.Sequential(nn.Linear(4, 4), child))
