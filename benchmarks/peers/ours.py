"""Our side: ``torch_to_keras`` (verified) on each saved model, in the project's environment.

    python benchmarks/peers/ours.py FOLDER   # writes FOLDER/ours.json

For each model: the port's largest error against ``module(x)`` (``module(x, lengths)`` for a
model packing its rows, the port called with ``[x, lengths]``) on the evaluation input,
the tolerance the library derives for that input (``derived_tolerance``, the bound every
converter's check and ``compare`` use), the conversion time, and how many outputs the port
returns (the encoder's final states among them). A refusal or failure is recorded with its
exception and its first line.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch  # before TensorFlow

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from benchmarks.peers.models import SPECS, Warmup, example_input, load, torch_outputs  # noqa: E402


def first_line(error: BaseException) -> str:
    """The exception's class and the first line of its message."""
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:800]


def where(error: BaseException) -> str:
    """The innermost frame of the exception's traceback, as ``file:line``, the file named from
    its package (``xframe_bilstm/...``, or an installed one's: ``torch/nn/...``)."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return ""
    parts = Path(frames[-1].filename).parts
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    elif "xframe_bilstm" in parts:
        parts = parts[parts.index("xframe_bilstm") :]
    else:
        parts = parts[-1:]
    return f"{'/'.join(parts)}:{frames[-1].lineno}"


def port_error(model: Any, module: torch.nn.Module, inputs: tuple[np.ndarray, ...]) -> float:
    """The Keras port's largest error against ``module(*inputs)``."""
    from xframe_bilstm.models.port import call_keras_model

    actual = list(call_keras_model(model, inputs))
    expected = torch_outputs(module, inputs)
    return max(float(np.abs(np.asarray(a) - e).max()) for a, e in zip(actual, expected))


def convert(name: str, folder: Path) -> dict[str, Any]:
    from xframe_bilstm import torch_to_keras
    from xframe_bilstm.comparison import derived_tolerance
    from xframe_bilstm.errors import UnsupportedFeatureError
    from xframe_bilstm.models.torch_graph import graph_from_torch

    spec = SPECS[name]
    module = load(name, folder)
    inputs = example_input(name)
    start = time.perf_counter()
    try:
        model = torch_to_keras(module, input_shape=spec.input_shape)
    except UnsupportedFeatureError as error:
        refused = {"status": "refused", "message": first_line(error), "where": where(error)}
        if spec.input_shape is not None:  # what a user who gives no shape reads
            try:
                torch_to_keras(module)
            except Exception as plain:
                refused["without_input_shape"] = f"{first_line(plain)} (at {where(plain)})"
            else:
                refused["without_input_shape"] = "ported"
        return refused
    except Exception as error:  # a failure, not a refusal: the row names it
        return {"status": "error", "message": first_line(error), "where": where(error)}
    seconds = time.perf_counter() - start
    errors = {longer: port_error(model, module, example_input(name, longer=longer))
              for longer in (False, True)}  # fmt: skip
    graph = graph_from_torch(module, input_shape=spec.input_shape)
    tolerance = derived_tolerance(graph, list(inputs))
    return {
        "status": "ported",
        "seconds": seconds,
        "error": errors[False],
        "error_longer": errors[True],
        "tolerance": tolerance,
        "outputs": len(model.outputs),
        "torch_outputs": len(torch_outputs(module, inputs)),
        "captured_by": getattr(model, "captured_by", None),
    }


def main() -> None:
    folder = Path(sys.argv[1])
    torch.set_num_threads(1)
    from xframe_bilstm import torch_to_keras

    torch_to_keras(Warmup().eval())
    results = {name: convert(name, folder) for name in SPECS}
    (folder / "ours.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
