"""The frameworks a comparison leaves out of its runs, each with the reason it gives.

Under ``frameworks="auto"``, an installed framework that cannot run the reading (an
activation ONNX has no recurrent node for, a user's class the reference cannot run...) is
left out rather than failed; the report names it and why, so nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def refusal(name: str, reading: Any, masked: bool) -> str | None:
    """Why framework ``name`` cannot run ``reading`` (given per-row lengths where
    ``masked``), or None when it can."""
    from .frameworks import FRAMEWORKS

    framework = FRAMEWORKS[name]()
    return framework.supports(reading) or (framework.lengths_refusal(reading) if masked else None)


def left_out(
    reading: Any, frameworks: str | Sequence[str], *, masked: bool = False
) -> dict[str, str]:
    """``{framework: why}`` for the reference and each framework asked for (the installed
    ones under ``"auto"``) that cannot run ``reading``, given per-row lengths where
    ``masked``.

    Example:
        >>> import numpy as np
        >>> from xframe_bilstm.factories import random_stack
        >>> left_out(random_stack(np.random.default_rng(0), "lstm", 2, 3), ["torch"])
        {}
    """
    from .frameworks import FRAMEWORKS, auto_frameworks

    if frameworks == "auto":
        names = ["reference", *auto_frameworks()]
    else:
        asked = [frameworks] if isinstance(frameworks, str) else list(frameworks)
        names = ["reference", *(name for name in asked if name in FRAMEWORKS)]
    reasons = {name: refusal(name, reading, masked) for name in dict.fromkeys(names)}
    return {name: why for name, why in reasons.items() if why}


__all__ = ["left_out"]
