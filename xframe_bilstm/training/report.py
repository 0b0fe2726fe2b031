"""What :func:`~xframe_bilstm.training.optimizer_parity` found, as data and as text."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class WeightStep:
    """One weight after one optimizer step: how far each side is from its referee and from
    the other side.

    ``keras_error`` and ``torch_error`` are the largest absolute differences from the float64
    run of the rule each framework was given; ``divergence`` is Keras against PyTorch.
    """

    step: int
    name: str
    keras_name: str
    torch_name: str
    keras_error: float
    torch_error: float
    divergence: float
    tolerance: float

    @property
    def follows_rules(self) -> bool:
        """Each framework took its own rule's step, to float32 noise."""
        return self.keras_error <= self.tolerance and self.torch_error <= self.tolerance

    @property
    def passed(self) -> bool:
        """Both follow their rules and agree with each other (two runs' noise allowed)."""
        return self.follows_rules and self.divergence <= 2.0 * self.tolerance


@dataclass(frozen=True)
class ConventionEffect:
    """How far one convention alone moves the weights, in float64 (Keras's rule against
    Keras's rule with this one convention taken from PyTorch's).

    ``mapped``: the PyTorch run was given arguments that remove it.
    """

    name: str
    cause: str
    divergence: float
    worst_weight: str
    above_tolerance: bool
    mapped: bool


@dataclass(frozen=True)
class TrainingReport:
    """Per-step, per-weight divergence of k optimizer steps in Keras and in PyTorch.

    Truthy when both frameworks took the same steps (to float32 noise); ``causes`` names the
    conventions that made them differ, and ``explained`` says whether each framework still
    followed its own rule exactly (so the named causes are the whole difference).
    """

    optimizer: str
    mapped: bool
    steps: int
    keras_optimizer: str
    torch_optimizer: str
    rows: tuple[WeightStep, ...]
    conventions: tuple[ConventionEffect, ...]
    trajectories: Mapping[str, Sequence[Mapping[str, np.ndarray]]] = field(repr=False)

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    def __bool__(self) -> bool:
        return self.passed

    @property
    def explained(self) -> bool:
        """Each framework followed the float64 rule of what it was given."""
        return all(row.follows_rules for row in self.rows)

    @property
    def causes(self) -> tuple[ConventionEffect, ...]:
        """Conventions not mapped whose effect alone exceeds float32 noise."""
        return tuple(c for c in self.conventions if c.above_tolerance and not c.mapped)

    def max_divergence(self, name: str | None = None) -> float:
        """The largest Keras–PyTorch divergence over the steps (of one weight if named)."""
        return max(r.divergence for r in self.rows if name in (None, r.name))

    def divergence(self, step: int, name: str) -> float:
        """Keras against PyTorch for one weight after one step."""
        return next(r.divergence for r in self.rows if r.step == step and r.name == name)

    def lines(self) -> list[str]:
        """The report as lines of text: the verdict, one row per weight, then the conventions."""
        status = "PASSED" if self.passed else "FAILED"
        mode = "mapped" if self.mapped else "unmapped (the same numbers given to both)"
        lines = [
            f"{status} | {self.optimizer}, {self.steps} steps, {mode}",
            f"  Keras:   {self.keras_optimizer}",
            f"  PyTorch: {self.torch_optimizer}",
            "  |Keras − PyTorch| per step (tolerance at the last step; ! = above it):",
        ]
        names = list(dict.fromkeys(r.name for r in self.rows))
        for name in names:
            rows = [r for r in self.rows if r.name == name]
            steps = " ".join(f"{r.divergence:.1e}{'!' if not r.passed else ' '}" for r in rows)
            lines.append(f"  {name:<32} {steps} (tol {rows[-1].tolerance:.1e})")
            lines.append(f"      Keras {rows[0].keras_name}; PyTorch {rows[0].torch_name}")
        if not self.explained:
            lines.append(
                "  A framework left its own float64 rule: the divergence is not only "
                "the conventions below."
            )
        for c in self.conventions:
            if c.mapped:
                verdict = "mapped"
            elif c.above_tolerance:
                verdict = "CAUSE"
            else:
                verdict = "within noise"
            lines.append(
                f"  {verdict} | {c.name}: alone moves {c.worst_weight} by {c.divergence:.2g}; "
                f"{c.cause}"
            )
        return lines

    def __str__(self) -> str:
        return "\n".join(self.lines())
