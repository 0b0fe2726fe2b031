"""Comparing outputs: results as data, with the tolerance derived from the model itself.

A :class:`Comparison` is truthy when every compared array agrees; its statistics (max and
mean absolute error, max relative error, the worst index) are there for reports, and
:meth:`Comparison.message` is the text assertions raise.

A flat tolerance does not fit all models: float32 rounding grows with weight norms and
sequence length (a trained bidirectional stack can differ by 2e-5 between two correct
implementations while a small random layer agrees to 1e-7). :func:`derived_tolerance`
therefore runs the float64 reference once more in float32 and scales the bound with the
rounding noise that run shows for this model and this input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .correspondence import output_names_of
from .errors import ToleranceExceededError
from .reference import Reading, reference_outputs

# A correct float32 implementation drifts from float64 about as far as the float32 reference
# does (at most 1.6 times as far over the configurations in benchmarks/tolerance.py, 7 times
# on a trained ethnicolr name classifier): allow each run ten times the reference's drift;
# two runs, which may drift in opposite directions, the sum (Noise.pair_tolerance).
NOISE_FACTOR = 10.0
# Where the reference's drift is tiny or zero: a few units in the last place of the output.
FLOOR_ULPS = 4.0
# Past 1% of the output's size (or 8 units in the last place, for bfloat16) the dtype cannot
# resolve this model on this input; the bound stops growing there so real errors still fail.
CAP_RELATIVE = 1e-2
CAP_ULPS = 8.0


@dataclass(frozen=True)
class ArrayComparison:
    """How far one actual array is from its expected array.

    Example:
        >>> result = compare_arrays("output", np.zeros(3), np.array([0.0, 1e-3, 0.0]), atol=1e-6)
        >>> bool(result), result.worst_index, result.mismatched
        (False, (1,), 1)
    """

    name: str
    shape: tuple[int, ...]
    max_abs_error: float
    mean_abs_error: float
    max_rel_error: float
    worst_index: tuple[int, ...]
    mismatched: int
    atol: float
    rtol: float
    problem: str | None = None  # a shape mismatch or non-finite values, found before values

    @property
    def passed(self) -> bool:
        return self.problem is None and self.mismatched == 0

    def __bool__(self) -> bool:
        return self.passed

    def describe(self) -> str:
        status = "PASSED" if self.passed else "FAILED"
        if self.problem is not None:
            return f"{status} | {self.name}: {self.problem}"
        total = int(np.prod(self.shape))
        return (
            f"{status} | {self.name}: mismatched elements {self.mismatched} / {total} "
            f"({100.0 * self.mismatched / max(total, 1):.1f}%); greatest absolute difference "
            f"{self.max_abs_error:.3g} at index {self.worst_index} (up to {self.atol:.3g} "
            f"+ {self.rtol:.3g}·|expected| allowed); mean {self.mean_abs_error:.3g}; "
            f"greatest relative difference {self.max_rel_error:.3g} (where expected ≠ 0)"
        )


@dataclass(frozen=True)
class Comparison:
    """Element-wise comparison of several named arrays; truthy when all agree."""

    arrays: tuple[ArrayComparison, ...]
    label: str = ""

    def __bool__(self) -> bool:
        return all(self.arrays)

    @property
    def max_abs_error(self) -> float:
        return max((a.max_abs_error for a in self.arrays), default=0.0)

    def message(self) -> str:
        head = f"{self.label}: " if self.label else ""
        verdict = "agree" if self else "disagree"
        return head + verdict + "\n" + "\n".join(a.describe() for a in self.arrays)


def compare_arrays(
    name: str, expected: np.ndarray, actual: np.ndarray, *, atol: float, rtol: float = 0.0
) -> ArrayComparison:
    """Compare one array with ``|actual - expected| <= atol + rtol * |expected|``.

    Shapes are checked before values, and both sides are promoted to float64 before
    subtracting so the difference itself adds no rounding. A NaN or an infinity on either
    side fails the comparison, even where both sides hold the same one: an infinite
    expected value would otherwise allow any difference (``rtol * inf``), and a model whose
    outputs are not numbers proves nothing about its port.

    Example:
        >>> print(compare_arrays("y", np.array([np.inf]), np.array([1.0]), atol=0.0,
        ...                      rtol=1e-3).describe())
        FAILED | y: non-finite values: expected has 1 (0 NaN, 1 infinite), actual has 0
    """
    expected64 = np.asarray(expected, dtype=np.float64)
    actual64 = np.asarray(actual, dtype=np.float64)
    if expected64.shape != actual64.shape:
        return ArrayComparison(
            name,
            expected64.shape,
            np.inf,
            np.inf,
            np.inf,
            (),
            int(expected64.size),
            atol,
            rtol,
            problem=f"shape {actual64.shape} where {expected64.shape} was expected",
        )
    if expected64.size == 0:
        return ArrayComparison(name, expected64.shape, 0.0, 0.0, 0.0, (), 0, atol, rtol)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is reported below
        difference = np.abs(actual64 - expected64)
        # NaN never compares as close, even to NaN: a NaN on either side is a mismatch.
        difference = np.where(np.isnan(difference), np.inf, difference)
        allowed = atol + rtol * np.abs(expected64)
        bad = ~(difference <= allowed)
        # Relative to a non-zero expected value only: dividing by a zero (or by the
        # smallest float) turns any difference at an exact zero into a meaningless 1e302.
        nonzero = expected64 != 0
        relative = np.where(nonzero, difference / np.where(nonzero, np.abs(expected64), 1), 0.0)
    worst = np.unravel_index(int(np.argmax(difference)), difference.shape)
    problem = None
    if not (np.isfinite(expected64).all() and np.isfinite(actual64).all()):
        problem = (
            f"non-finite values: expected has {_non_finite(expected64)}, "
            f"actual has {_non_finite(actual64)}"
        )
    return ArrayComparison(
        name=name,
        shape=expected64.shape,
        max_abs_error=float(difference.max()),
        mean_abs_error=float(difference.mean()),
        max_rel_error=float(relative.max()),
        worst_index=tuple(int(i) for i in worst),
        mismatched=int(bad.sum()),
        atol=atol,
        rtol=rtol,
        problem=problem,
    )


def _non_finite(values: np.ndarray) -> str:
    """How many values are not finite, and how many of those are NaN."""
    count = int((~np.isfinite(values)).sum())
    if count == 0:
        return "0"
    nan = int(np.isnan(values).sum())
    return f"{count} ({nan} NaN, {count - nan} infinite)"


def compare_outputs(
    names: Sequence[str],
    expected: Sequence[np.ndarray],
    actual: Sequence[np.ndarray],
    *,
    atol: float,
    rtol: float = 0.0,
    label: str = "",
) -> Comparison:
    """Compare two sequences of named arrays (e.g. a layer's outputs then its states).

    Example:
        >>> same = compare_outputs(["output"], [np.ones(2)], [np.ones(2)], atol=0.0)
        >>> bool(same)
        True
    """
    if not len(names) == len(expected) == len(actual):
        counts = f"{len(names)} names, {len(expected)} expected, {len(actual)} actual arrays"
        problem = ArrayComparison(
            "outputs",
            (),
            np.inf,
            np.inf,
            np.inf,
            (),
            1,
            atol,
            rtol,
            problem=f"different numbers of outputs: {counts}",
        )
        return Comparison((problem,), label)
    return Comparison(
        tuple(
            compare_arrays(name, e, a, atol=atol, rtol=rtol)
            for name, e, a in zip(names, expected, actual)
        ),
        label,
    )


@dataclass(frozen=True)
class Noise:
    """How far float32 rounding moves this model's outputs on this input.

    ``float32`` is the float32 reference's largest distance from the float64 one; ``scale``
    the largest expected value (at least 1), for the floor and the cap.
    """

    float32: float
    scale: float

    def tolerance(self, epsilon: float = float(np.finfo(np.float32).eps)) -> float:
        """The absolute error a correct implementation of relative precision ``epsilon``
        may show from the exact values (the float64 reference's): ``NOISE_FACTOR`` times the
        noise scaled to ``epsilon``, at least ``FLOOR_ULPS`` units in the last place, at most
        ``CAP_RELATIVE`` of the scale (or ``CAP_ULPS`` units in the last place, when that is
        more)."""
        noise = self.float32 * epsilon / float(np.finfo(np.float32).eps)
        floor = FLOOR_ULPS * epsilon * self.scale
        cap = max(CAP_RELATIVE, CAP_ULPS * epsilon) * self.scale
        return float(np.clip(NOISE_FACTOR * noise, floor, cap))

    def pair_tolerance(self, first: float, second: float) -> float:
        """The absolute error two correct implementations of relative precisions ``first``
        and ``second`` may show between them: each its own :meth:`tolerance` from the exact
        values, in opposite directions as it may be (two float32 runs of a trained model
        differ by up to 14 times the float32 reference's drift where each is within 8 of
        it). Against the float64 reference, about the other run's tolerance alone.

        Example:
            >>> noise = Noise(1e-7, 1.0)
            >>> float32 = float(np.finfo(np.float32).eps)
            >>> noise.pair_tolerance(float32, float32) == 2 * noise.tolerance(float32)
            True
        """
        return self.tolerance(first) + self.tolerance(second)


def measure_noise(
    reading: Reading,
    x: np.ndarray | Sequence[np.ndarray],
    *,
    initial_states: Sequence[np.ndarray] | None = None,
    lengths: Sequence[int] | np.ndarray | None = None,
    exact: Sequence[np.ndarray] | None = None,
) -> Noise:
    """Run the reference of a stack or a graph in float32 and float64 and measure their
    distance.

    ``exact`` may pass the float64 reference's outputs when they are already at hand.

    Example:
        >>> from xframe_bilstm.canonical import DirectionWeights, RecurrentLayer, RecurrentStack
        >>> w = DirectionWeights(np.full((1, 1), 0.5), np.full((1, 1), 0.5))
        >>> stack = RecurrentStack((RecurrentLayer("simple_rnn", 1, 1, (w,),
        ...                                        recurrent_activation=None),))
        >>> noise = measure_noise(stack, np.ones((1, 4, 1)))
        >>> noise.scale, 0 <= noise.float32 < 1e-7
        (1.0, True)
    """
    if exact is None:
        exact = reference_outputs(
            reading, x, dtype=np.float64, initial_states=initial_states, lengths=lengths
        )
    rounded = reference_outputs(
        reading, x, dtype=np.float32, initial_states=initial_states, lengths=lengths
    )
    # NaN from a softmax over nothing but masked steps means the same on both sides.
    with np.errstate(invalid="ignore"):
        drift = max(float(np.nanmax(np.abs(r - e), initial=0.0)) for r, e in zip(rounded, exact))
        scale = max(max(float(np.nanmax(np.abs(e), initial=0.0)) for e in exact), 1.0)
    return Noise(drift, scale)


# numpy has no bfloat16: its relative precision is 2**-7 (8 significant bits).
_BFLOAT16_EPSILON = 2.0**-7


def dtype_epsilon(dtype: object) -> float:
    """The machine epsilon of a float dtype (a numpy dtype or a name), bfloat16 included.

    Example:
        >>> dtype_epsilon("float16"), dtype_epsilon("bfloat16")
        (0.0009765625, 0.0078125)
    """
    name = getattr(dtype, "name", None) or str(dtype)
    if name == "bfloat16":  # ml_dtypes' bfloat16, or its name: numpy's finfo rejects it
        return _BFLOAT16_EPSILON
    return float(np.finfo(np.dtype(dtype)).eps)  # type: ignore[call-overload]


def least_precise(*dtypes: object) -> str:
    """The name of the dtype with the largest epsilon among ``dtypes``.

    Two implementations that compute in different dtypes differ by the rounding of the
    coarser one, so that one sets the tolerance.

    Example:
        >>> least_precise("float32", "float16", "bfloat16")
        'bfloat16'
    """
    names = [getattr(dtype, "name", None) or str(dtype) for dtype in dtypes]
    return max(names, key=dtype_epsilon)


def derived_tolerance(
    reading: Reading,
    x: np.ndarray | Sequence[np.ndarray],
    *,
    dtype: np.dtype | type[np.floating] | str = np.float32,
    initial_states: Sequence[np.ndarray] | None = None,
    lengths: Sequence[int] | np.ndarray | None = None,
) -> float:
    """Absolute error a correct ``dtype`` implementation of a stack or graph may show from
    its exact (float64) values on ``x`` (one array per input of a graph); two of them may
    differ by the sum of theirs (:meth:`Noise.pair_tolerance`).

    The float32 reference's distance from the float64 one, scaled by machine epsilon when
    ``dtype`` is not float32 (:func:`dtype_epsilon`; ``"bfloat16"`` included), times
    ``NOISE_FACTOR``; at least ``FLOOR_ULPS`` units in the
    last place and at most ``CAP_RELATIVE`` of the largest expected value
    (:meth:`Noise.tolerance`).

    Example:
        >>> from xframe_bilstm.canonical import DirectionWeights, RecurrentLayer, RecurrentStack
        >>> w = DirectionWeights(np.full((1, 1), 0.5), np.full((1, 1), 0.5))
        >>> stack = RecurrentStack((RecurrentLayer("simple_rnn", 1, 1, (w,),
        ...                                        recurrent_activation=None),))
        >>> 0 < derived_tolerance(stack, np.ones((1, 4, 1))) < 1e-5
        True
    """
    noise = measure_noise(reading, x, initial_states=initial_states, lengths=lengths)
    return noise.tolerance(dtype_epsilon(dtype))


def check_port(
    reading: Reading,
    x: np.ndarray | Sequence[np.ndarray],
    expected: Sequence[np.ndarray],
    actual: Sequence[np.ndarray],
    *,
    label: str,
    dtype: object = "float32",
    original_dtype: object = "float32",
    initial_states: Sequence[np.ndarray] | None = None,
    exact: Sequence[np.ndarray] | None = None,
    noise: Noise | None = None,
) -> None:
    """Raise unless a port's outputs on ``x`` are within rounding of its original's: every
    converter's check. The port (of precision ``dtype``) and the original (of
    ``original_dtype``: float32 as frameworks run, float64 where the reference stands for
    it) may each lie the bound of :func:`derived_tolerance` from the exact values, so they
    may differ by the sum (:meth:`Noise.pair_tolerance`).

    ``expected`` and ``actual`` follow the reading's outputs (a stack's output, then its
    states where both sides return them); ``exact`` may pass the float64 reference's, and
    ``noise`` what :func:`measure_noise` measured of the reading on ``x`` already (a
    conversion measures it before it builds the port, so that the reference's runs and the
    port are not in memory together).

    Raises:
        ToleranceExceededError: naming the pair (``label``), the output and the worst error.

    Example:
        >>> from xframe_bilstm.canonical import DirectionWeights, RecurrentLayer, RecurrentStack
        >>> w = DirectionWeights(np.full((1, 1), 0.5), np.full((1, 1), 0.5))
        >>> stack = RecurrentStack((RecurrentLayer("simple_rnn", 1, 1, (w,),
        ...                                        recurrent_activation=None),))
        >>> check_port(stack, np.ones((1, 2, 1)), [np.zeros((1, 2, 1))], [np.ones((1, 2, 1))],
        ...            label="a vs b")
        Traceback (most recent call last):
        ...
        xframe_bilstm.errors.ToleranceExceededError: a vs b: ...
    """
    if noise is None:
        noise = measure_noise(reading, x, initial_states=initial_states, exact=exact)
    names = output_names_of(reading)[: len(expected)]
    atol = noise.pair_tolerance(dtype_epsilon(original_dtype), dtype_epsilon(dtype))
    result = compare_outputs(names, expected, actual, atol=atol, label=label)
    if not result:
        raise ToleranceExceededError(result.message())
