"""torch normalization and pooling children read as Keras layer records: the graph computes
what the module computes, the Keras port matches it, and what does not map is refused by
name."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError, compare, torch_to_keras  # noqa: E402
from xframe_bilstm.comparison import derived_tolerance  # noqa: E402
from xframe_bilstm.inputs import example_inputs  # noqa: E402
from xframe_bilstm.models.torch_graph import graph_from_torch  # noqa: E402
from xframe_bilstm.reference import run_model_reference  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]
nn = torch.nn


_GROUPED = (nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d)


def _with_statistics(module: nn.Module, seed: int) -> nn.Module:
    """Random running statistics and affine weights, then inference mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for child in module.modules():
            if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, *_GROUPED)):
                for tensor in (child.weight, child.bias):
                    if tensor is not None:
                        tensor.copy_(torch.randn(tensor.shape, generator=generator))
            if getattr(child, "running_mean", None) is not None:
                child.running_mean.copy_(torch.randn(child.num_features, generator=generator))
                child.running_var.uniform_(0.3, 2.5, generator=generator)
    return module.eval()


class Normalized(nn.Module):
    """LayerNorm on each step's features around an LSTM, its own forward."""

    def __init__(self) -> None:
        super().__init__()
        self.before = nn.LayerNorm(5, eps=1e-3)
        self.lstm = nn.LSTM(5, 4, batch_first=True)
        self.after = nn.LayerNorm(4, bias=False)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.after(self.lstm(self.before(x))[0]))


def _modules() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "channels_first_sequence": nn.Sequential(
            nn.BatchNorm1d(4, eps=0.01, affine=False),
            nn.MaxPool1d(2),
            nn.AvgPool1d(3, stride=1, padding=1, count_include_pad=False),
            nn.MaxPool1d(3, stride=1, padding=1),
            nn.AdaptiveAvgPool1d(1),
            nn.Linear(1, 2),
        ),
        "image": nn.Sequential(
            nn.BatchNorm2d(3),
            nn.MaxPool2d(3, stride=1, padding=1),
            nn.AvgPool2d((2, 3), stride=(1, 2)),
            nn.AdaptiveMaxPool2d(1),
        ),
        "rows": nn.Sequential(
            nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.LayerNorm(6), nn.Linear(6, 2)
        ),
        "sequence": Normalized(),
        # wav2vec 2.0's first block normalizes each channel (GroupNorm(C, C)); a TasNet's
        # global layer norm is one group (GroupNorm(1, C)).
        "grouped": nn.Sequential(
            nn.Conv1d(4, 6, 3),
            nn.GroupNorm(6, 6),
            nn.GroupNorm(1, 6, eps=1e-8),
            nn.GroupNorm(3, 6, affine=False),
            nn.InstanceNorm1d(6, affine=True),
            nn.InstanceNorm1d(6, eps=0.1),
            nn.MaxPool1d(2),
        ),
        "grouped_first": nn.Sequential(nn.GroupNorm(2, 4), nn.Conv1d(4, 3, 1)),
        "instance_image": nn.Sequential(
            nn.InstanceNorm2d(3, affine=True),
            nn.InstanceNorm2d(3, track_running_stats=True),  # its running statistics
            nn.AdaptiveAvgPool2d(1),
        ),
    }


NAMES = sorted(_modules())


@pytest.mark.parametrize("name", NAMES)
def test_the_graph_and_the_keras_port_compute_what_the_module_computes(name: str) -> None:
    module = _with_statistics(_modules()[name], seed=len(name))
    graph = graph_from_torch(module)
    inputs = example_inputs(graph, batch=3, steps=8, seed=2)
    with torch.no_grad():
        expected = module(torch.from_numpy(inputs[0])).numpy()
    tolerance = derived_tolerance(graph, inputs)
    (reference,) = run_model_reference(graph, inputs)
    np.testing.assert_allclose(reference, expected, rtol=0, atol=tolerance)
    model = torch_to_keras(module)  # verified against the module itself
    np.testing.assert_allclose(np.asarray(model(inputs[0])), expected, rtol=0, atol=tolerance)


