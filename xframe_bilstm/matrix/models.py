"""The model and the mask of a cell: seeded random weights that cannot hide a gate bug.

Every gate block gets its own scale and every bias is non-zero, so swapping two gates,
transposing a kernel or dropping a bias changes the outputs. Weights are float32 values, as
trained models have; each run casts them to its dtype. Biases take the layout Keras uses:
one per LSTM and SimpleRNN direction, two rows for a GRU (``reset_after=True``).
"""

from __future__ import annotations

import numpy as np

from ..canonical import DirectionWeights, RecurrentLayer, RecurrentStack
from ..gates import CANONICAL_ORDER
from .cells import Cell


def cell_stack(cell: Cell) -> RecurrentStack:
    """The canonical stack of ``cell``, with weights drawn from its seed.

    Example:
        >>> from xframe_bilstm.matrix.table import load_table
        >>> from xframe_bilstm.matrix.cells import lane_cells
        >>> cells, _ = lane_cells(load_table(), "default", available=set())
        >>> stack = cell_stack(cells[0])
        >>> stack.layers[0].cell, stack.layers[0].weights[0].kernel.dtype
        ('lstm', dtype('float32'))
    """
    rng = np.random.default_rng(cell.seed)
    layers = []
    size = cell.input_size
    for index in range(cell.layers):
        last = index == cell.layers - 1
        merge = cell.merge_mode if last else "concat"
        count = 2 if cell.direction == "bidirectional" else 1
        layer = RecurrentLayer(
            cell.cell,
            size,
            cell.units,
            tuple(_direction(rng, cell, size) for _ in range(count)),
            direction=cell.direction,
            merge_mode=None if merge == "none" else (merge or "concat"),
            recurrent_activation=None if cell.cell == "simple_rnn" else "sigmoid",
            reset_after=True if cell.cell == "gru" else None,
        )
        layers.append(layer)
        size = layer.output_size
    return RecurrentStack(tuple(layers), cell.return_sequences, cell.return_state)


def _direction(rng: np.random.Generator, cell: Cell, input_size: int) -> DirectionWeights:
    gates = len(CANONICAL_ORDER[cell.cell])
    width = gates * cell.units
    scales = np.repeat(0.4 + 0.3 * np.arange(gates), cell.units) * cell.weight_scale
    kernel = rng.standard_normal((input_size, width)) * scales / np.sqrt(input_size)
    recurrent = rng.standard_normal((cell.units, width)) * scales / np.sqrt(cell.units)
    shape = (2, width) if cell.cell == "gru" else (width,)
    bias = rng.uniform(0.1, 0.5, shape) * rng.choice([-1.0, 1.0], shape)
    return DirectionWeights(
        kernel.astype(np.float32), recurrent.astype(np.float32), bias.astype(np.float32)
    )


def cell_lengths(cell: Cell) -> list[int] | None:
    """Valid steps per row for a masked cell: half, full, one step, all but one, repeating.

    Example:
        >>> from dataclasses import replace
        >>> from xframe_bilstm.matrix.table import load_table
        >>> from xframe_bilstm.matrix.cells import lane_cells
        >>> cells, _ = lane_cells(load_table(), "default", available=set())
        >>> masked = next(c for c in cells if c.mask == "right-padded")
        >>> cell_lengths(replace(masked, steps=7, batch=5))
        [4, 7, 1, 6, 4]
    """
    if cell.mask == "none":
        return None
    steps = cell.steps
    pattern = [(steps + 1) // 2, steps, 1, max(steps - 1, 1)]
    return [pattern[row % len(pattern)] for row in range(cell.batch)]
