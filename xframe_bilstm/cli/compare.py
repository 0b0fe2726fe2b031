"""``python -m xframe_bilstm compare`` (or ``python scripts/compare.py``): compare models.

With no arguments it builds the classic case, a Keras ``Bidirectional`` LSTM with an explicit
``go_backwards`` backward layer and seeded random weights, runs it on every framework and
device installed (and the float64 reference) and prints how far apart they are, per pair,
per time step and per direction. ``--keras FILE``, ``--torch FILE`` and ``--onnx FILE``
compare your own models instead; with two, the second is checked against the first (torch or
ONNX against Keras, ONNX against torch).

On a terminal the runs are listed once, numbered, and the pairs drawn as one table that fits
80 columns (with the detail of each failure below it); otherwise, as in CI logs, each pair is
one greppable ``PASSED | …`` / ``FAILED | …`` line. TensorFlow's C++ start-up lines are
kept off standard error unless ``TF_CPP_MIN_LOG_LEVEL`` is set
(:mod:`~xframe_bilstm.native_logs`).

Exit status: 0 when everything agrees, 1 when something does not, 2 for a usage error, a
missing framework (one line naming the pip extra to install) or a model the library refuses
(one line saying what was found and what to do).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._imports import require
from ..adapters.keras import canonical_to_keras
from ..atomic import write_atomically
from ..converters import keras_to_torch
from ..diagnosis import diagnose
from ..errors import FrameworkUnavailableError, XFrameError
from ..factories import random_stack
from ..frameworks import auto_frameworks
from ..frameworks.torch_onnx import import_exporter_early
from ..keras_files import read_spec
from ..lint import lint
from ..models.from_torch import load_state_dict_module
from ..native_logs import quiet_tensorflow
from ..report import Report
from ..runner import compare
from ..sources import source_type
from .arguments import build_parser
from .output import plot_timesteps, print_report, progress_bar


def compare_main(argv: Sequence[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.rtol is None) != (args.atol is None):
        parser.error("give both --rtol and --atol, or neither")
    if args.plot:
        _require_plotting()
    if args.lint and not args.keras:
        parser.error("--lint needs --keras FILE")
    if args.torch_submodule and not args.torch:
        parser.error("--torch-submodule needs --torch FILE")
    if args.keras and args.torch and args.onnx:
        parser.error("give at most two of --keras, --torch and --onnx: one model and its port")
    try:
        if args.lint:
            return _lint(args.keras)
        with quiet_tensorflow() as stderr:
            return _compare(args, stderr)
    except FrameworkUnavailableError as error:
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 2
    except (XFrameError, OSError, ValueError) as error:
        print(f"error: {type(error).__name__}: {_one_line(error)}", file=sys.stderr)
        return 2


def _one_line(error: BaseException) -> str:
    """The message on one line: a refusal is one line of the command's output."""
    return " ".join(str(error).split())


def _compare(args: argparse.Namespace, stderr: Any = None) -> int:
    require("torch")  # before TensorFlow, which can crash when imported first
    # Cheaper before TensorFlow's modules are loaded.
    import_exporter_early(auto_frameworks() if args.frameworks == "auto" else args.frameworks)
    source, against = _models(args)
    with progress_bar(stderr or sys.stderr) as progress:
        report = compare(
            source,
            against=against,
            frameworks=args.frameworks,
            devices=args.devices,
            dtypes=args.dtypes,
            tf32=args.tf32,
            paths=args.paths,
            seed=args.seed,
            rtol=args.rtol,
            atol=args.atol,
            batch=args.batch,
            steps=args.steps,
            progress=progress,
            gradients=args.gradients,
            quantization_budget=args.quantization_budget,
        )
    _write_outputs(args, report)
    try:
        print_report(report, table=sys.stdout.isatty())
        if args.diagnose:
            _print_diagnosis(source, against, report)
        sys.stdout.flush()
    except BrokenPipeError:  # read by `head` or the like: the rest is not wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0 if report else 1


def _models(args: argparse.Namespace) -> tuple[Any, Any]:
    """(source, against): the models given in the order Keras, torch, ONNX; the second is
    checked against the first."""
    keras_model = _load_keras(args.keras) if args.keras else None
    # Weights only: a pickle that would run code is refused, not loaded. A whole model's
    # state_dict is refused unless --torch-submodule names the part to compare.
    torch_model = (
        load_state_dict_module(
            args.torch, nonlinearity=args.nonlinearity, submodule=args.torch_submodule
        )
        if args.torch
        else None
    )
    given = [m for m in (keras_model, torch_model, args.onnx) if m is not None]
    if not given:
        return _random_keras_model(args), None
    return given[0], given[1] if len(given) > 1 else None


def _load_keras(path: str) -> Any:
    # Read with h5py/zipfile/json only (no TensorFlow, nothing from the file executed);
    # checking the configuration here reports a bad file before any run starts.
    read_spec(path)
    return path


def _lint(path: str) -> int:
    """Print the traps of the model in ``path``; exit 1 when the port would refuse it."""
    traps = lint(path)
    for trap in traps:
        print(trap)
    if not traps:
        print(f"{path}: no traps found")
    return 1 if any(trap.action == "refused" for trap in traps) else 0


def _random_keras_model(args: argparse.Namespace) -> Any:
    """The classic case: the random stack the options describe, with float32 weights."""
    stack = random_stack(
        np.random.default_rng(args.seed),
        args.cell,
        args.input_size,
        args.units,
        num_layers=args.layers,
        return_state=args.layers == 1,
        direction=args.direction,
        merge_mode=args.merge_mode,
        dtype=np.float32,
    )
    return canonical_to_keras(stack)


def _print_diagnosis(source: Any, against: Any, report: Report) -> None:
    """Explain the disagreement between the two models, or prove the conversion exact."""
    if against is None:
        # One model: diagnose it against its own conversion to the other framework.
        against = keras_to_torch(source, verify=False) if _is_keras(source) else source
    diagnosis = diagnose(source, against, seed=report.seed)
    print(f"diagnosis: {diagnosis.code}: {diagnosis.message}")
    for detail in diagnosis.details[1:]:
        print(f"  also: {detail}")


def _is_keras(obj: Any) -> bool:
    """A Keras layer or model, or a Keras model file: what keras_to_torch ports."""
    return source_type(obj) in ("keras", "Keras file")


def _write_outputs(args: argparse.Namespace, report: Report) -> None:
    for path, text in (
        (args.json, report.to_json),
        (args.markdown, report.to_markdown),
        (args.junit, report.to_junit),
    ):
        if path:
            write_atomically(path, text().encode())
    if args.plot:
        write_atomically(args.plot, plot_timesteps(report))


def _require_plotting() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(
            "error: --plot needs matplotlib; install it with: pip install 'xframe_bilstm[plot]'",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
