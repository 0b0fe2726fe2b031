"""Legacy ``.h5`` model files (``model.save("m.h5")``) of Keras 2, tf_keras and Keras 3.

Rules of this module:

- h5py only, imported inside the functions; no framework, no pickle, nothing executed.
- The file must hold a whole model: its ``model_config`` attribute (JSON) and its
  ``model_weights`` group; a weights-only file has no architecture to port.
- A layer's weights are the ``weight_names`` attribute of its group, in that order (the
  order the layer created them: forward half before backward half, kernel before
  recurrent kernel before bias). HDF5 lists keys alphabetically, which would put
  ``backward_*`` first, so keys are never iterated.
- Shapes are checked against the configuration before any dataset is read
  (:class:`~xframe_bilstm.keras_files.weights.WeightRef`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UnsupportedFeatureError, WeightShapeError
from ..graph import ModelGraph
from .config import LayerSpec, ModelSpec, build_graph, parse_layers
from .legacy import keras_major
from .mapped import MappedFile
from .weights import WeightRef, dataset_ref

# Configurations are small; anything bigger is not a model configuration.
MAX_CONFIG_BYTES = 64 * 1024 * 1024


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def read_h5_spec(path: str | Path, *, strict: bool = True) -> tuple[ModelSpec, dict[str, Any]]:
    """The parsed configuration of an ``.h5`` model file and its root attributes."""
    import h5py

    source = str(path)
    with h5py.File(path, "r") as handle:
        attributes = {key: handle.attrs.get(key) for key in ("keras_version", "backend")}
        if "model_config" in handle.attrs:
            # Sized before it is read: an attribute can declare any size.
            size = h5py.h5a.open(handle.id, b"model_config").get_storage_size()
            if size > MAX_CONFIG_BYTES:
                raise UnsupportedFeatureError(
                    f"{source}: model_config is {size} bytes; at most {MAX_CONFIG_BYTES} are read"
                )
        raw = handle.attrs.get("model_config")
        if raw is None:
            weights_only = "layer_names" in handle.attrs
            raise UnsupportedFeatureError(
                f"{source}: no model_config attribute; "
                + (
                    "a weights-only file (save_weights) has no architecture to port; save "
                    "the whole model (model.save)"
                    if weights_only
                    else "not a Keras model file"
                )
            )
        text = _text(raw)
    if len(text) > MAX_CONFIG_BYTES:
        raise UnsupportedFeatureError(f"{source}: model_config is {len(text)} bytes; too large")
    major = keras_major(attributes.get("keras_version"))
    spec = parse_layers(json.loads(text), major=major, source=source, strict=strict)
    return spec, attributes


def read_h5(path: str | Path, *, map_weights: bool = False) -> ModelGraph:
    """Read a whole-model ``.h5`` file into a :class:`~xframe_bilstm.graph.ModelGraph`.

    ``map_weights``: see :func:`~xframe_bilstm.keras_files.read_model`.

    Raises:
        UnsupportedFeatureError: no model configuration, or a layer that cannot be ported.
        WeightShapeError: a weight missing or of a shape the configuration does not imply.

    Example:
        >>> graph = read_h5("classifier.h5")  # doctest: +SKIP
        >>> [record.kind for record in graph.layers]  # doctest: +SKIP
        ['input', 'embedding', 'recurrent', 'dense']
    """
    import h5py

    spec, _ = read_h5_spec(path)
    source = str(path)
    with h5py.File(path, "r") as handle:
        if "model_weights" not in handle:
            raise WeightShapeError(f"{source}: no model_weights group")
        root = handle["model_weights"]
        mapped = MappedFile.of_path(path) if map_weights else None

        nested = [layer.path for layer in spec.layers if layer.path and not layer.shares]

        def read_weights(layer: LayerSpec) -> list[WeightRef]:
            return _layer_weights(root, layer, source, mapped, nested)

        return build_graph(spec, read_weights)


def _layer_weights(
    root: Any,
    layer: LayerSpec,
    source: str,
    mapped: MappedFile | None,
    nested: list[tuple[str, ...]],
) -> list[WeightRef]:
    """The weights of ``layer``; a nested model's layer's among its group's (``nested``:
    the paths of every nested model's layers, see :func:`_holder`)."""
    import h5py

    path = layer.path or (layer.name,)
    if path[0] not in root:
        if layer.kind not in ("embedding", "recurrent", "dense"):
            return []  # layers without weights may have no group at all
        raise WeightShapeError(f"{source}: no weights group for layer {layer.name!r}")
    group = root[path[0]]
    names = [_text(name) for name in np.asarray(group.attrs.get("weight_names", [])).ravel()]
    if len(path) > 1:  # a nested model's group holds its layers' weights
        among = [other for other in nested if other[0] == path[0]]
        names = [name for name in names if _holder(name, among) == path]
    refs = []
    for name in names:
        dataset = group.get(name)
        if not isinstance(dataset, h5py.Dataset):
            raise WeightShapeError(
                f"{source}: layer {layer.name!r} lists weight {name!r}, which is not a "
                "dataset in the file"
            )
        refs.append(dataset_ref(name, dataset.id, source, mapped))
    return refs


def _holder(weight: str, paths: list[tuple[str, ...]]) -> tuple[str, ...] | None:
    """The path among ``paths`` of the layer holding ``weight``, named in a nested model's
    group by where its variable was made: the names of the models it was built in (any of
    them, Keras 3's ``encoder/lstm/lstm_cell/kernel``; none, tf_keras's
    ``lstm/lstm_cell/kernel:0``), then the layer's. The path whose models the name
    spells most of wins; on a tie, the shallower one (a nested model's own layer is
    built in its caller's scope).

    Example:
        >>> paths = [("m", "dense"), ("m", "inner", "dense")]
        >>> _holder("dense/kernel", paths), _holder("inner/dense/kernel:0", paths)
        (('m', 'dense'), ('m', 'inner', 'dense'))
    """
    parts = weight.split("/")
    found: list[tuple[int, int, tuple[str, ...]]] = []
    for path in paths:
        rest, spelled = parts, 0
        for model in path[:-1]:
            if rest[:1] == [model]:
                rest, spelled = rest[1:], spelled + 1
        if rest[:1] == [path[-1]]:
            found.append((-spelled, len(path), path))
    return min(found)[2] if found else None


__all__ = ["read_h5", "read_h5_spec"]
