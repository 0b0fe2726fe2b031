"""torch_to_keras and compare of modules calling nn.MultiheadAttention in their forward.

Expected values come from the module itself, ``module(x)``, run by torch.
"""

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


class SelfAttentionTagger(nn.Module):
    """A BiLSTM, self-attention over its outputs, a Linear per step."""

    def __init__(self, bias: bool = True) -> None:
        super().__init__()
        torch.manual_seed(11)
        self.lstm = nn.LSTM(4, 6, batch_first=True, bidirectional=True)
        self.attn = nn.MultiheadAttention(12, 3, batch_first=True, bias=bias)
        if bias:  # torch starts the biases at zero: a trained model's are not
            with torch.no_grad():
                self.attn.in_proj_bias.normal_()
                self.attn.out_proj.bias.normal_()
        self.fc = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(x)
        context, _ = self.attn(h, h, h, need_weights=False)
        return self.fc(context + h)


class CrossAttention(nn.Module):
    """Query, key and value three different tensors, the key and value of other sizes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(12)
        self.lstm = nn.LSTM(4, 8, batch_first=True)
        self.keys = nn.Linear(8, 5)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True, kdim=5, vdim=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lstm(x)[0]
        out, _weights = self.attn(h, self.keys(h), torch.tanh(h[:, :, :3]))
        return out


MODULES = [
    pytest.param(SelfAttentionTagger, id="self-attention"),
    pytest.param(lambda: SelfAttentionTagger(bias=False), id="no-bias"),
    pytest.param(CrossAttention, id="query-key-value"),
]


@pytest.mark.parametrize("make", MODULES)
def test_the_keras_port_matches_the_module(make) -> None:
    module = make().eval()
    model = torch_to_keras(module)  # verified against module(x) at 3 rows of 7 steps
    x = np.random.default_rng(3).standard_normal((4, 10, 4)).astype("float32")
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    assert any(type(layer).__name__ == "MultiHeadAttention" for layer in model.layers)
    np.testing.assert_allclose(np.asarray(model(x, training=False)), expected, atol=2e-5, rtol=0)


def test_the_graph_reads_the_roles_and_the_weights() -> None:
    module = CrossAttention().eval()
    record = graph_from_torch(module).layer("attn")
    assert record.kind == "multi_head_attention"
    assert record.inputs == ("lstm", "tanh", "keys")  # Keras's (query, value, key)
    assert record.weights["key_kernel"].shape == (5, 2, 4)
    assert record.weights["value_kernel"].shape == (3, 2, 4)
    assert record.weights["output_kernel"].shape == (2, 4, 8)


@pytest.mark.parametrize("make", MODULES[::2])
def test_compare_passes_on_every_framework(make) -> None:
    assert_agrees_everywhere(make().eval(), steps=8)


class PaddingMask(SelfAttentionTagger):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(x)
        return self.attn(h, h, h, key_padding_mask=x[:, :, 0] > 1.0, need_weights=False)[0]


class UsesWeights(SelfAttentionTagger):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(x)
        return self.attn(h, h, h)[1]


class TimeMajorAttention(nn.Module):
    """Default-layout attention over time-major tensors, returned time-major."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 4, batch_first=True)
        self.attn = nn.MultiheadAttention(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lstm(x)[0].transpose(0, 1)
        return self.attn(h, h, h)[0]


class BatchMajorIntoDefault(TimeMajorAttention):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lstm(x)[0]
        return self.attn(h, h, h)[0]


def test_attention_returned_time_major_is_ported_time_major() -> None:
    assert_agrees_everywhere(TimeMajorAttention().eval())


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (PaddingMask, "passes a key_padding_mask or attn_mask to 'attn'"),
        (UsesWeights, "uses the attention weights of 'attn'"),
        (BatchMajorIntoDefault, "batch_first=False on tensors that are not time-major"),
    ],
)
def test_what_keras_cannot_compute_is_refused_by_name(make, expected: str) -> None:
    with pytest.raises(UnsupportedFeatureError) as caught:
        torch_to_keras(make().eval(), verify=False)
    assert expected in str(caught.value)
