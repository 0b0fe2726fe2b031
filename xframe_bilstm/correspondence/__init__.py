"""Which output of one model means which output of another, for ``compare(source, against=)``.

Two models that compute the same thing may return it differently: a Keras LSTM with
``return_sequences=False`` returns its last step, a torch ``nn.LSTM`` returns the whole
sequence and ``(h_n, c_n)``, an ONNX graph exported by torch a time-major sequence.
:mod:`.outputs` says what each output means and what else it gives; :mod:`.matching`
matches two models' outputs by meaning, or refuses naming them.
"""

from __future__ import annotations

from .matching import Correspondence, correspond
from .outputs import (
    Source,
    graph_source,
    native_source,
    onnx_source,
    output_names_of,
    stack_source,
)

__all__ = [
    "Correspondence",
    "Source",
    "correspond",
    "graph_source",
    "native_source",
    "onnx_source",
    "output_names_of",
    "stack_source",
]
