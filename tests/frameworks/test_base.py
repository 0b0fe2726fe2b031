"""What a framework of recurrent layers only accepts: decided from the graph, so a stack and
its graph are alike, and a whole model is refused by the kinds of its other layers."""

from __future__ import annotations

import numpy as np

from xframe_bilstm.factories import random_stack
from xframe_bilstm.frameworks.base import GRAPH_GRADIENTS, Framework
from xframe_bilstm.graph import LayerRecord, ModelGraph
from xframe_bilstm.stack_graph import stack_graph


class _LayersOnly(Framework):
    name = "layers-only"
    module = "numpy"
    differentiates = True


def _tagger() -> ModelGraph:
    rng = np.random.default_rng(0)
    stack = random_stack(rng, "lstm", 3, 2)
    options = {"shape": (None,), "dtype": "int32"}
    embedding = {"input_dim": 5, "mask_zero": True}
    return ModelGraph(
        "tagger",
        (
            LayerRecord("ids", "input", "InputLayer", options=options),
            LayerRecord(
                "embed",
                "embedding",
                "Embedding",
                ("ids",),
                embedding,
                {"embeddings": rng.standard_normal((5, 3))},
            ),
            LayerRecord(
                "lstm",
                "recurrent",
                "LSTM",
                ("embed",),
                {
                    "return_sequences": True,
                    "return_state": False,
                    "time_major": False,
                    "unroll": False,
                },
                {},
                stack.layers[0],
            ),
        ),
        inputs=("ids",),
        outputs=("lstm",),
    )


def test_a_stack_and_its_graph_are_run_and_differentiated_alike() -> None:
    stack = random_stack(np.random.default_rng(1), "gru", 3, 2, num_layers=2)
    framework = _LayersOnly()
    for reading in (stack, stack_graph(stack)):
        assert framework.supports(reading) is None
        assert framework.gradient_refusal(reading) is None


def test_a_whole_model_is_refused_by_its_other_layers() -> None:
    framework = _LayersOnly()
    assert framework.supports(_tagger()) == "layers-only runs recurrent layers only, not Embedding"
    assert framework.gradient_refusal(_tagger()) == GRAPH_GRADIENTS
