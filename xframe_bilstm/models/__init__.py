"""Whole Keras models: a framework-free description, its numpy reference, and torch ports.

- :mod:`~xframe_bilstm.graph` (outside this package, since every reader builds it): the
  description (layer records wired into a graph).
- :mod:`~xframe_bilstm.models.live`: live Keras models into that description.
- :mod:`~xframe_bilstm.models.to_torch`, :mod:`~xframe_bilstm.models.torch_layers` and
  :mod:`~xframe_bilstm.models.recurrent`: the PyTorch module (they import torch; the others
  do not).
- :mod:`~xframe_bilstm.models.port`: port a file or model, verified against the reference.
"""

from __future__ import annotations

from ..graph import LayerRecord, ModelGraph

__all__ = ["LayerRecord", "ModelGraph"]
