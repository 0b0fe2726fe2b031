"""Model graphs of a torch packed sequence (``lengths_mask``, ``end_mask``) beyond one
recurrent layer under it, shared by the torch port's and the ONNX export's tests: a
BiLSTM over the packed steps returning its states, and a mean over each row's valid steps
(or over every step once the mask has ended)."""

from __future__ import annotations

import numpy as np

from xframe_bilstm.factories import random_layer
from xframe_bilstm.graph import LayerRecord, ModelGraph

X = np.random.default_rng(0).standard_normal((3, 5, 2))
LENGTHS = np.array([5, 2, 3])


def _inputs(lengths_dtype: str) -> tuple[LayerRecord, ...]:
    return (
        LayerRecord("x", "input", "InputLayer", options={"shape": (None, 2), "dtype": "f"}),
        LayerRecord(
            "lengths", "input", "InputLayer", options={"shape": (), "dtype": lengths_dtype}
        ),
    )


def packed_lstm(lengths_dtype: str = "int64") -> ModelGraph:
    """A BiLSTM over the packed steps: its output, and its forward and backward h."""
    lstm = random_layer(np.random.default_rng(1), "lstm", 2, 3, direction="bidirectional")
    flags = {"return_sequences": True, "time_major": False, "unroll": False, "return_state": True}
    records = (
        *_inputs(lengths_dtype),
        LayerRecord("packed", "lengths_mask", "LengthsMask", ("x", "lengths")),
        LayerRecord("lstm", "recurrent", "LSTM", ("packed",), flags, {}, lstm),
    )
    return ModelGraph("packed", records, ("x", "lengths"), ("lstm", "lstm:1", "lstm:3"))


def pooled(*, ended: bool) -> ModelGraph:
    """The mean over each row's valid steps, or over every step after ``end_mask``."""
    records = [
        *_inputs("int64"),
        LayerRecord("packed", "lengths_mask", "LengthsMask", ("x", "lengths")),
    ]
    if ended:
        records.append(LayerRecord("padded", "end_mask", "EndMask", ("packed",)))
    options = {"op": "average", "keepdims": False}
    pool = LayerRecord(
        "pool", "global_pool", "GlobalAveragePooling1D", (records[-1].name,), options
    )
    return ModelGraph("pooled", (*records, pool), ("x", "lengths"), ("pool",))


__all__ = ["LENGTHS", "X", "packed_lstm", "pooled"]
