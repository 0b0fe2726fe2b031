"""Matching one model's outputs with another's by meaning, or refusing by name.

One side's outputs are matched with what the other side's outputs give
(:class:`~xframe_bilstm.correspondence.outputs.Source`). What cannot be matched is refused by
name before anything runs, never compared element by element with something of another
meaning.

Padded steps (``lengths``) hold no meaning of their own, and the two kinds of model fill them
differently: a plain Keras layer repeats its last valid output there (a ``Bidirectional``
writes zeros), a native module run on a packed sequence writes zeros. Between the two kinds,
sequences are therefore compared on their valid steps only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import UnsupportedFeatureError
from .outputs import MERGES, UNREAD, Extract, Meaning, Source, describe, take


@dataclass(frozen=True)
class Correspondence:
    """What a pair with the ``against`` model compares: ``names``, and how each side's arrays
    give them. ``note`` says which correspondence was used, "" when the outputs are the same.
    """

    names: tuple[str, ...]
    source: tuple[Extract, ...]
    against: tuple[Extract, ...]
    note: str
    by_source: bool  # whether ``names`` are the source's outputs (else the against's)
    # Whether sequences are compared on valid steps only (the sides pad differently).
    valid_steps_only: bool = False

    def source_view(
        self, arrays: Sequence[np.ndarray], lengths: np.ndarray | None
    ) -> tuple[np.ndarray, ...]:
        return tuple(extract(arrays, lengths) for extract in self.source)

    def against_view(
        self, arrays: Sequence[np.ndarray], lengths: np.ndarray | None
    ) -> tuple[np.ndarray, ...]:
        return tuple(extract(arrays, lengths) for extract in self.against)


def correspond(source: Source, against: Source) -> Correspondence:
    """Match every output of ``source`` with the ``against`` outputs that mean the same, or
    else every output of ``against`` with the source's; refuse when neither matches all.

    Example:
        >>> from xframe_bilstm.canonical import DirectionWeights, RecurrentLayer, RecurrentStack
        >>> from xframe_bilstm.correspondence import native_source, stack_source
        >>> w = DirectionWeights(np.zeros((3, 8)), np.zeros((2, 8)))
        >>> layer = RecurrentLayer("lstm", 3, 2, (w,))
        >>> keras = stack_source(RecurrentStack((layer,), return_sequences=False), 4, 5, "keras")
        >>> torch = native_source(RecurrentStack((layer,)), 4, 5, "torch")
        >>> print(correspond(keras, torch).note)
        output ↔ output at each row's last valid step (the last step of the forward direction)
    """
    same_outputs = (source.names, source.returned) == (against.names, against.returned)
    if same_outputs and _plain(source) and _plain(against):
        same = tuple(take(index) for index in range(len(source.names)))
        return Correspondence(source.names, same, same, "", True)
    if source.directions != against.directions:
        # One direction of a bidirectional model alone would be a part of it, not the model.
        raise UnsupportedFeatureError(
            f"against: the last recurrent layer of the source ({source.description}) is "
            f"{source.directions}, and against's ({against.description}) is "
            f"{against.directions}; the source returns {source.shown()}, against returns "
            f"{against.shown()}. Compare models whose last layers run the same directions."
        )
    for by_source, (first, second) in ((True, (source, against)), (False, (against, source))):
        read = [(i, meaning) for i, meaning in enumerate(first.returned) if meaning[0] != UNREAD]
        if any(meaning not in second.provides for _, meaning in read):
            continue
        names = tuple(first.names[i] for i, _ in read)
        meanings = [meaning for _, meaning in read]
        # Its own outputs as they mean (a time-major sequence read batch-major).
        mine = [first.provides.get(meaning, (first.names[i], take(i))) for i, meaning in read]
        matched = [second.provides[meaning] for meaning in meanings]
        own = tuple(extract for _, extract in mine)
        other = tuple(extract for _, extract in matched)
        valid_only = first.padding != second.padding
        if valid_only:
            own = _valid_steps(own, meanings)
            other = _valid_steps(other, meanings)
        note = "; ".join(
            [
                f"{word} ↔ {other_word} ({describe(meaning)})"
                for (word, _), meaning, (other_word, _) in zip(mine, meanings, matched)
                if word != other_word
            ]
            + [_left_out(side) for side in (source, against) if _left_out(side)]
        )
        return Correspondence(
            names,
            own if by_source else other,
            other if by_source else own,
            note,
            by_source,
            valid_only,
        )
    raise UnsupportedFeatureError(_refusal(source, against))


def _plain(side: Source) -> bool:
    """Whether each returned array means what it is as it stands (not a time-major sequence)."""
    meant = zip(side.names, side.returned)
    return all(side.provides[m][0] == name for name, m in meant if m in side.provides)


def _left_out(side: Source) -> str:
    """What the report says of outputs left out of pairs, "" when there are none."""
    unread = [how for what, how in side.returned if what == UNREAD]
    if not unread:
        return ""
    return (
        f"{', '.join(unread)} of {side.description} left out (the reading of the graph "
        "cannot tell what they mean)"
    )


def _valid_steps(extracts: tuple[Extract, ...], meanings: Sequence[Meaning]) -> tuple[Extract, ...]:
    """``extracts`` with every sequence's padded steps set to zero (given lengths)."""
    return tuple(
        _zero_padding(extract) if what == "sequence" else extract
        for extract, (what, _) in zip(extracts, meanings)
    )


def _zero_padding(sequence: Extract) -> Extract:
    def extract(arrays: Sequence[np.ndarray], lengths: np.ndarray | None) -> np.ndarray:
        values = sequence(arrays, lengths)
        if lengths is None or values.ndim != 3 or values.shape[0] != len(lengths):
            return values  # a shape the comparison reports as it is
        valid = np.arange(values.shape[1])[None, :] < np.asarray(lengths)[:, None]
        return np.where(valid[..., None], values, 0.0)

    return extract


def _refusal(source: Source, against: Source) -> str:
    missing = [m for m in source.returned if m not in against.provides]
    unmatched = ", ".join(
        f"{name} {shape} ({describe(meaning)})"
        for name, shape, meaning in zip(source.names, source.shapes, source.returned)
        if meaning in missing
    )
    return (
        f"against: the outputs do not correspond. The source ({source.description}) returns "
        f"{source.shown()}; against ({against.description}) returns {against.shown()}; "
        f"nothing that against returns gives {unmatched}, and the source does not give all of "
        f"against's either. To compare them, make both return the same: "
        f"{_advice(missing)}"
    )


def _advice(missing: list[Meaning]) -> str:
    hints = []
    if any(what == "sequence" for what, _ in missing):
        hints.append("return_sequences=True on both, or a source that returns its last step only")
    if any(what == "c" for what, _ in missing):
        hints.append("return_state=False on the Keras model (a cell state c is not an output)")
    if any(how == "go_backwards" for _, how in missing):
        hints.append(
            "a go_backwards layer outputs in reversed time: compare it with a Keras layer of "
            "the same direction, or wrap both directions in Bidirectional"
        )
    if any(how in MERGES for _, how in missing) or not hints:
        hints.append("the same directions and merge_mode on both")
    return "; ".join(hints) + "."


__all__ = ["Correspondence", "correspond"]
