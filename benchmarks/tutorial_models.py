#!/usr/bin/env python3
"""Recurrent models as PyTorch's tutorials and widely copied repositories write them, ported
whole as a user would: ``torch_to_keras(module)`` (checked against ``module(...)``), then
``compare(module)`` on torch, Keras and onnxruntime, the module's own run among them.

The models are those of ``tests/tutorial_models.py``, with random weights (their code is
what is tried here, not trained numbers): the chatbot tutorial's packed encoder and Luong
attention decoder, bentrevett's seq2seq encoder and decoder step and sentiment LSTM, the
names classifier, two text classifiers of Chinese-Text-Classification-Pytorch,
pytorch/examples' word language model and Udacity's character LSTM. Most take torch's
default layout, time-major; the decoders and language models take and return their states
(layers, batch, units), the last two an LSTM's (h, c) as one tuple, and return their steps
merged for the loss, ``out.view(-1, C)``. Where a model needs
what its code cannot tell (the inputs of an attention decoder, a model of one input
length), the row says what was given, as its user would give it.

    python benchmarks/tutorial_models.py   # writes benchmarks/results/tutorial_models.md

Each row: ported or refused (the refusal's start), the largest distance between a run and
the module's own in ``compare``'s report, and the seconds both steps took; then the module
exported by ``torch.onnx.export(dynamo=False)`` with its batch and free time axes dynamic
(time-major where the port takes it so), and ``compare(path)``: the graph read whole and
compared with its own run on onnxruntime.
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import numpy as np  # noqa: E402
import torch  # noqa: E402  (before TensorFlow)

from tests import tutorial_models as models  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "tutorial_models.md"


def _attention_inputs() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 20, (1, 3)),  # one step's ids, (1, batch)
        rng.standard_normal((2, 3, 6)).astype(np.float32),  # the GRU's states
        rng.standard_normal((9, 3, 6)).astype(np.float32),  # the encoder's outputs
    ]


# name -> (model, torch_to_keras options, compare options, what the row gives)
CASES: dict[str, tuple[Any, dict[str, Any], dict[str, Any], str]] = {
    "chatbot EncoderRNN": (models.ChatbotEncoder, {}, {}, ""),
    "chatbot LuongAttnDecoderRNN": (
        models.ChatbotAttentionDecoder,
        {"input_shape": [(1, "batch"), (2, "batch", 6), (None, "batch", 6)]},
        {"inputs": _attention_inputs()},
        "input_shape / inputs",
    ),
    "seq2seq Encoder": (models.Seq2SeqEncoder, {}, {}, ""),
    "seq2seq Decoder (one step)": (models.Seq2SeqDecoder, {}, {}, ""),
    "sentiment RNN (packed)": (models.SentimentLSTM, {}, {}, ""),
    "names classifier CharRNN": (models.NamesClassifier, {}, {}, ""),
    "TextRNN_Att": (models.TextRNNAttention, {}, {}, ""),
    "TextRCNN": (
        models.TextRCNN,
        {"input_shape": (32,)},
        {"inputs": np.random.default_rng(0).integers(0, 40, (4, 32))},
        "input_shape / inputs of 32 steps",
    ),
    "word_language_model": (models.WordLanguageModel, {}, {}, ""),
    "character LSTM notebook": (models.CharacterLSTM, {}, {}, ""),
}


def _refused(error: Exception) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())[:160]}…"


def _distance(report: Any) -> str:
    """The outcome and the largest distance between a run and the original's own."""
    original = [p for p in report.pairs if "@original" in p.expected or "@original" in p.actual]
    outcome = "equivalent" if report else "FAILED"
    return f"{outcome}, {max(p.comparison.max_abs_error for p in original):.2g}"


def _exported(module: Any, graph: Any, path: Path) -> None:
    """``module`` exported by torch.onnx (TorchScript) at the inputs ``compare`` draws for
    its port (grouped as its ``forward`` takes them), each batch axis and free time axis
    dynamic."""
    from xframe_bilstm.inputs import example_inputs
    from xframe_bilstm.models.forward_inputs import grouped

    axes = {}
    for name in graph.inputs:
        shape = graph.layer(name).options["shape"]
        free = {0: "batch", **({1: f"{name}_time"} if shape[:1] == (None,) else {})}
        if graph.time_major(name):  # (time, batch, ...), (layers, batch, units)
            free = {1: "batch", **({0: f"{name}_time"} if shape[0] is None else {})}
        axes[name] = free
    tensors = [torch.from_numpy(array) for array in example_inputs(graph)]
    arguments = tuple(grouped(tensors, graph.arguments) if graph.arguments else tensors)
    torch.onnx.export(
        module, arguments, str(path), dynamo=False, input_names=list(graph.inputs),
        dynamic_axes=axes,
    )  # fmt: skip


def _row(name: str, directory: Path) -> str:
    from xframe_bilstm import compare, torch_to_keras
    from xframe_bilstm.models.torch_graph import graph_from_torch

    make, port_options, compare_options, given = CASES[name]
    torch.manual_seed(0)
    module = make().eval()
    frameworks = ["torch", "keras", "onnxruntime"]
    started = time.perf_counter()
    try:
        torch_to_keras(module, **port_options)
        report = compare(module, frameworks=frameworks, **compare_options)
    except Exception as error:  # a refusal, shown as the user reads it
        seconds = time.perf_counter() - started
        return f"| {name} | refused: {_refused(error)} | {seconds:.1f} | | {given} |"
    seconds = time.perf_counter() - started
    path = directory / f"{len(list(directory.iterdir()))}.onnx"
    try:
        _exported(module, graph_from_torch(module, **port_options), path)
        exported = _distance(compare(path, frameworks=frameworks))
    except Exception as error:
        exported = f"refused: {_refused(error)}"
    return f"| {name} | {_distance(report)} | {seconds:.1f} | {exported} | {given} |"


def main() -> None:
    from xframe_bilstm import torch_to_keras

    warnings.filterwarnings("ignore")
    torch_to_keras(torch.nn.GRU(2, 3, batch_first=True))  # TensorFlow loaded, not timed
    lines = [
        "# Tutorial models ported whole",
        "",
        "Command: `python benchmarks/tutorial_models.py` (see its docstring). "
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"{platform.machine()}, {platform.system()}.",
        "",
        "| model | ported, then compare: outcome, largest distance from the module's own run "
        "| seconds | its ONNX export, compare(path): from the graph's own run | given |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as directory:
        for name in CASES:
            lines.append(_row(name, Path(directory)))
            print(lines[-1], flush=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
