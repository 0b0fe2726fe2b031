#!/usr/bin/env python3
"""Siamese and pair models (one encoder reading both inputs) ported whole as a user would.

The models are those of ``tests/siamese_models.py``, with random weights: five torch
modules (the Manhattan LSTM, InferSent's pair classifier, a BiLSTM cosine similarity, an
NLI model packing each sentence by its own lengths, ESIM), and
two Keras models saved by Keras 3 (``.keras``) and by tf_keras (``.h5``): a shared
Embedding and BiLSTM with ``Dot(normalize=True)``, and a nested ``Sequential`` encoder
called on both inputs.

    python benchmarks/siamese_models.py   # writes benchmarks/results/siamese_models.md

Each row: the port (``torch_to_keras(module)`` or ``keras_to_torch(path)``, each checked
against the original's own run); whether it holds the shared weights once (the port's
weights counted against the original's); ``compare`` on torch, Keras and onnxruntime, the
original's own run among them (a tf_keras file is checked by ``keras_to_torch`` against
tf_keras, since Keras 3 does not load it): the outcome and the largest distance from the
original; and the seconds both steps took. A torch module's ``torch.onnx`` export
(TorchScript, batch and time dynamic) is then read whole, ``compare(path)``.
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

from tests import siamese_models as models  # noqa: E402
from tests.saved_models import randomize  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "siamese_models.md"
FRAMEWORKS = ["torch", "keras", "onnxruntime"]


def _refused(error: Exception) -> str:
    return f"refused: {type(error).__name__}: {' '.join(str(error).split())[:160]}…"


def _distance(report: Any) -> str:
    """The outcome and the largest distance between a run and the original's own (of any
    two runs where the original does not run in the report)."""
    original = [p for p in report.pairs if "@original" in p.expected or "@original" in p.actual]
    pairs = original or report.pairs
    outcome = "equivalent" if report else "FAILED"
    return f"{outcome}, {max(p.comparison.max_abs_error for p in pairs):.2g}"


def _torch_row(name: str, directory: Path) -> str:
    from xframe_bilstm import compare, torch_to_keras

    torch.manual_seed(0)
    module = models.TORCH_MODELS[name]().eval()
    started = time.perf_counter()
    try:
        port = torch_to_keras(module)
        report = compare(module, frameworks=FRAMEWORKS)
    except Exception as error:  # a refusal, shown as the user reads it
        return f"| {name} (torch) | {_refused(error)} | | | |"
    seconds = time.perf_counter() - started
    held = sum(p.numel() for p in module.parameters())
    once = f"{port.count_params()} of {held}"
    exported = _exported(module, directory / f"{name}.onnx")
    return f"| {name} (torch) | {once} | {_distance(report)} | {seconds:.1f} | {exported} |"


def _exported(module: Any, path: Path) -> str:
    """``module`` exported by torch.onnx (TorchScript) at the inputs ``compare`` draws, its
    batch and time axes dynamic, then ``compare(path)``."""
    from xframe_bilstm import compare
    from xframe_bilstm.inputs import example_inputs
    from xframe_bilstm.models.torch_graph import graph_from_torch

    graph = graph_from_torch(module)
    arrays = example_inputs(graph)
    axes = {
        name: {0: "batch", 1: "time"} if array.ndim > 1 else {0: "batch"}
        for name, array in zip(graph.inputs, arrays)
    }
    try:
        torch.onnx.export(
            module, tuple(map(torch.from_numpy, arrays)), str(path), dynamo=False,
            input_names=list(graph.inputs), dynamic_axes=axes,
        )  # fmt: skip
    except Exception as error:  # torch's exporter, before anything here reads the file
        return f"torch.onnx.export fails: {type(error).__name__}: {str(error)[:80]}"
    try:
        return _distance(compare(path, frameworks=FRAMEWORKS))
    except Exception as error:
        return _refused(error)


def _keras_row(name: str, flavour: str, directory: Path) -> str:
    from xframe_bilstm import compare, keras_to_torch

    if flavour == "Keras 3":
        import keras
    else:
        import tf_keras as keras
    model = models.KERAS_MODELS[name](keras)
    randomize(model, 0)
    path = directory / f"{name.replace(' ', '_')}.{'keras' if flavour == 'Keras 3' else 'h5'}"
    model.save(path)
    started = time.perf_counter()
    try:
        port = keras_to_torch(path)
        report = compare(path, frameworks=FRAMEWORKS)
    except Exception as error:
        return f"| {name} ({flavour}) | {_refused(error)} | | | |"
    seconds = time.perf_counter() - started
    once = f"{sum(p.numel() for p in port.parameters())} of {model.count_params()}"
    checked = "" if flavour == "Keras 3" else f" ({port.verified_against})"
    return f"| {name} ({flavour}) | {once} | {_distance(report)}{checked} | {seconds:.1f} | |"


def main() -> None:
    from xframe_bilstm import torch_to_keras

    warnings.filterwarnings("ignore")
    torch_to_keras(torch.nn.GRU(2, 3, batch_first=True))  # TensorFlow loaded, not timed
    np.random.seed(0)
    lines = [
        "# Siamese and pair models ported whole",
        "",
        "Command: `python benchmarks/siamese_models.py` (see its docstring). "
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"{platform.machine()}, {platform.system()}.",
        "",
        "| model | weights in the port, of the original's (a torch LSTM keeps two biases, "
        "Keras one) | ported, then compare: outcome, largest distance from the original's "
        "own run | seconds | its ONNX export, compare(path) |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        rows = [lambda name=name: _torch_row(name, directory) for name in models.TORCH_MODELS]
        rows += [
            lambda name=name, flavour=flavour: _keras_row(name, flavour, directory)
            for name in models.KERAS_MODELS
            for flavour in ("Keras 3", "tf_keras")
        ]
        for row in rows:
            lines.append(row())
            print(lines[-1], flush=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
