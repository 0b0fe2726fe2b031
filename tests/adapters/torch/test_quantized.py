"""PyTorch dynamic quantized LSTM/GRU (``torch.ao.quantization.quantize_dynamic``) read as
the float modules they approximate."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xframe_bilstm import compare  # noqa: E402
from xframe_bilstm.adapters.torch.quantized import (  # noqa: E402
    dequantized_rnn,
    is_dynamic_quantized_rnn,
)
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402


def _quantized(kind: Any, dtype: Any = None, **options: Any) -> Any:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices
        return torch.ao.quantization.quantize_dynamic(
            torch.nn.Sequential(kind(3, 5, **options)), {kind}, dtype=dtype or torch.qint8
        )[0]


CASES = {
    "lstm": (torch.nn.LSTM, {"batch_first": True}),
    "bilstm-2-layers": (
        torch.nn.LSTM,
        {"num_layers": 2, "bidirectional": True, "batch_first": True},
    ),
    "gru": (torch.nn.GRU, {"batch_first": True}),
    "bigru-time-major": (torch.nn.GRU, {"bidirectional": True}),
}


@pytest.mark.parametrize("case", CASES)
def test_the_reading_is_the_dequantized_weights(case: str):
    kind, options = CASES[case]
    quantized = _quantized(kind, **options)
    assert is_dynamic_quantized_rnn(quantized)
    floats = dequantized_rnn(quantized)
    for name, q in quantized.get_weight().items():
        by_hand = (q.int_repr().float() - q.q_zero_point()) * q.q_scale()
        torch.testing.assert_close(getattr(floats, name).detach(), by_hand, rtol=0, atol=0)
    x = torch.randn(2, 6, 3)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        approximated, quantized_run = floats(x)[0], quantized(x)[0]
    # the int8 module approximates its dequantized float module: close, not equal
    distance = float((approximated - quantized_run).abs().max())
    assert 0 < distance < 0.05


@pytest.mark.parametrize("case", ["bilstm-2-layers", "gru"])
def test_compare_reads_a_dynamic_quantized_module(case: str):
    kind, options = CASES[case]
    report = compare(_quantized(kind, **options), frameworks=["torch"], steps=5)
    assert report
    assert [run.label for run in report.runs] == ["reference[cpu,float64]", "torch[cpu,float32]"]
    # The module's own int8 kernels did not run: the report says so, not silently.
    (unrun,) = [entry for entry in report.left_out if entry.startswith("the source's own run")]
    assert "int8 kernels are not run" in unrun
    assert any(line.startswith("LEFT OUT | the source's own run") for line in report.lines())


def test_float16_dynamic_quantization_is_refused_by_name():
    quantized = _quantized(torch.nn.LSTM, dtype=torch.float16)
    with pytest.raises(UnsupportedFeatureError, match=r"LSTM with dtype torch\.float16"):
        dequantized_rnn(quantized)


def test_a_float_module_is_not_a_quantized_one():
    assert not is_dynamic_quantized_rnn(torch.nn.LSTM(2, 3))
    assert not is_dynamic_quantized_rnn(np.zeros(1))
