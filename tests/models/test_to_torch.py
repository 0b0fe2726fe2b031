"""A port built from a graph that is its to give away frees the graph's arrays as it
takes them, and computes the same as a port built from a graph it leaves alone."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xframe_bilstm.canonical import DirectionWeights, RecurrentLayer  # noqa: E402
from xframe_bilstm.factories import tagger_graph  # noqa: E402
from xframe_bilstm.graph import ModelGraph  # noqa: E402
from xframe_bilstm.models.to_torch import build_torch, build_torch_taking  # noqa: E402

pytestmark = [pytest.mark.torch]
UNITS, FEATURES, VOCABULARY = 4, 3, 9


def _arrays(seed: int) -> dict[str, np.ndarray]:
    """The weights, read-only as the file readers give them (kept uncopied in the graph)."""
    rng = np.random.default_rng(seed)

    def normal(*shape: int) -> np.ndarray:
        array = rng.standard_normal(shape).astype(np.float32)
        array.setflags(write=False)
        return array

    return {
        "embeddings": normal(VOCABULARY, FEATURES),
        **{
            f"{side}_{name}": normal(*shape)
            for side in ("forward", "backward")
            for name, shape in (
                ("kernel", (FEATURES, 4 * UNITS)),
                ("recurrent_kernel", (UNITS, 4 * UNITS)),
                ("bias", (4 * UNITS,)),
            )
        },
        "dense_kernel": normal(2 * UNITS, 2),
        "dense_bias": normal(2),
    }


def _graph(arrays: dict[str, np.ndarray]) -> ModelGraph:
    """ids -> Embedding(mask_zero) -> Bidirectional(LSTM) -> TimeDistributed(Dense)."""
    directions = tuple(
        DirectionWeights(
            arrays[f"{side}_kernel"], arrays[f"{side}_recurrent_kernel"], arrays[f"{side}_bias"]
        )
        for side in ("forward", "backward")
    )
    lstm = RecurrentLayer(
        "lstm", FEATURES, UNITS, directions, direction="bidirectional", merge_mode="concat"
    )
    return tagger_graph(arrays["embeddings"], lstm, arrays["dense_kernel"], arrays["dense_bias"])


IDS = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 0, 0], [0, 0, 2, 4, 6]])


def test_a_port_taking_its_graph_frees_every_array_and_computes_the_same() -> None:
    arrays = _arrays(0)
    kept = build_torch(_graph(_arrays(0))).eval()
    graph = _graph(arrays)
    read = [weakref.ref(array) for array in arrays.values()]
    del arrays
    gc.collect()
    assert all(ref() is not None for ref in read)  # the graph holds them
    port = build_torch_taking(graph).eval()
    gc.collect()
    alive = [ref() for ref in read if ref() is not None]
    assert not alive, f"{len(alive)} of {len(read)} arrays are still held after the port"
    # What is left of the graph is its structure: shapes and dtypes, no memory.
    kernel = graph.layer("dense").weights["kernel"]
    assert kernel.shape == (2 * UNITS, 2) and kernel.strides == (0, 0)
    assert graph.layer("bidi").recurrent is not None
    assert graph.layer("bidi").recurrent.weights[1].recurrent_kernel.strides == (0, 0)
    with torch.no_grad():
        assert torch.equal(port(IDS), kept(IDS))


def test_a_port_leaves_a_graph_it_does_not_take_alone() -> None:
    arrays = _arrays(1)
    graph = _graph(arrays)
    build_torch(graph)
    held = [
        graph.layer("dense").weights["kernel"],
        graph.layer("embedding").weights["embeddings"],
        graph.layer("bidi").recurrent.weights[1].recurrent_kernel,
    ]
    given = [arrays["dense_kernel"], arrays["embeddings"], arrays["backward_recurrent_kernel"]]
    assert all(map(np.shares_memory, held, given))
