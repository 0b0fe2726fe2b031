"""Model graphs holding ``broadcast`` records (a held tensor repeated over the batch) that
read token ids: only the ids' batch size is read, never their values or dtype."""

from __future__ import annotations

import numpy as np

from xframe_bilstm.factories import random_layer
from xframe_bilstm.graph import LayerRecord, ModelGraph

IDS = np.array([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3], [5, 8, 9, 7, 9]])


def _broadcast(name: str, value: np.ndarray) -> LayerRecord:
    options = {"shape": value.shape}
    return LayerRecord(name, "broadcast", "BatchBroadcast", ("ids",), options, {"value": value})


def ids_graph() -> ModelGraph:
    """Token ids → Embedding → GRU from a learned state; beside it a learned (2, 3) token and
    a learned scalar, each repeated over the ids' batch, as outputs of their own."""
    rng = np.random.default_rng(4)
    embeddings = rng.standard_normal((10, 3))
    gru = random_layer(rng, "gru", 3, 4)
    flags = {"return_sequences": False, "time_major": False, "unroll": False}
    records = (
        LayerRecord("ids", "input", "InputLayer", options={"shape": (None,), "dtype": "int32"}),
        LayerRecord(
            "emb",
            "embedding",
            "Embedding",
            ("ids",),
            {"mask_zero": False},
            {"embeddings": embeddings},
        ),
        _broadcast("h0", rng.standard_normal(4)),
        _broadcast("cls", rng.standard_normal((2, 3))),
        _broadcast("scale", np.asarray(rng.standard_normal())),
        LayerRecord("gru", "recurrent", "GRU", ("emb", "h0"), flags, {}, gru),
    )
    return ModelGraph("learned_ids", records, ("ids",), ("gru", "cls", "scale"))


__all__ = ["IDS", "ids_graph"]
