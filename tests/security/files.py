"""Small Keras model files written by hand (zipfile, h5py, json), to be damaged in tests.

A valid file first, so each test changes one thing and the refusal is about that thing.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

INPUT, UNITS = 3, 2


def lstm_config(**lstm: Any) -> dict[str, Any]:
    """A Sequential model: an input of 3 features, then one LSTM of 2 units."""
    return {
        "class_name": "Sequential",
        "config": {
            "name": "sequential",
            "layers": [
                {
                    "class_name": "InputLayer",
                    "config": {"name": "x", "batch_shape": [None, None, INPUT], "dtype": "float32"},
                },
                {"class_name": "LSTM", "config": {"name": "lstm", "units": UNITS, **lstm}},
            ],
        },
    }


def lstm_weights(dtype: str = "float32") -> dict[str, np.ndarray]:
    """The LSTM's variables as a .keras file stores them (kernel, recurrent kernel, bias)."""
    rng = np.random.default_rng(0)
    shapes = [(INPUT, 4 * UNITS), (UNITS, 4 * UNITS), (4 * UNITS,)]
    return {
        f"layers/lstm/cell/vars/{index}": (rng.standard_normal(shape) * 0.5).astype(dtype)
        for index, shape in enumerate(shapes)
    }


def h5_bytes(datasets: dict[str, Any], *, huge: dict[str, tuple[int, ...]] | None = None) -> bytes:
    """An HDF5 file of ``datasets``; ``huge`` ones are declared but never written."""
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        for name, array in datasets.items():
            handle.create_dataset(name, data=array)
        for name, shape in (huge or {}).items():
            handle.create_dataset(name, shape=shape, dtype="float32", chunks=(1,) * len(shape))
    return buffer.getvalue()


def write_keras(
    path: Path,
    config: Any = None,
    weights: bytes | None = None,
    *,
    extra: dict[str, bytes] | None = None,
    compression: int = zipfile.ZIP_STORED,
) -> Path:
    """A .keras archive: config.json, metadata.json, model.weights.h5 (and ``extra``)."""
    config = lstm_config() if config is None else config
    weights = h5_bytes(lstm_weights()) if weights is None else weights
    with zipfile.ZipFile(path, "w", compression) as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.writestr("config.json", config if isinstance(config, str) else json.dumps(config))
        archive.writestr("model.weights.h5", weights)
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return path


def write_h5(path: Path, config: Any = None, layer: dict[str, Any] | None = None) -> Path:
    """A whole-model .h5 file as Keras 2 writes it, with the LSTM's weights."""
    import h5py

    config = lstm_config() if config is None else config
    arrays = dict(zip(("kernel:0", "recurrent_kernel:0", "bias:0"), lstm_weights().values()))
    arrays.update(layer or {})
    with h5py.File(path, "w") as handle:
        handle.attrs["keras_version"] = "2.15.0"
        handle.attrs["model_config"] = json.dumps(config)
        group = handle.create_group("model_weights/lstm")
        names = []
        for name, array in arrays.items():
            if isinstance(array, tuple):  # a shape: declared, never written
                group.create_dataset(
                    f"lstm/{name}", shape=array, dtype="float32", chunks=(1,) * len(array)
                )
            elif array is not None:
                group.create_dataset(f"lstm/{name}", data=array)
            names.append(f"lstm/{name}".encode())
        group.attrs["weight_names"] = names
    return path
