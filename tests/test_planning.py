"""The planner decides from the graph: a stack drawn as a graph plans as the stack itself,
and a whole model's dtypes are refused by one rule that the matrix's cells share."""

from __future__ import annotations

import numpy as np
import pytest

from xframe_bilstm.factories import random_stack
from xframe_bilstm.graph import LayerRecord, ModelGraph
from xframe_bilstm.planning import GRAPH_DTYPES, dtype_refusal, outputs_of
from xframe_bilstm.stack_graph import stack_graph


def _stack() -> object:
    rng = np.random.default_rng(0)
    return random_stack(
        rng, "lstm", 3, 2, num_layers=2, return_state=True, direction="bidirectional"
    )


def _dense_model() -> ModelGraph:
    x = LayerRecord("x", "input", "InputLayer", options={"shape": (None, 3), "dtype": "f"})
    options = {"activation": "linear", "time_distributed": True}
    dense = LayerRecord("d", "dense", "Dense", ("x",), options, {"kernel": np.zeros((3, 2))})
    return ModelGraph("m", (x, dense), ("x",), ("d",), source="model m")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_a_stack_runs_in_every_float_dtype_also_as_its_graph(dtype: str) -> None:
    stack = _stack()
    assert dtype_refusal(stack, [dtype]) == dtype_refusal(stack_graph(stack), [dtype]) == ""


def test_a_whole_model_runs_in_its_ports_dtypes_only() -> None:
    model = _dense_model()
    assert dtype_refusal(model, list(GRAPH_DTYPES)) == ""
    for dtypes in (["float16"], ["float32", "bfloat16"], []):
        assert dtype_refusal(model, dtypes) == "a whole model runs in float32 and float64"


def test_a_stack_and_its_graph_return_the_same_outputs_by_meaning() -> None:
    stack = _stack()
    for native in (False, True):
        mine = outputs_of(stack, 4, 5, "s", native=native)
        drawn = outputs_of(stack_graph(stack), 4, 5, "s", native=native)
        assert (drawn.names, drawn.shapes, drawn.directions, drawn.returned) == (
            mine.names,
            mine.shapes,
            mine.directions,
            mine.returned,
        )
    assert outputs_of(stack, 4, 5, "s").names == (
        "output",
        "h_forward",
        "c_forward",
        "h_backward",
        "c_backward",
    )


def test_a_whole_model_returns_its_outputs_by_name() -> None:
    assert outputs_of(_dense_model(), 4, 5, "m").names == ("output 'd'",)
