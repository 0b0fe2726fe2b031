"""PyTorch dynamic quantized recurrent modules read as the float modules they approximate.

``torch.ao.quantization.quantize_dynamic`` turns ``nn.LSTM``/``nn.GRU`` into
``torch.ao.nn.quantized.dynamic.LSTM``/``GRU``: int8 weights (``module.get_weight()``,
quantized tensors) with float biases, whose forward quantizes its activations per call. Its
reading is the float module with exactly the dequantized weights
(:func:`dequantized_rnn`), which the quantized module approximates.

torch is imported inside the functions, so importing this module imports no framework.
"""

from __future__ import annotations

import sys
from typing import Any

from ..._imports import require
from ...errors import UnsupportedFeatureError


def is_dynamic_quantized_rnn(module: Any) -> bool:
    """Whether ``module`` is a ``torch.ao.nn.quantized.dynamic`` LSTM or GRU (without
    importing torch when it is not imported)."""
    if "torch" not in sys.modules:
        return False
    dynamic = sys.modules.get("torch.ao.nn.quantized.dynamic")
    if dynamic is None:
        return False
    return isinstance(module, (dynamic.LSTM, dynamic.GRU))


def dequantized_rnn(module: Any) -> Any:
    """The float ``nn.LSTM``/``nn.GRU`` whose weights are ``module``'s int8 weights
    dequantized (``(q - zero_point) * scale``, as ``Tensor.dequantize`` computes them) and
    whose biases are its biases.

    Raises:
        UnsupportedFeatureError: float16 dynamic quantization or ``proj_size``, named.
    """
    torch = require("torch")
    mode = getattr(module, "mode", "")
    if getattr(module, "dtype", torch.qint8) != torch.qint8:
        raise UnsupportedFeatureError(
            f"dynamic quantized {mode} with dtype {module.dtype}: only int8 (torch.qint8) "
            "weights are read"
        )
    if getattr(module, "proj_size", 0):
        raise UnsupportedFeatureError(
            f"dynamic quantized {mode} with proj_size={module.proj_size}: the canonical form "
            "has no projection"
        )
    kinds = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}
    if mode not in kinds:
        raise UnsupportedFeatureError(f"dynamic quantized {mode!r} is not read (LSTM, GRU are)")
    floats = kinds[mode](
        module.input_size,
        module.hidden_size,
        num_layers=module.num_layers,
        bias=module.bias,
        batch_first=module.batch_first,
        dropout=float(module.dropout),
        bidirectional=module.bidirectional,
    )
    values = {name: w.dequantize() for name, w in module.get_weight().items()}
    if module.bias:
        values.update({name: b.detach().float() for name, b in module.get_bias().items()})
    with torch.no_grad():
        for name, parameter in floats.named_parameters():
            parameter.copy_(values[name])
    return floats.eval()
