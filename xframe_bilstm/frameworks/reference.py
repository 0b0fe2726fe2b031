"""The float64 numpy reference as a framework, so it appears in reports like the others."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..gradient_arrays import GradientArrays, reference_arrays
from ..reference import Reading, reference_outputs
from ..stack_graph import as_graph
from .base import Framework, RunSpec


class ReferenceFramework(Framework):
    name = "reference"
    differentiates = True
    differentiates_graphs = True
    module = "numpy"

    def dtypes(self, device: str) -> list[str]:
        return ["float64"]

    def versions(self) -> dict[str, str]:
        return {"numpy": np.__version__}

    def supports(self, reading: Reading) -> str | None:
        from ..custom import custom_refusal

        customs = [record for record in as_graph(reading).layers if record.kind == "custom"]
        if customs:  # a user's class is the user's code
            return "; ".join(custom_refusal(record, "the float64 reference") for record in customs)
        return None  # stacks and graphs alike

    def run(
        self,
        stack: Reading,
        x: Any,
        spec: RunSpec,
        *,
        initial_states: Sequence[np.ndarray] | None,
        lengths: np.ndarray | None,
    ) -> tuple[tuple[np.ndarray, ...], dict[str, object]]:
        outputs = reference_outputs(
            stack, x, initial_states=initial_states, lengths=lengths, dtype=np.dtype(spec.dtype)
        )
        return outputs, {"implementation": "numpy loop, input projection in one product"}

    def gradients(
        self,
        stack: Reading,
        x: Any,
        spec: RunSpec,
        cotangents: Sequence[np.ndarray],
        *,
        initial_states: Sequence[np.ndarray] | None,
        lengths: np.ndarray | None,
    ) -> GradientArrays:
        """Backpropagation through time in numpy, through the reading's graph
        (:func:`~xframe_bilstm.reference.graph_backward.graph_gradients`)."""
        return reference_arrays(
            stack,
            x,
            cotangents,
            dtype=np.dtype(spec.dtype).type,
            initial_states=initial_states,
            lengths=lengths,
        )
