"""Where a masked batch's valid steps are: per-row reversal, and compaction to the front.

A Keras mask may mark any steps of a row (right or left padding, holes, nothing). Moving
each row's valid steps to its front in order (a stable compaction) turns any mask into
right padding of ``lengths`` steps, which every run below takes.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


def valid_steps(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T) booleans: True where step ``t`` is before row ``b``'s length."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


def gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, index[b, t]]`` for (B, T, F) ``x`` and (B, T) ``index``, clamped into range."""
    index = index.clamp(0, x.shape[1] - 1)
    return x.gather(1, index[:, :, None].expand(-1, -1, x.shape[2]))


def reverse_time(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Reverse each row's valid steps in time, leaving its padding where it is."""
    if lengths is None:
        return x.flip(1)
    steps = torch.arange(x.shape[1], device=x.device)[None, :]
    last = lengths[:, None] - 1
    return gather_time(x, torch.where(steps <= last, last - steps, steps))


def compact(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(destination, counts, lengths) that move each row's valid steps to its front.

    ``counts[b, t]`` is the number of valid steps up to and including ``t``; valid step
    ``t`` goes to ``counts - 1``, masked steps after all valid ones, in order.

    Example:
        >>> dest, counts, lengths = compact(torch.tensor([[False, True, False, True]]))
        >>> dest.tolist(), lengths.tolist()
        ([[2, 0, 3, 1]], [2])
    """
    counts = mask.long().cumsum(1)
    lengths = counts[:, -1]
    steps = torch.arange(mask.shape[1], device=mask.device)[None, :]
    destination = torch.where(mask, counts - 1, lengths[:, None] + steps - counts)
    return destination, counts, lengths


class Steps(NamedTuple):
    """A mask and its compaction: ``valid`` (B, T), ``counts`` (B, T), ``lengths`` (B,).

    ``destination`` moves each step to its place in the compacted batch (see
    :func:`compact`); None where the valid steps are already in front (right padding).
    """

    valid: torch.Tensor
    counts: torch.Tensor
    lengths: torch.Tensor
    destination: torch.Tensor | None

    @classmethod
    def of_mask(cls, mask: torch.Tensor) -> Steps:
        """The steps of a Keras mask (B, T) of any pattern."""
        mask = mask.bool()
        destination, counts, lengths = compact(mask)
        return cls(mask, counts, lengths, destination)

    @classmethod
    def of_lengths(cls, lengths: torch.Tensor, steps: int) -> Steps:
        """The steps of right-padded rows of ``lengths`` valid steps."""
        step = torch.arange(1, steps + 1, device=lengths.device)[None, :]
        counts = torch.minimum(step, lengths[:, None])
        return cls(valid_steps(lengths, steps), counts, lengths, None)

    def compacted(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, T, F) with each row's valid steps moved to its front, in order."""
        if self.destination is None:
            return x
        index = self.destination[:, :, None].expand_as(x)
        return torch.zeros_like(x).scatter(1, index, x)
