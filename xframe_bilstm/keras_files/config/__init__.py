"""Keras model configurations (Keras 2 and 3, Sequential and functional) into layer records.

Rules of this package:

- Two steps: :func:`parse_layers` reads the configuration alone into :class:`LayerSpec`
  objects (class, options, wiring) and refuses every unsupported layer, naming each with
  its class, before any weight is read; :func:`build_graph` then reads each layer's
  weights through a callback, checks their shapes against the configuration, and makes
  the :class:`~xframe_bilstm.graph.ModelGraph`.
- Recurrent layers become canonical :class:`~xframe_bilstm.canonical.RecurrentLayer`
  objects (:mod:`.recurrent`); Keras 2 names and layouts are read as Keras 2 meant them
  (:mod:`~xframe_bilstm.keras_files.legacy`).
- Keras 3 functional configurations record how masks were computed as extra operation
  nodes (``NotEqual``, ``Any``...) passed as ``mask=`` arguments. Masks are recomputed
  from the layers here, as Keras does when it builds the model, so nodes that the outputs
  are not computed from are dropped; an operation that computes a model tensor is
  refused like any other unsupported layer.
- Options that change inference and that the port cannot reproduce raise
  :class:`~xframe_bilstm.errors.UnsupportedFeatureError` naming the layer and the option.
"""

from __future__ import annotations

from .parse import parse_layers
from .records import build_graph
from .specs import SUPPORTED_CLASSES, LayerSpec, ModelSpec

__all__ = ["SUPPORTED_CLASSES", "LayerSpec", "ModelSpec", "build_graph", "parse_layers"]
