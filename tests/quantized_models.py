"""Int8 graphs made by onnxruntime's own quantizer from torch exports, for the tests.

:func:`int8_tagger` exports a token tagger (Embedding, a (bi)LSTM, Linear) with
``torch.onnx.export`` and quantizes it with ``onnxruntime.quantization.quantize_dynamic``,
which writes ``DynamicQuantizeLSTM``, ``DynamicQuantizeLinear`` + ``MatMulInteger`` for the
Linear and ``DequantizeLinear`` after the embedding's ``Gather``; with ``fused=True`` the
graph onnxruntime's extended optimizations make of it, whose Linear is one
``DynamicQuantizeMatMul``.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

VOCABULARY = 20


def tagger(bidirectional: bool = True, layers: int = 1, seed: int = 0) -> Any:
    """A float torch tagger: Embedding(20, 6), LSTM(6, 5), Linear to 3 classes."""
    import torch

    torch.manual_seed(seed)

    class Tagger(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = torch.nn.Embedding(VOCABULARY, 6)
            self.lstm = torch.nn.LSTM(
                6, 5, num_layers=layers, batch_first=True, bidirectional=bidirectional
            )
            self.head = torch.nn.Linear(5 * (2 if bidirectional else 1), 3)

        def forward(self, tokens: Any) -> Any:
            y, _ = self.lstm(self.embedding(tokens))
            return self.head(y)

    return Tagger().eval()


def int8_tagger(
    directory: Path,
    *,
    bidirectional: bool = True,
    layers: int = 1,
    per_channel: bool = False,
    fused: bool = False,
) -> tuple[Any, bytes]:
    """The float tagger and its int8 graph (serialized), quantized by onnxruntime."""
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = tagger(bidirectional, layers)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.zeros(2, 7, dtype=torch.long),), buffer, dynamo=False,
            input_names=["tokens"], output_names=["logits"],
            dynamic_axes={"tokens": {0: "batch", 1: "time"}},
        )  # fmt: skip
    float_path = directory / "float.onnx"
    int8_path = directory / "int8.onnx"
    float_path.write_bytes(buffer.getvalue())
    quantize_dynamic(
        str(float_path), str(int8_path), weight_type=QuantType.QInt8, per_channel=per_channel
    )
    if not fused:
        return model, int8_path.read_bytes()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(directory / "fused.onnx")
    ort.InferenceSession(str(int8_path), options, providers=["CPUExecutionProvider"])
    return model, (directory / "fused.onnx").read_bytes()


def int8_stack(directory: Path, *, bidirectional: bool = True) -> bytes:
    """A torch two-layer (Bi)LSTM exported alone and quantized by onnxruntime (also written
    to ``directory / "stack8.onnx"``)."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    torch.manual_seed(0)
    rnn = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=bidirectional, batch_first=True)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            rnn, (torch.zeros(2, 5, 3),), buffer, dynamo=False, input_names=["x"],
            output_names=["y", "h_n", "c_n"], dynamic_axes={"x": {0: "batch", 1: "time"}},
        )  # fmt: skip
    (directory / "stack.onnx").write_bytes(buffer.getvalue())
    quantize_dynamic(
        str(directory / "stack.onnx"), str(directory / "stack8.onnx"), weight_type=QuantType.QInt8
    )
    return (directory / "stack8.onnx").read_bytes()
