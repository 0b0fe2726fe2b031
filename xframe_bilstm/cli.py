"""Command line: ``python scripts/compare.py`` or ``python -m xframe_bilstm compare``.

With no arguments it builds the classic case, a Keras ``Bidirectional`` LSTM with an explicit
``go_backwards`` backward layer and seeded random weights, runs it on every framework and
device installed (and the float64 reference) and prints how far apart they are, per pair,
per time step and per direction. ``--keras FILE`` and ``--torch FILE`` compare your own
models instead; with both, the torch model is checked against the Keras one.

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
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .atomic import write_atomically
from .canonical import DirectionWeights, RecurrentLayer, RecurrentStack
from .errors import FrameworkUnavailableError, XFrameError
from .frameworks.base import KERNEL_PATHS
from .gates import CANONICAL_ORDER
from .report import Report

DTYPES = ("float32", "float64", "float16", "bfloat16")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compare.py",
        description="Run one recurrent model in Keras, PyTorch and the float64 reference, "
        "and report how far apart they are and where.",
    )
    models = parser.add_argument_group("models (default: a random Keras Bidirectional LSTM)")
    models.add_argument("--keras", metavar="FILE", help="a Keras 3 .keras or .h5 model file")
    models.add_argument(
        "--torch",
        metavar="FILE",
        help="a state_dict of an nn.LSTM/nn.GRU/nn.RNN (torch.save or .safetensors); "
        "with --keras, it is compared against the Keras model",
    )
    models.add_argument(
        "--nonlinearity", choices=("tanh", "relu"), default="tanh", help="of a --torch nn.RNN"
    )
    models.add_argument(
        "--torch-submodule",
        metavar="NAME",
        help="with --torch: the recurrent submodule of a whole model's state_dict to use "
        "(its keys under 'NAME.', e.g. lstm)",
    )
    random = parser.add_argument_group("the random model")
    random.add_argument("--cell", choices=sorted(CANONICAL_ORDER), default="lstm")
    random.add_argument("--units", type=_positive, default=16, help="hidden size H")
    random.add_argument("--input-size", type=_positive, default=10, help="input features D")
    random.add_argument("--layers", type=_positive, default=1, help="stacked layers")
    random.add_argument(
        "--direction", choices=("forward", "backward", "bidirectional"), default="bidirectional"
    )
    random.add_argument(
        "--merge-mode",
        choices=("concat", "sum", "mul", "ave"),
        default="concat",
        help="how the last bidirectional layer merges its halves",
    )
    runs = parser.add_argument_group("runs")
    runs.add_argument("--batch", type=_positive, default=4, help="batch size B of the input")
    runs.add_argument("--steps", type=_positive, default=20, help="time steps T of the input")
    runs.add_argument("--frameworks", type=_names, default="auto", help="e.g. torch,keras")
    runs.add_argument("--devices", type=_names, default="auto", help="e.g. cpu,gpu:0")
    runs.add_argument("--dtypes", type=_dtypes, default=["float32"], help="e.g. float32,float64")
    runs.add_argument("--tf32", action="store_true", help="allow TF32 on GPUs")
    runs.add_argument(
        "--paths",
        type=_paths,
        default=(),
        help="kernel paths to run besides each framework's default: 'all' or some of "
        f"{','.join(KERNEL_PATHS)}, each optionally as FRAMEWORK:PATH",
    )
    runs.add_argument("--seed", type=int, default=0, help="seed of the weights and the input")
    runs.add_argument("--rtol", type=float, help="relative tolerance (with --atol)")
    runs.add_argument("--atol", type=float, help="absolute tolerance (with --rtol)")
    out = parser.add_argument_group("output")
    out.add_argument("--json", metavar="FILE", help="write the report as JSON")
    out.add_argument("--markdown", metavar="FILE", help="write the report as Markdown")
    out.add_argument("--junit", metavar="FILE", help="write the pairs as JUnit XML")
    out.add_argument("--plot", metavar="FILE", help="plot error against time step (PNG)")
    out.add_argument(
        "--diagnose", action="store_true", help="explain a disagreement between the models"
    )
    out.add_argument(
        "--lint",
        action="store_true",
        help="list the traps in the --keras model and what the port does about each, "
        "then exit (no runs)",
    )
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _names(text: str) -> str | list[str]:
    return "auto" if text == "auto" else [name.strip() for name in text.split(",") if name]


def _paths(text: str) -> str | list[str]:
    if text == "all":
        return text
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name.rpartition(":")[2] not in KERNEL_PATHS:
            raise argparse.ArgumentTypeError(f"{name!r} is not one of {', '.join(KERNEL_PATHS)}")
    return names


def _dtypes(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in DTYPES:
            raise argparse.ArgumentTypeError(f"{name!r} is not one of {', '.join(DTYPES)}")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m xframe_bilstm [compare] [options]`` or ``python -m xframe_bilstm matrix``."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["matrix"]:
        from .matrix.cli import main as matrix_main

        return matrix_main(arguments[1:])
    if arguments[:1] == ["compare"]:
        arguments = arguments[1:]
    return compare_main(arguments)


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
    from .native_logs import quiet_tensorflow

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
    from ._imports import require

    require("torch")  # before TensorFlow, which can crash when imported first
    source, against = _models(args)
    from .runner import compare

    with _progress(stderr or sys.stderr) as progress:
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
        )
    _write_outputs(args, report)
    try:
        _print(report, table=sys.stdout.isatty())
        if args.diagnose:
            _print_diagnosis(source, against, report)
        sys.stdout.flush()
    except BrokenPipeError:  # read by `head` or the like: the rest is not wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0 if report else 1


def _models(args: argparse.Namespace) -> tuple[Any, Any]:
    """(source, against): the Keras model first, the torch one checked against it."""
    keras_model = _load_keras(args.keras) if args.keras else None
    torch_model = (
        _load_torch(args.torch, args.nonlinearity, args.torch_submodule) if args.torch else None
    )
    if keras_model is not None:
        return keras_model, torch_model
    if torch_model is not None:
        return torch_model, None
    return _random_keras_model(args), None


def _load_keras(path: str) -> Any:
    # Read with h5py/zipfile/json only (no TensorFlow, nothing from the file executed);
    # checking the configuration here reports a bad file before any run starts.
    from .keras_files import read_spec

    read_spec(path)
    return path


def _lint(path: str) -> int:
    """Print the traps of the model in ``path``; exit 1 when the port would refuse it."""
    from .lint import lint

    traps = lint(path)
    for trap in traps:
        print(trap)
    if not traps:
        print(f"{path}: no traps found")
    return 1 if any(trap.action == "refused" for trap in traps) else 0


def _load_torch(path: str, nonlinearity: str, submodule: str | None = None) -> Any:
    # Weights only: a pickle that would run code is refused, not loaded. A whole model's
    # state_dict is refused unless --torch-submodule names the part to compare.
    from .models.from_torch import load_state_dict_module

    return load_state_dict_module(path, nonlinearity=nonlinearity, submodule=submodule)


def _random_keras_model(args: argparse.Namespace) -> Any:
    from .adapters.keras import canonical_to_keras

    return canonical_to_keras(random_stack(args, np.random.default_rng(args.seed)))


def random_stack(args: argparse.Namespace, rng: np.random.Generator) -> RecurrentStack:
    """Layers with Keras-like random float32 weights (uniform, scaled by fan-in)."""
    layers = []
    size = args.input_size
    for index in range(args.layers):
        is_last = index == args.layers - 1
        gates = len(CANONICAL_ORDER[args.cell]) * args.units
        bias_shape = (2, gates) if args.cell == "gru" else (gates,)

        def direction(size: int = size, gates: int = gates, shape: tuple = bias_shape) -> Any:
            return DirectionWeights(
                (rng.uniform(-1, 1, (size, gates)) / np.sqrt(size)).astype(np.float32),
                (rng.uniform(-1, 1, (args.units, gates)) / np.sqrt(args.units)).astype(np.float32),
                rng.uniform(-0.1, 0.1, shape).astype(np.float32),
            )

        count = 2 if args.direction == "bidirectional" else 1
        layer = RecurrentLayer(
            args.cell,
            size,
            args.units,
            tuple(direction() for _ in range(count)),
            direction=args.direction,
            merge_mode=args.merge_mode if is_last else "concat",
            recurrent_activation=None if args.cell == "simple_rnn" else "sigmoid",
            reset_after=True if args.cell == "gru" else None,
        )
        layers.append(layer)
        size = layer.output_size
    return RecurrentStack(tuple(layers), return_sequences=True, return_state=args.layers == 1)


class _progress:
    """A progress bar on ``stream`` (standard error) while runs go, when it is a terminal."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def __enter__(self) -> Callable[[int, int, str], None] | None:
        self._bar: Any = None
        if not self.stream.isatty():
            return None
        try:
            from rich.console import Console
            from rich.progress import Progress
        except ImportError:
            return None
        console = Console(file=self.stream, highlight=False, soft_wrap=True)
        self._bar = Progress(transient=True, console=console)
        self._bar.start()
        self._task = self._bar.add_task("runs", total=None)
        return self._update

    def _update(self, done: int, total: int, label: str) -> None:
        self._bar.update(self._task, completed=done, total=total, description=label)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def _print(report: Report, table: bool = False) -> None:
    """The verdict, the runs and every pair once: as a table (``table``, on a terminal, when
    rich is installed) or as one greppable line each."""
    verdict = "equivalent" if report else "NOT equivalent"
    header = [
        f"{report.source}: {verdict}",
        f"input {tuple(report.input_shape)}, seed {report.seed}; "
        + ", ".join(f"{k} {v}" for k, v in report.versions.items()),
    ]
    if table:
        with contextlib.suppress(ImportError):  # rich draws the table when installed
            _print_table(report, header)
            return
    print("\n".join(header))
    for run in report.runs:
        if run.kernel:
            print(f"  {run.label}: {run.kernel}")
    if report.correspondence:
        print(report.correspondence)
    for line in report.lines():
        print(line)
    print(report.tolerance_note)


