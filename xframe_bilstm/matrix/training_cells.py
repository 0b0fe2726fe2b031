"""Optimizer-parity cells: k optimizer steps of one Keras layer in Keras and in PyTorch.

A training block of the table (``[[lanes.NAME.training]]``) names cells, directions and
optimizers; each combination is one :class:`TrainingCell`, run by
:func:`~xframe_bilstm.training.optimizer_parity` from seeded weights and batches with the
conventions mapped. Its measured errors, recorded and ratcheted like a forward cell's runs,
are the largest over the steps and weights of

- ``divergence[keras vs torch]``: how far the two frameworks' weights diverged, and
- ``rule error[keras]`` / ``rule error[torch]``: how far each left a float64 run of the
  update rule it was given.

The floor under each is a tenth of the largest tolerance (ten times the float32 drift of
the rule), as a forward run's floor is the float32 reference's own drift.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..comparison import NOISE_FACTOR
from ..errors import UnsupportedFeatureError
from .protocol import Request
from .table import OPTIMIZERS, Lane

if TYPE_CHECKING:
    from ..training import TrainingReport
    from .ratchet import Baseline
    from .results import CellResult

# The layer each cell trains: small, so a cell takes seconds.
UNITS = 6
INPUT_SIZE = 5
_DIRECTION_ID = {"forward": "fwd", "backward": "bwd", "bidirectional": "bi"}
_KERAS_CLASSES = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "SimpleRNN"}


@dataclass(frozen=True)
class TrainingCell:
    """One optimizer-parity configuration: a Keras layer, an optimizer and a step count."""

    lane: str
    block: str
    cell: str
    direction: str
    optimizer: str
    steps: int
    frameworks: tuple[str, ...] = ("keras", "torch")
    devices: tuple[str, ...] = ("cpu",)
    excluded: tuple[tuple[str, str], ...] = ()
    dtype: str = "float32"
    tf32: bool = False
    paths: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        """e.g. ``train-lstm-bi-adam-k3``; never the id of a forward cell."""
        return f"train-{self.cell}-{_DIRECTION_ID[self.direction]}-{self.optimizer}-k{self.steps}"

    @property
    def seed(self) -> int:
        return zlib.crc32(self.id.encode())

    @property
    def structure(self) -> tuple[Any, ...]:
        # One group: the first cell of a process pays for the optimizers' first steps.
        return ("training",)

    @property
    def cost(self) -> float:
        return 2.0 + 0.5 * self.steps  # porting, then per step two optimizers and the rules

    def config(self) -> dict[str, Any]:
        optimizer, hyperparameters = OPTIMIZERS[self.optimizer]
        return {
            "block": self.block,
            "kind": "optimizer-parity",
            "cell": self.cell,
            "direction": self.direction,
            "optimizer": optimizer,
            "hyperparameters": hyperparameters,
            "steps": self.steps,
            "units": UNITS,
            "input_size": INPUT_SIZE,
            "seed": self.seed,
        }

    def request(self) -> Request:
        raise UnsupportedFeatureError(
            f"{self.id} is an optimizer-parity cell: it runs optimizer_parity(), not compare()"
        )

    def keras_layer(self) -> Any:
        """The seeded, built Keras layer the cell trains."""
        import keras

        def layer(offset: int, go_backwards: bool = False) -> Any:
            seed = (self.seed + offset) % 2**31
            return getattr(keras.layers, _KERAS_CLASSES[self.cell])(
                UNITS,
                return_sequences=True,
                go_backwards=go_backwards,
                kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
                recurrent_initializer=keras.initializers.Orthogonal(seed=seed + 1),
                # A random bias, so that the bias conventions (one Keras bias, PyTorch's two)
                # take part in the steps.
                bias_initializer=keras.initializers.RandomUniform(-0.5, 0.5, seed=seed + 2),
            )

        if self.direction == "bidirectional":
            built = keras.layers.Bidirectional(layer(0), backward_layer=layer(10, True))
        else:
            built = layer(0, self.direction == "backward")
        built.build((None, None, INPUT_SIZE))
        return built

    def train(self) -> TrainingReport:
        from ..training import optimizer_parity

        optimizer, hyperparameters = OPTIMIZERS[self.optimizer]
        return optimizer_parity(
            self.keras_layer(),
            optimizer=optimizer,
            steps=self.steps,
            seed=self.seed,
            **hyperparameters,
        )


def training_cells(lane: Lane) -> list[TrainingCell]:
    """The lane's optimizer-parity cells, in table order.

    Example:
        >>> from xframe_bilstm.matrix.table import load_table
        >>> [cell.id for cell in training_cells(load_table().lane("default"))][:2]
        ['train-lstm-bi-sgd-momentum-k3', 'train-lstm-bi-adam-k3']
    """
    return [
        TrainingCell(lane.name, block.name, cell, direction, optimizer, block.steps)
        for block in lane.training
        for cell in block.cells
        for direction in block.directions
        for optimizer in block.optimizers
    ]


def measured(report: TrainingReport) -> tuple[dict[str, float], dict[str, float]]:
    """The cell's errors and their floors, by what was compared."""
    rows = report.rows
    floor = max(row.tolerance for row in rows) / NOISE_FACTOR
    errors = {
        "divergence[keras vs torch]": max(row.divergence for row in rows),
        "rule error[keras]": max(row.keras_error for row in rows),
        "rule error[torch]": max(row.torch_error for row in rows),
    }
    return errors, dict.fromkeys(errors, floor)


def run_training_cell(cell: TrainingCell, baseline: Baseline) -> CellResult:
    """Run one optimizer-parity cell and judge it: tolerance first, then the ratchet."""
    from .results import CellResult

    start = time.perf_counter()
    try:
        report = cell.train()
    except Exception as error:  # one cell's failure must not stop the lane
        message = f"{type(error).__name__}: {error}".splitlines()[0]
        return CellResult(
            cell, [f"FAILED | {cell.id} | {message}"], seconds=time.perf_counter() - start
        )
    seconds = time.perf_counter() - start
    errors, floors = measured(report)
    failed = [
        f"FAILED | {cell.id} | {row.name} after step {row.step}: Keras and PyTorch differ by "
        f"{row.divergence:.3g} (allowed {2 * row.tolerance:.3g}); from the float64 rules "
        f"they were given: Keras {row.keras_error:.3g}, PyTorch {row.torch_error:.3g} "
        f"(allowed {row.tolerance:.3g})"
        for row in report.rows
        if not row.passed
    ]
    tolerance = max(row.tolerance for row in report.rows)
    return CellResult(
        cell=cell,
        errors=failed,
        drifts=baseline.check(cell.id, {k: (e, floors[k]) for k, e in errors.items()})
        if not failed
        else [],
        max_errors=errors,
        floors=floors,
        pairs=[
            {
                "label": label,
                "passed": not failed,
                "max_abs_error": error,
                "tolerance": tolerance,
                "message": None if not failed else failed[0],
            }
            for label, error in errors.items()
        ],
        runs=[
            {
                "label": f"optimizer_parity[{cell.optimizer}, {cell.steps} steps]",
                "framework": "keras+torch",
                "device": "cpu",
                "dtype": "float32",
                "path": "default",
                "kernel": f"{report.keras_optimizer} | {report.torch_optimizer}",
                "seconds": seconds,
                "error": None,
            }
        ],
        baseline=baseline.cells.get(cell.id),
        seconds=seconds,
    )
