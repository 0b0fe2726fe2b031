"""What a comparison of a model with custom layers leaves out, in the report's words.

The float64 reference and the ONNX export cannot run a user's class
(:mod:`xframe_bilstm.custom`); ``compare()`` leaves them out and its report says why.
"""

from __future__ import annotations

from typing import Any

from .custom import custom_layers_of


def custom_note(reading: Any) -> str | None:
    """What a comparison of a model with custom layers leaves out, and why; None without.

    Example:
        >>> custom_note(object()) is None
        True
    """
    if not custom_layers_of(reading):
        return None
    from .frameworks import FRAMEWORKS

    reasons = []
    for name in ("reference", "onnxruntime"):
        reason = FRAMEWORKS[name]().supports(reading)
        if reason:
            reasons.append(f"{name} left out: {reason}")
    return "; ".join(reasons)


__all__ = ["custom_note"]
