#!/usr/bin/env python3
"""An int8 recurrent model through the library, next to onnxruntime's own session.

A token tagger (Embedding(1000, 64), a two-layer BiLSTM of 128 units, Linear to 10 classes)
is exported with ``torch.onnx.export`` and quantized with
``onnxruntime.quantization.quantize_dynamic`` (``DynamicQuantizeLSTM``, ``MatMulInteger``,
``DequantizeLinear`` after the embedding). Timed side by side, medians of ``REPEATS`` runs
in this process (after one warm-up), batch 8 of 50 tokens:

- onnxruntime: creating its session on the int8 graph, and one run;
- the library: ``onnx_to_torch`` of the int8 graph without and with its check against
  onnxruntime, ``dequantized_model``, one run of the int8 module and of the float module,
  and ``quantization_error`` (every run it makes, per step and direction).

    python benchmarks/bench_quantized.py     # writes benchmarks/results/quantized.md
"""

from __future__ import annotations

import io
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch  # before TensorFlow

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import onnxruntime  # noqa: E402
from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: E402

from xframe_bilstm import onnx_to_torch  # noqa: E402
from xframe_bilstm.adapters.onnx.quantized import dequantized_model  # noqa: E402
from xframe_bilstm.quantization import quantization_error  # noqa: E402

REPEATS = 5
BATCH, STEPS, VOCABULARY = 8, 50, 1000


class Tagger(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(VOCABULARY, 64)
        self.lstm = torch.nn.LSTM(64, 128, num_layers=2, batch_first=True, bidirectional=True)
        self.head = torch.nn.Linear(256, 10)

    def forward(self, tokens: Any) -> Any:
        return self.head(self.lstm(self.embedding(tokens))[0])


def int8_graph(folder: Path) -> bytes:
    torch.manual_seed(0)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Tagger().eval(), (torch.zeros(2, 7, dtype=torch.long),), buffer, dynamo=False,
            input_names=["tokens"], output_names=["logits"],
            dynamic_axes={"tokens": {0: "batch", 1: "time"}},
        )  # fmt: skip
    (folder / "float.onnx").write_bytes(buffer.getvalue())
    quantize_dynamic(
        str(folder / "float.onnx"), str(folder / "int8.onnx"), weight_type=QuantType.QInt8
    )
    return (folder / "int8.onnx").read_bytes()


def median_seconds(action: Callable[[], Any]) -> float:
    action()  # warm-up
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def session(graph: bytes) -> Any:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        graph = int8_graph(Path(folder))
    tokens = np.random.default_rng(0).integers(0, VOCABULARY, (BATCH, STEPS)).astype(np.int64)
    feeds = {"tokens": tokens}
    int8_session = session(graph)
    int8_module = onnx_to_torch(graph, verify=False)
    float_module = onnx_to_torch(dequantized_model(graph), verify=False)
    x = torch.from_numpy(tokens)

    def run(module: Any) -> Callable[[], Any]:
        def call() -> Any:
            with torch.no_grad():
                return module(x)

        return call

    report = quantization_error(graph, [tokens])
    rows = [
        ("onnxruntime: session on the int8 graph", median_seconds(lambda: session(graph))),
        ("onnxruntime: one run", median_seconds(lambda: int8_session.run(None, feeds))),
        (
            "onnx_to_torch(int8, verify=False)",
            median_seconds(lambda: onnx_to_torch(graph, verify=False)),
        ),
        (
            "onnx_to_torch(int8) (checked against onnxruntime)",
            median_seconds(lambda: onnx_to_torch(graph)),
        ),
        ("dequantized_model(int8)", median_seconds(lambda: dequantized_model(graph))),
        ("int8 module: one run (onnxruntime's kernels in torch)", median_seconds(run(int8_module))),
        ("dequantized float module: one run", median_seconds(run(float_module))),
        (
            "quantization_error(int8, [tokens])",
            median_seconds(lambda: quantization_error(graph, [tokens])),
        ),
    ]
    lines = [
        "# An int8 BiLSTM tagger: the library next to onnxruntime",
        "",
        "Written by `python benchmarks/bench_quantized.py`. Embedding(1000, 64), two-layer",
        "BiLSTM(128), Linear(10), quantized by `onnxruntime.quantization.quantize_dynamic`;",
        f"batch {BATCH} of {STEPS} tokens; medians of {REPEATS} runs after a warm-up; one thread",
        f"(torch and onnxruntime). Python {platform.python_version()}, torch {torch.__version__},",
        f"onnxruntime {onnxruntime.__version__}, {platform.machine()}.",
        "",
        "| step | seconds |",
        "|---|---|",
        *(f"| {name} | {seconds:.4f} |" for name, seconds in rows),
        "",
        "The report on these tokens:",
        "",
        "```",
        str(report),
        "```",
        "",
    ]
    (HERE / "results" / "quantized.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
