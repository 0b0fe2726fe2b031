#!/usr/bin/env python3
"""The peers benchmark's models as torch.onnx exports, each compared from its file.

    python benchmarks/peers/onnx_exports.py [--steps 200]

writes ``benchmarks/results/peers_onnx_exports.md``. Each model of
:mod:`benchmarks.peers.models` is trained as the peers benchmark trains it and exported as
a user exports for deployment, by each of torch's two exporters, with dynamic axes and
without (as most tutorials call it):

- ``torch.onnx.export(dynamo=False, opset_version=17)`` (TorchScript), with its inputs'
  batch axis and their time axis (the spec's, or axis 1 of a second input) dynamic;
- ``torch.onnx.export(dynamo=True)``, torch's default, with the batch axis dynamic:
  ``torch.export`` fixes a recurrent module's length, so the time axis cannot be (asked
  to, it fails on most of these models), and the graph runs at the example's length;
- each of the two with no dynamic axis: the graph declares the example's batch size and
  length; and so at a batch of one row, as tutorials export.

Then ``compare(path, inputs=...)`` runs the file on its evaluation inputs with the
frameworks ``torch``, ``keras`` and ``onnxruntime`` beside the graph itself on onnxruntime
(``@original``). A row says whether the comparison passed, failed, or was refused (and
why), the largest distance of any run from the original, and the seconds ``compare`` took
(reading the graph, building each run, running them).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch  # before TensorFlow

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.peers.models import SPECS, example_input, train  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "peers_onnx_exports.md"
FRAMEWORKS = ["torch", "keras", "onnxruntime"]


# (title, dynamo, dynamic axes, rows of the example: all, or the first alone)
MODES = (
    (
        "`torch.onnx.export(dynamo=False, opset_version=17)`, batch and time dynamic",
        False,
        True,
        None,
    ),
    ("`torch.onnx.export(dynamo=True)`, batch dynamic (torch.export fixes time)", True, True, None),
    ("`torch.onnx.export(dynamo=False, opset_version=17)`, no dynamic axis", False, False, None),
    ("`torch.onnx.export(dynamo=True)`, no dynamic axis", True, False, None),
    (
        "`torch.onnx.export(dynamo=False, opset_version=17)`, no dynamic axis, batch 1",
        False,
        False,
        1,
    ),
    ("`torch.onnx.export(dynamo=True)`, no dynamic axis, batch 1", True, False, 1),
)


def examples(name: str, rows: int | None) -> tuple:
    """The model's evaluation inputs, their first ``rows`` rows where given."""
    return tuple(a if rows is None else a[:rows] for a in example_input(name))


def export(
    name: str, module: torch.nn.Module, path: Path, dynamo: bool, dynamic: bool, rows: int | None
) -> None:
    """``torch.onnx.export`` of ``module`` on its evaluation inputs; where ``dynamic``, the
    batch dynamic, and the time too for the TorchScript exporter."""
    spec, inputs = SPECS[name], examples(name, rows)
    names = [f"input_{k}" for k in range(len(inputs))]
    axes = {}
    for k, (input_name, array) in enumerate(zip(names, inputs)):
        time_axis = spec.time_axis if k == 0 else 1
        timed = array.ndim > 1 and not dynamo
        axes[input_name] = {0: "batch", **({time_axis: f"time_{k}"} if timed else {})}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            tuple(torch.from_numpy(a) for a in inputs),
            str(path),
            input_names=names,
            dynamic_axes=axes if dynamic else None,
            dynamo=dynamo,
            **({} if dynamo else {"opset_version": 17}),
        )


def row(
    name: str, module: torch.nn.Module, folder: Path, dynamo: bool, dynamic: bool, rows: int | None
) -> list[str]:
    """The table row of one model: its outcome, its largest distance and the seconds."""
    from xframe_bilstm import UnsupportedFeatureError, compare

    fixed = "" if dynamic else f"_fixed{rows or ''}"
    path = folder / f"{name}{'_dynamo' if dynamo else ''}{fixed}.onnx"
    try:
        export(name, module, path, dynamo, dynamic, rows)
    except Exception as error:  # the exporter's own failure
        return [name, "export failed", "", "", _clip(f"{type(error).__name__}: {error}")]
    inputs = examples(name, rows)
    start = time.perf_counter()
    try:
        report = compare(
            path, inputs=list(inputs) if len(inputs) > 1 else inputs[0], frameworks=FRAMEWORKS
        )
    except UnsupportedFeatureError as error:
        seconds = time.perf_counter() - start
        return [name, "refused", "", f"{seconds:.1f}", _clip(str(error))]
    seconds = time.perf_counter() - start
    original = [p for p in report.pairs if p.expected.endswith("@original")]
    distance = max((p.comparison.max_abs_error for p in original), default=float("nan"))
    outcome = "passed" if report else "FAILED"
    note = "" if report else _clip("; ".join(report.failures))
    return [name, outcome, f"{distance:.2e}", f"{seconds:.1f}", note]


def _clip(text: str, size: int = 200) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # torch's colours
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= size else text[: size - 1] + "…"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps per model")
    args = parser.parse_args()
    rows: list[list[list[str]]] = [[] for _ in MODES]
    with tempfile.TemporaryDirectory() as folder:
        for name in SPECS:
            module = train(name, steps=args.steps)
            for mode, (_, dynamo, dynamic, batch) in enumerate(MODES):
                rows[mode].append(row(name, module, Path(folder), dynamo, dynamic, batch))
                print(" | ".join(rows[mode][-1]), flush=True)
    import onnxruntime

    lines = [
        "# The peers benchmark's models as torch.onnx exports, compared from the file",
        "",
        f"`python benchmarks/peers/onnx_exports.py --steps {args.steps}` "
        f"(Python {platform.python_version()}, torch {torch.__version__}, onnxruntime "
        f"{onnxruntime.__version__}, {platform.machine()}). Each model trained "
        f"{args.steps} steps, exported by each of torch's exporters; `compare(path, "
        f"inputs=...)` with {', '.join(FRAMEWORKS)} beside the graph on onnxruntime "
        "(`@original`).",
        "",
    ]
    for (title, *_), table in zip(MODES, rows):
        passed = sum(r[1] == "passed" for r in table)
        lines += [
            f"## {title}",
            "",
            f"**{passed} of {len(table)} compared and passed**; the others are refused "
            "by name, or not exported by torch (a failure would be a finding).",
            "",
            "| model | outcome | largest distance from the original | seconds | why |",
            "|---|---|---|---|---|",
            *("| " + " | ".join(r) + " |" for r in table),
            "",
        ]
    RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
