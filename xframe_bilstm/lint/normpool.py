"""``lint()``'s traps in normalization and pooling layers, read from the configuration.

``BatchNormalization``'s epsilon (Keras 1e-3, torch 1e-5), its training-only options,
``LayerNormalization(rms_scaling=True)``, TensorFlow's ``same`` pooling (uneven padding,
an average that leaves the padding out) and pools that end a mask.
"""

from __future__ import annotations

from collections.abc import Callable

from ..keras_files.config import LayerSpec

KINDS = ("batch_norm", "layer_norm", "pool")
Add = Callable[[LayerSpec, str, str, str], None]


def normpool_traps(layer: LayerSpec, add: Add, *, reads_mask: bool) -> None:
    """Add the traps of one normalization or pooling ``layer``."""
    config = layer.config
    if layer.kind == "batch_norm":
        refused = [option for option in ("renorm", "synchronized") if config.get(option)]
        if refused:
            add(layer, "batch renormalization", f"{refused[0]}=True has no port", "refused")
        add(
            layer,
            "epsilon",
            f"Keras's epsilon is {config.get('epsilon', 1e-3)} (default 1e-3; torch's "
            "BatchNorm defaults to 1e-5); the port normalizes with the moving statistics and "
            "Keras's epsilon",
            "converted",
        )
    if layer.kind == "layer_norm" and config.get("rms_scaling"):
        add(
            layer,
            "rms_scaling",
            "deprecated in Keras 3: it scales by the variance, not the root mean square",
            "refused",
        )
    if layer.kind == "pool" and str(config.get("padding", "valid")).lower() == "same":
        add(
            layer,
            "same padding",
            "TensorFlow pads the extra step at the end and its average leaves the padding "
            "out of the count; torch's padding is even and counted by default; the port "
            "builds TensorFlow's windows",
            "converted",
        )
    if layer.kind == "pool" and reads_mask:
        add(
            layer,
            "mask ends",
            "Keras 3 drops the mask here (with a warning): later layers see padded steps "
            "as data; the port does the same",
            "converted",
        )


__all__ = ["KINDS", "normpool_traps"]
