"""Output-level hypotheses: transform actual's outputs and see whether they then agree.

For a bidirectional layout: the backward half flipped in time (``backward_not_reversed``),
the halves swapped (``directions_swapped``), both; the backward final state against the last
output step (``final_state_from_last_output``); with ``lengths``, valid steps alone and a
run over the padding (``padding_semantics``). A fix counts when it brings the error within
the numerical bound and removes at least 90% of it; the best one wins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..canonical import RecurrentStack
from ..errors import XFrameError
from .context import Context, max_diff
from .result import Finding, format_error
from .sides import Flags

# An output-level fix must remove at least this share of the error to count as the cause.
_FIX_GAIN = 10.0

_Named = dict[str, np.ndarray]  # arrays by output name


def output_findings(
    ctx: Context,
    target: _Named,
    target_stack: RecurrentStack | None,
    unmasked: _Named | None,
    where: str,
) -> list[Finding]:
    """What explains the difference between ``target`` (expected's layer run, or with
    actual's weights in it) and actual's outputs; ``where`` prefixes the messages."""
    units = _bidirectional_units(ctx.layout)
    findings = _transform_findings(ctx, target, unmasked, units, where)
    if units is not None and target_stack is not None and not findings:
        full_stack = _full_stack(target_stack)
        if full_stack is not None:
            findings += _final_state_findings(ctx, target, ctx.reference(full_stack), units)
    return findings


def _bidirectional_units(layout: RecurrentStack | None) -> int | None:
    if layout is None or layout.last.direction != "bidirectional":
        return None
    return layout.last.units


def _full_stack(stack: RecurrentStack) -> RecurrentStack | None:
    """``stack`` returning its whole concatenated sequence and its states."""
    try:
        return Flags().apply(stack)
    except XFrameError:
        return None


def _explains(after: float, before: float, bound: float) -> bool:
    return after <= bound and after * _FIX_GAIN <= before


# --------------------------------------------------------------------------- flip and swap


def _flip_backward(arrays: _Named, units: int) -> _Named | None:
    out, changed = dict(arrays), False
    y = out.get("output")
    if y is not None and y.ndim == 3 and y.shape[-1] == 2 * units:
        out["output"] = np.concatenate([y[..., :units], y[:, ::-1, units:]], axis=-1)
        changed = True
    y = out.get("output_backward")
    if y is not None and y.ndim == 3:
        out["output_backward"], changed = y[:, ::-1], True
    return out if changed else None


def _swap_halves(arrays: _Named, units: int) -> _Named | None:
    out, changed = dict(arrays), False
    y = out.get("output")
    if y is not None and y.shape[-1] == 2 * units:
        out["output"] = np.concatenate([y[..., units:], y[..., :units]], axis=-1)
        changed = True
    for name in list(out):
        if name.endswith("_forward") and name[: -len("forward")] + "backward" in out:
            other = name[: -len("forward")] + "backward"
            out[name], out[other], changed = arrays[other], arrays[name], True
    return out if changed else None


def _swap_then_flip(arrays: _Named, units: int) -> _Named | None:
    swapped = _swap_halves(arrays, units)
    return None if swapped is None else _flip_backward(swapped, units)


_Transform = Callable[[_Named, int], "_Named | None"]
# (codes, what it does, how) for each output-level fix; the first one changes nothing.
_TRANSFORMS: tuple[tuple[tuple[str, ...], str, _Transform | None], ...] = (
    ((), "", None),
    (("backward_not_reversed",), "flipping the backward half in time", _flip_backward),
    (("directions_swapped",), "swapping the forward and backward halves", _swap_halves),
    (
        ("directions_swapped", "backward_not_reversed"),
        "swapping the forward and backward halves and flipping the backward half in time",
        _swap_then_flip,
    ),
)


def _transform_findings(
    ctx: Context,
    target: _Named,
    unmasked: _Named | None,
    units: int | None,
    prefix: str,
) -> list[Finding]:
    """Flip and swap the halves of actual's outputs; with lengths, also judge valid steps
    alone and against an unmasked run. The best fix that explains the error wins."""
    raw = ctx.error(target, ctx.actual)
    exact: tuple[float, tuple[str, ...], str] | None = None
    padded: tuple[float, tuple[str, ...], str] | None = None
    for codes, text, transform in _TRANSFORMS:
        if transform is None:
            fixed: _Named | None = ctx.actual
        else:
            fixed = None if units is None else transform(ctx.actual, units)
        if fixed is None:
            continue
        if codes:
            error = ctx.error(target, fixed)
            if _explains(error, raw, ctx.bound) and (exact is None or error < exact[0]):
                exact = (error, codes, f"{prefix}{text} makes them {ctx.evidence(error)}")
        for error, message in _padding_messages(ctx, target, unmasked, fixed, prefix + text):
            if _explains(error, raw, ctx.bound) and (padded is None or error < padded[0]):
                padded = (error, (*codes, "padding_semantics"), message)
    best = exact or padded
    if best is None:
        return []
    error, codes, message = best
    return [Finding(code, message, error) for code in codes]


# --------------------------------------------------------------------------- padding


def _padding_messages(
    ctx: Context,
    target: _Named,
    unmasked: _Named | None,
    fixed: _Named,
    text: str,
) -> list[tuple[float, str]]:
    """(error, message) for: agreeing at valid steps only; matching a run over the padding."""
    if ctx.lengths is None:
        return []
    before = f"(max error before: {format_error(ctx.before)})"
    valid = ctx.error(
        valid_only(target, ctx.lengths, ctx.layout), valid_only(fixed, ctx.lengths, ctx.layout)
    )
    lead = f"{text} makes them" if text else "they"
    results = [
        (
            valid,
            f"{lead} agree at valid steps to {format_error(valid)} but not at padded steps "
            f"{before}",
        )
    ]
    if unmasked is not None:
        error = ctx.error(unmasked, fixed)
        agree = f"expected's layer run without the lengths to {format_error(error)}"
        message = (
            f"{text} makes actual agree with {agree}, so it ran over the padding {before}"
            if text
            else f"actual ran over the padding: it agrees with {agree} {before}"
        )
        results.append((error, message))
    return results


def valid_only(arrays: _Named, lengths: Any, layout: RecurrentStack | None) -> _Named:
    """Sequence outputs with padded steps set to zero (in processing order for go_backwards)."""
    steps = next(iter(a.shape[1] for a in arrays.values() if a.ndim == 3), 0)
    valid = np.arange(steps)[None, :] < np.asarray(lengths)[:, None]
    if layout is not None and layout.last.direction == "backward":
        valid = valid[:, ::-1]
    return {
        name: np.where(valid[..., None], a, 0.0) if name.startswith("output") and a.ndim == 3 else a
        for name, a in arrays.items()
    }


# --------------------------------------------------------------------------- final states


def _final_state_findings(ctx: Context, target: _Named, full: _Named, units: int) -> list[Finding]:
    """Actual's backward final state taken from the last step (torch ``output[:, -1, H:]``)."""
    last_step = full["output"][:, -1, units:]
    first_step = full["output"][:, 0, units:]
    fixed = dict(ctx.actual)
    y = ctx.actual.get("output")
    if "h_backward" in ctx.actual and "h_backward" in target:
        state = ctx.actual["h_backward"]
        if max_diff(state, target["h_backward"]) <= ctx.tolerance:
            return []
        if max_diff(state, last_step) > ctx.bound:
            return []
        if y is not None and y.ndim == 3 and y.shape[-1] == 2 * units:
            fixed["h_backward"], how = y[:, 0, units:], "output[:, 0, H:]"
        else:
            fixed["h_backward"], how = first_step, "the state after reading x[0]"
        subject = "actual's backward final state"
    else:
        if y is None or y.ndim != 2 or y.shape[-1] != 2 * units:
            return []
        if max_diff(y[:, units:], last_step) > ctx.bound:
            return []
        fixed["output"] = np.concatenate([y[:, :units], first_step], axis=-1)
        how = "the state after reading x[0]"
        subject = "the backward half of actual's last output"
    error = ctx.error(target, fixed)
    if not _explains(error, ctx.error(target, ctx.actual), ctx.bound):
        return []
    return [
        Finding(
            "final_state_from_last_output",
            f"{subject} is the backward output at the last time step (the state after reading "
            f"only x[T-1]); taking {how} instead makes them {ctx.evidence(error)}",
            error,
        )
    ]