def test_records_keep_torch_layout_as_keras_options() -> None:
    graph = graph_from_torch(_with_statistics(_modules()["image"], seed=1))
    assert graph.layer("input").options["shape"] == (3, None, None)
    batch_norm = graph.layer("batchnorm2d_0")
    assert batch_norm.options == {"axis": 1, "epsilon": 1e-5}  # torch's epsilon, carried
    assert set(batch_norm.weights) == {"gamma", "beta", "moving_mean", "moving_variance"}
    assert graph.layer("maxpool2d_1").options["padding"] == "same"
    assert graph.layer("maxpool2d_1").options["data_format"] == "channels_first"
    assert graph.layer("adaptivemaxpool2d_3").options == {
        "op": "max",
        "keepdims": True,
        "data_format": "channels_first",
    }
    rows = graph_from_torch(_with_statistics(_modules()["rows"], seed=1))
    assert rows.layer("input").options["shape"] == (5,)
    sequence = graph_from_torch(_with_statistics(_modules()["channels_first_sequence"], seed=1))
    assert sequence.layer("input").options["shape"] == (4, None)  # a 1-D pool follows
    assert set(sequence.layer("batchnorm1d_0").weights) == {"moving_mean", "moving_variance"}
    grouped = graph_from_torch(_with_statistics(_modules()["grouped"], seed=1))
    assert grouped.layer("groupnorm_2").options == {"axis": 1, "groups": 1, "epsilon": 1e-8}
    assert not grouped.layer("groupnorm_3").weights  # affine=False
    assert grouped.layer("instancenorm1d_4").options["groups"] == 6  # one per channel
    image = graph_from_torch(_with_statistics(_modules()["instance_image"], seed=1))
    assert image.layer("input").options["shape"] == (3, None, None)
    assert image.layer("instancenorm2d_1").kind == "batch_norm"
    normalized = graph_from_torch(_with_statistics(Normalized(), seed=1))
    assert normalized.layer("after").options == {"axis": (-1,), "epsilon": 1e-5}
    assert set(normalized.layer("after").weights) == {"gamma"}  # bias=False


def test_compare_runs_the_module_beside_its_ports() -> None:
    module = _with_statistics(_modules()["image"], seed=4)
    report = compare(module, frameworks=["torch", "keras", "onnxruntime"], steps=6)
    assert report, report.lines()


@pytest.mark.parametrize(
    ("child", "message"),
    [
        (nn.BatchNorm1d(3), "training mode"),
        (nn.BatchNorm1d(3, track_running_stats=False).eval(), "track_running_stats=False"),
        (nn.MaxPool1d(2, ceil_mode=True), "ceil_mode=True"),
        (nn.MaxPool1d(2, dilation=2), "dilation=2"),
        (nn.AvgPool1d(3, stride=1, padding=1), "count_include_pad=True"),
        (nn.AvgPool2d(2, divisor_override=3), "divisor_override"),
        (nn.MaxPool1d(4, stride=2, padding=1), "padding=1"),
        (nn.AdaptiveAvgPool1d(2), "output_size=2"),
    ],
)
def test_what_does_not_map_is_refused_by_name(child: nn.Module, message: str) -> None:
    module = nn.Sequential(nn.BatchNorm1d(3).eval(), child, nn.MaxPool1d(1))
    with pytest.raises(UnsupportedFeatureError, match=message):
        graph_from_torch(module)


def test_a_pool_first_does_not_fix_the_channels() -> None:
    with pytest.raises(UnsupportedFeatureError, match=r"'maxpool1d_0' \(MaxPool1d\).*channels"):
        graph_from_torch(nn.Sequential(nn.MaxPool1d(2), nn.Linear(3, 2)))
