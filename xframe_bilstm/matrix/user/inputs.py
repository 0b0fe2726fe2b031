"""The arrays of a cell's input specs: seeded, in the declared dtype, right-padded.

Token ids are drawn uniformly from ``[low, high)``, float features from a normal of
standard deviation ``scale``; with ``lengths``, every step after a row's length holds
``pad`` (all of its features, for floats), which is how a model that masks by value
(``Embedding(mask_zero=True)``, ``Masking``) learns the padding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .specs import InputSpec


def input_arrays(specs: Sequence[InputSpec], seed: int) -> list[np.ndarray]:
    """One array per spec, drawn in order from one generator seeded with ``seed``.

    Example:
        >>> spec = InputSpec("ids", batch=2, steps=4, dtype="int32", low=1, high=9,
        ...                  lengths=(4, 2))
        >>> (ids,) = input_arrays([spec], seed=0)
        >>> ids.dtype.name, bool((ids[1, 2:] == 0).all()), bool((ids[0] > 0).all())
        ('int32', True, True)
    """
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in specs:
        array: np.ndarray
        if spec.dtype.startswith("int"):
            assert spec.low is not None and spec.high is not None  # checked by the config
            array = rng.integers(spec.low, spec.high, size=(spec.batch, spec.steps))
        else:
            assert spec.features is not None
            array = rng.standard_normal((spec.batch, spec.steps, spec.features)) * spec.scale
        lengths = spec.row_lengths()
        if lengths is not None:
            padded = np.arange(spec.steps)[None, :] >= np.asarray(lengths)[:, None]
            array[padded] = spec.pad
        arrays.append(array.astype(spec.dtype))
    return arrays


__all__ = ["input_arrays"]
