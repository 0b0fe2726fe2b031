"""The result of :func:`~xframe_bilstm.compare`: every run, every pair, and where they part.

A :class:`Report` is truthy when every run finished and every pair agrees. Each
:class:`PairReport` keeps the element-wise :class:`~xframe_bilstm.comparison.Comparison`
plus profiles that say *where* two implementations differ: the largest error at each time
step, per direction, and on valid versus padded steps. Text, JSON, Markdown and JUnit views
are thin layers over the same data.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree

from .comparison import Comparison
from .frameworks.base import RunSpec


@dataclass(frozen=True)
class RunRecord:
    """One framework × device × dtype run: what it used, how long it took, how it failed."""

    spec: RunSpec
    seconds: float
    settings: dict[str, object] = field(default_factory=dict)
    error: str | None = None

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def kernel(self) -> str:
        """Which kernel ran, in a few words, as the framework recorded it ("" if it did not).

        Example:
            >>> spec = RunSpec("keras", "cpu", "float32", path="onednn-off")
            >>> RunRecord(spec, 0.1, {"kernel": "oneDNN off"}).kernel
            'oneDNN off'
        """
        return str(self.settings.get("kernel", ""))

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "framework": self.spec.framework,
            "device": self.spec.device,
            "dtype": self.spec.dtype,
            "tf32": self.spec.tf32,
            "path": self.spec.path or "default",
            "kernel": self.kernel,
            "seconds": self.seconds,
            "settings": {key: _plain(value) for key, value in self.settings.items()},
            "error": self.error,
        }


@dataclass(frozen=True)
class PairReport:
    """How far ``actual`` is from ``expected``, in total and where.

    ``timesteps`` maps each sequence output (and each half of a concatenated bidirectional
    output, as ``output.forward`` / ``output.backward``) to its largest error per time step.
    ``directions`` gives the largest error of everything each direction produced.
    ``padding`` gives, when there are lengths, the largest error on valid and padded steps.
    """

    expected: str
    actual: str
    comparison: Comparison
    timesteps: dict[str, list[float]] = field(default_factory=dict)
    directions: dict[str, float] = field(default_factory=dict)
    padding: dict[str, dict[str, float]] = field(default_factory=dict)
    # "outputs" for the forward comparison, "gradients" for the gradients' (where
    # ``timesteps`` holds the input gradient's error per step), "quantization" for a pair
    # with an int8 run, judged against the quantization budget (its ``tolerance``).
    kind: str = "outputs"

    @property
    def passed(self) -> bool:
        return bool(self.comparison)

    def __bool__(self) -> bool:
        return self.passed

    @property
    def label(self) -> str:
        prefix = "gradients of " if self.kind == "gradients" else ""
        return f"{prefix}{self.actual} vs {self.expected}"

    @property
    def max_abs_error(self) -> float:
        return self.comparison.max_abs_error

    @property
    def tolerance(self) -> float:
        return max((a.atol for a in self.comparison.arrays), default=0.0)

    def summary(self) -> str:
        """One greppable line: ``PASSED | torch[cpu,float32] vs reference[...] | ...``."""
        status = "PASSED" if self.passed else "FAILED"
        worst = max(self.comparison.arrays, key=lambda a: a.max_abs_error)
        where = "" if worst.problem else f" ({worst.name} at {worst.worst_index})"
        directions = ", ".join(f"{name} {error:.3g}" for name, error in self.directions.items())
        by_direction = f" | by direction: {directions}" if directions else ""
        if self.kind == "quantization":
            verdict = "within" if self.passed else "over"
            detail = worst.problem or f"quantization error {self.max_abs_error:.3g}{where}"
            budget = f"{verdict} budget {self.tolerance:.3g}"
            return f"{status} | {self.label} | {detail} {budget}{by_direction}"
        detail = worst.problem or f"max abs error {worst.max_abs_error:.3g}{where}"
        return f"{status} | {self.label} | {detail}; allowed {self.tolerance:.3g}{by_direction}"

    def to_dict(self) -> dict[str, Any]:
        kind: dict[str, Any] = {"kind": self.kind} if self.kind != "outputs" else {}
        if self.kind == "quantization":
            kind["quantization_budget"] = self.tolerance
        return {
            **kind,
            "expected": self.expected,
            "actual": self.actual,
            "passed": self.passed,
            "max_abs_error": _plain(self.max_abs_error),
            "tolerance": self.tolerance,
            "outputs": [
                {
                    "name": a.name,
                    "passed": a.passed,
                    "shape": list(a.shape),
                    "max_abs_error": _plain(a.max_abs_error),
                    "mean_abs_error": _plain(a.mean_abs_error),
                    "max_rel_error": _plain(a.max_rel_error),
                    "worst_index": list(a.worst_index),
                    "mismatched": a.mismatched,
                    "atol": a.atol,
                    "rtol": a.rtol,
                    "problem": a.problem,
                    "message": a.describe(),
                }
                for a in self.comparison.arrays
            ],
            "timesteps": {k: [_plain(e) for e in v] for k, v in self.timesteps.items()},
            "directions": {k: _plain(v) for k, v in self.directions.items()},
            "padding": {k: {p: _plain(e) for p, e in v.items()} for k, v in self.padding.items()},
        }


@dataclass(frozen=True)
class Report:
    """Everything one :func:`~xframe_bilstm.compare` call measured; truthy when all agree."""

    source: str
    input_shape: tuple[int, ...]  # of the first input
    seed: int
    lengths: tuple[int, ...] | None
    runs: tuple[RunRecord, ...]
    pairs: tuple[PairReport, ...]
    versions: dict[str, str]
    tolerance_note: str = ""
    # Which output of the ``against`` model was compared with which of the source, when
    # they return different things ("" when they return the same).
    correspondence: str = ""
    # The frameworks that could not run the model and were left out, each with why.
    left_out: tuple[str, ...] = ()
    # With ``compare(gradients=True)``: one pair per two runs' gradients, the runs whose
    # backward pass raised (``FAILED | gradients of …``) and the gradient tolerance.
    gradient_pairs: tuple[PairReport, ...] = ()
    gradient_failures: tuple[str, ...] = ()
    gradient_note: str = ""
    # The allowance of the pairs with an int8 run (None without one); the tolerance note
    # says where it comes from.
    quantization_budget: float | None = None
    # Each input's name and shape, where the model takes several (an encoder–decoder's).
    inputs: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def __bool__(self) -> bool:
        # No pair means nothing was compared, which proves nothing.
        ok = all(run.error is None for run in self.runs) and all(self.pairs)
        ok = ok and all(self.gradient_pairs) and not self.gradient_failures
        return ok and bool(self.pairs)

    @property
    def failures(self) -> list[str]:
        """One line per failed run or disagreeing pair (gradient pairs included)."""
        broken = [f"FAILED | {run.label} | {run.error}" for run in self.runs if run.error]
        pairs = [pair.summary() for pair in (*self.pairs, *self.gradient_pairs) if not pair]
        return broken + list(self.gradient_failures) + pairs

    def lines(self) -> list[str]:
        """The greppable ``PASSED | …`` / ``FAILED | …`` lines, runs first, then the
        gradient pairs (``… | gradients of torch[cpu,float32] vs …``), then a
        ``LEFT OUT | …`` line per framework that could not run the model."""
        broken = [f"FAILED | {run.label} | {run.error}" for run in self.runs if run.error]
        missing = [f"LEFT OUT | {entry}" for entry in self.left_out]
        gradients = [*self.gradient_failures, *(p.summary() for p in self.gradient_pairs)]
        return broken + [pair.summary() for pair in self.pairs] + gradients + missing

    def header(self) -> list[str]:
        """The verdict line, then the input, seed and framework versions."""
        verdict = "equivalent" if self else "NOT equivalent"
        return [
            f"{self.source}: {verdict}",
            f"{self._shown_inputs()}, seed {self.seed}; "
            + ", ".join(f"{k} {v}" for k, v in self.versions.items()),
        ]

    def _shown_inputs(self) -> str:
        """``input (3, 7)``, or ``inputs src (3, 7), tgt (3, 5)`` for several."""
        if not self.inputs:
            return f"input {tuple(self.input_shape)}"
        return "inputs " + ", ".join(f"{name} {shape}" for name, shape in self.inputs)

    def to_text(self) -> str:
        """The report as the command line prints it in logs: the header, the kernel each run
        used, how outputs were matched, every line of :meth:`lines` and the tolerance."""
        kernels = [f"  {run.label}: {run.kernel}" for run in self.runs if run.kernel]
        matched = [self.correspondence] if self.correspondence else []
        notes = [self.tolerance_note] + ([self.gradient_note] if self.gradient_note else [])
        return "\n".join([*self.header(), *kernels, *matched, *self.lines(), *notes])

    def __str__(self) -> str:
        return self.to_text()

    def to_dict(self) -> dict[str, Any]:
        gradients: dict[str, Any] = {}
        if self.gradient_pairs or self.gradient_failures or self.gradient_note:
            gradients = {
                "gradient_tolerance": self.gradient_note,
                "gradient_failures": list(self.gradient_failures),
                "gradient_pairs": [pair.to_dict() for pair in self.gradient_pairs],
            }
        return {
            "passed": bool(self),
            "source": self.source,
            "input_shape": list(self.input_shape),
            "inputs": {name: list(shape) for name, shape in self.inputs},
            "seed": self.seed,
            "lengths": None if self.lengths is None else list(self.lengths),
            "versions": self.versions,
            "tolerance": self.tolerance_note,
            "quantization_budget": self.quantization_budget,
            "correspondence": self.correspondence,
            "left_out": list(self.left_out),
            "runs": [run.to_dict() for run in self.runs],
            "pairs": [pair.to_dict() for pair in self.pairs],
            **gradients,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_markdown(self) -> str:
        verdict = "equivalent" if self else "NOT equivalent"
        inputs = self._shown_inputs()
        rows = [
            f"# {self.source}: {verdict}",
            "",
            f"{inputs[:1].upper()}{inputs[1:]}, seed {self.seed}"
            + (f", lengths {list(self.lengths)}" if self.lengths else "")
            + ". "
            + ", ".join(f"{name} {version}" for name, version in self.versions.items())
            + ".",
            "",
            "| run | seconds | settings | error |",
            "|---|---|---|---|",
        ]
        for run in self.runs:
            settings = ", ".join(f"{k}={v}" for k, v in run.settings.items())
            rows.append(f"| {run.label} | {run.seconds:.3f} | {settings} | {run.error or ''} |")
        rows += [
            "",
            "| pair | result | max abs error | allowed | by direction |",
            "|---|---|---|---|---|",
        ]
        for pair in self.pairs:
            directions = ", ".join(f"{k} {v:.3g}" for k, v in pair.directions.items())
            budget = " (quantization budget)" if pair.kind == "quantization" else ""
            rows.append(
                f"| {pair.label} | {'PASSED' if pair else 'FAILED'} | {pair.max_abs_error:.3g} "
                f"| {pair.tolerance:.3g}{budget} | {directions} |"
            )
        rows += _gradient_rows(self)
        if self.correspondence:
            rows += ["", self.correspondence]
        if self.tolerance_note:
            rows += ["", self.tolerance_note]
        if self.gradient_note:
            rows += ["", self.gradient_note]
        if self.left_out:
            rows += ["", *(f"Left out: {entry}" for entry in self.left_out)]
        return "\n".join(rows) + "\n"

    def to_junit(self) -> str:
        """A JUnit XML document: one test case per run failure and per pair."""
        suite = ElementTree.Element(
            "testsuite",
            name=f"xframe_bilstm: {self.source}",
            tests=str(
                len(self.pairs)
                + len(self.gradient_pairs)
                + len(self.gradient_failures)
                + sum(1 for r in self.runs if r.error)
            ),
            failures=str(len(self.failures)),
        )
        if self.quantization_budget is not None:
            properties = ElementTree.SubElement(suite, "properties")
            ElementTree.SubElement(
                properties,
                "property",
                name="quantization_budget",
                value=f"{self.quantization_budget:.6g}",
            )
        for run in self.runs:
            if run.error:
                case = ElementTree.SubElement(suite, "testcase", name=f"run {run.label}")
                ElementTree.SubElement(case, "failure", message=run.error).text = run.error
        for line in self.gradient_failures:
            case = ElementTree.SubElement(suite, "testcase", name=line.split(" | ")[1])
            ElementTree.SubElement(case, "failure", message=line).text = line
        for pair in (*self.pairs, *self.gradient_pairs):
            case = ElementTree.SubElement(suite, "testcase", name=pair.label)
            if not pair:
                failure = ElementTree.SubElement(case, "failure", message=pair.summary())
                failure.text = pair.comparison.message()
        return ElementTree.tostring(suite, encoding="unicode")


def _gradient_rows(report: Report) -> list[str]:
    """The markdown table of gradient pairs, each with its worst array ("" without any)."""
    if not report.gradient_pairs and not report.gradient_failures:
        return []
    rows = [
        "",
        "| gradients | result | max abs error | allowed | worst array |",
        "|---|---|---|---|---|",
    ]
    rows += [
        f"| {line.split(' | ')[1]} | FAILED | | | {line.split(' | ', 2)[2]} |"
        for line in report.gradient_failures
    ]
    for pair in report.gradient_pairs:
        worst = max(pair.comparison.arrays, key=lambda a: a.max_abs_error)
        rows.append(
            f"| {pair.label} | {'PASSED' if pair else 'FAILED'} | {pair.max_abs_error:.3g} "
            f"| {pair.tolerance:.3g} | {worst.name} |"
        )
    return rows


def _plain(value: object) -> object:
    """JSON has no infinity or NaN: write them as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
