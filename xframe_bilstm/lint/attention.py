"""``lint()``'s traps in attention layers, read from the configuration.

A query step whose every score is masked attends to every step evenly (to none in Keras 3
with dropout); Keras 3's ``MultiHeadAttention`` clears the Keras masks of the tensors it
reads, so another layer reading them after it may see no mask.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..keras_files.config import LayerSpec, ModelSpec

KINDS = ("attention", "multi_head_attention")
Add = Callable[[LayerSpec, str, str, str], None]


def attention_traps(
    layer: LayerSpec, spec: ModelSpec, masked: Mapping[str, bool], add: Add
) -> None:
    """Add the traps of one attention ``layer``."""
    reads_mask = any(masked.get(name, False) for name in layer.inputs)
    if reads_mask or layer.call.get("use_causal_mask"):
        add(
            layer,
            "fully masked query steps",
            "a query step whose every value step is masked (a padded step, or the first "
            "steps of a left-padded row under use_causal_mask) takes every value evenly"
            + (
                " (Keras 3 with dropout: none)"
                if layer.kind == "multi_head_attention" and spec.major >= 3
                else ""
            )
            + "; the port computes the same",
            "converted",
        )
    if layer.kind != "multi_head_attention" or spec.major < 3:
        return
    shared = sorted(
        {
            name
            for name in layer.inputs
            if masked.get(name, False)
            and any(name in other.inputs for other in spec.layers if other.name != layer.name)
        }
    )
    if shared:
        add(
            layer,
            "masks cleared",
            f"Keras 3's MultiHeadAttention clears the masks of the tensors it reads "
            f"({', '.join(shared)}): a layer that also reads them and runs after it sees "
            "no mask in Keras (a Keras bug); the port keeps the masks, and compare() on the "
            "model shows whether Keras's own run differs",
            "converted",
        )


__all__ = ["KINDS", "attention_traps"]