def _print_table(report: Report, header: list[str]) -> None:
    """Runs numbered once, then a pair table that fits the terminal (80 columns or more)."""
    import shutil
    import textwrap

    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    width = shutil.get_terminal_size().columns
    console = Console(highlight=False, width=width)
    number = {run.label: index for index, run in enumerate(report.runs, 1)}
    for line in header:
        for part in textwrap.wrap(line, width, subsequent_indent="  "):
            console.print(escape(part))
    console.print("runs")
    for run in report.runs:
        detail = run.error or run.kernel
        line = f"{number[run.label]:>3}  {run.label}" + (f": {detail}" if detail else "")
        for part in textwrap.wrap(line, width, subsequent_indent=" " * 5):
            console.print(escape(part))
    if report.correspondence:
        for line in textwrap.wrap(report.correspondence, width, subsequent_indent="  "):
            console.print(escape(line))
    pairs = Table(
        title="pairs: run vs run, largest absolute error",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for column in ("pair", "result", "error", "allowed", "forward", "backward"):
        pairs.add_column(column, justify="left" if column in ("pair", "result") else "right")
    for pair in report.pairs:
        pairs.add_row(
            f"{number[pair.actual]} vs {number[pair.expected]}",
            "PASSED" if pair else "[bold red]FAILED[/]",
            f"{pair.max_abs_error:.3g}",
            f"{pair.tolerance:.3g}",
            *(
                f"{pair.directions[d]:.3g}" if d in pair.directions else ""
                for d in ("forward", "backward")
            ),
        )
    console.print(pairs)
    failed = [pair.summary() for pair in report.pairs if not pair]
    for line in [*failed, report.tolerance_note]:  # failures: which output, which shape
        for part in textwrap.wrap(line, width, subsequent_indent="  "):
            console.print(escape(part))


def _print_diagnosis(source: Any, against: Any, report: Report) -> None:
    """Explain the disagreement between the two models, or prove the conversion exact."""
    from .diagnosis import diagnose

    if against is None:
        from .converters import keras_to_torch

        # One model: diagnose it against its own conversion to the other framework.
        against = keras_to_torch(source, verify=False) if _is_keras(source) else source
    diagnosis = diagnose(source, against, seed=report.seed)
    print(f"diagnosis: {diagnosis.code}: {diagnosis.message}")
    for detail in diagnosis.details[1:]:
        print(f"  also: {detail}")


def _is_keras(obj: Any) -> bool:
    from .sources import framework_of

    return framework_of(obj) == "keras"


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


def plot_timesteps(report: Report) -> bytes:
    """PNG bytes: the largest error at each time step, one panel per pair with the reference."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    pairs = [pair for pair in report.pairs if pair.timesteps] or list(report.pairs)
    figure, axes = pyplot.subplots(
        len(pairs), 1, figsize=(8, 2.6 * max(len(pairs), 1)), squeeze=False
    )
    for axis, pair in zip(axes[:, 0], pairs):
        for name, curve in pair.timesteps.items():
            axis.plot(range(len(curve)), np.maximum(curve, 1e-18), label=name)
        axis.axhline(pair.tolerance, color="grey", linestyle="--", label="allowed")
        axis.set_yscale("log")
        axis.set_title(pair.label, fontsize=9)
        axis.set_xlabel("time step")
        axis.set_ylabel("max abs error")
        axis.legend(fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    pyplot.close(figure)
    return buffer.getvalue()


if __name__ == "__main__":
    sys.exit(main())
