"""Dot products and cosine similarities of vectors, written in the graph's own kinds.

Keras's ``Dot(axes, normalize=True)`` and torch's ``F.cosine_similarity`` compute one
thing: each vector divided by its L2 norm, kept from falling below a floor, then the
products summed over the axis. They differ in the floor (Keras 3: its epsilon, 1e-7;
Keras 2: ``tf.linalg.l2_normalize``'s, the square root of 1e-12; torch: ``eps``, 1e-8)
and in whether the axis stays (Keras's ``(batch, 1)``, torch's ``(batch,)``). Every
runner already computes the records this makes: ``reduce`` (``l2_norm``, ``sum``),
``scalar_op`` (``maximum``) and ``merge`` (``divide``, ``multiply``).
"""

from __future__ import annotations

from .graph import LayerRecord

# The smallest norm each divides by.
KERAS3_FLOOR = 1e-7
KERAS2_FLOOR = 1e-6
TORCH_FLOOR = 1e-8


def dot_records(
    name: str,
    inputs: tuple[str, str],
    axis: int,
    *,
    floor: float | None,
    keepdims: bool,
    class_name: str,
) -> list[LayerRecord]:
    """The records of ``sum(a * b, axis)`` over ``inputs`` (the last one named ``name``),
    each input first divided by ``max(norm, floor)`` unless ``floor`` is None.

    Example:
        >>> [r.kind for r in dot_records("cos", ("a", "b"), 1, floor=1e-8, keepdims=False,
        ...                              class_name="cosine_similarity")]
        ['reduce', 'scalar_op', 'merge', 'reduce', 'scalar_op', 'merge', 'merge', 'reduce']
    """
    records: list[LayerRecord] = []
    factors = list(inputs)
    for index, x in enumerate(inputs if floor is not None else ()):  # normalized first
        norm, floored, unit = (f"{name}_{part}{index}" for part in ("norm", "floor", "unit"))
        clamp = {"op": "maximum", "constant": floor, "reverse": False}
        records += [
            _record(norm, "reduce", class_name, (x,), op="l2_norm", axes=(axis,), keepdims=True),
            _record(floored, "scalar_op", class_name, (norm,), **clamp),
            _record(unit, "merge", class_name, (x, floored), op="divide", mask_combine="any"),
        ]
        factors[index] = unit
    product = f"{name}_product"
    records += [
        _record(product, "merge", class_name, tuple(factors), op="multiply", mask_combine="any"),
        _record(name, "reduce", class_name, (product,), op="sum", axes=(axis,), keepdims=keepdims),
    ]
    return records


def _record(
    name: str, kind: str, class_name: str, inputs: tuple[str, ...], **options: object
) -> LayerRecord:
    return LayerRecord(name, kind, class_name, inputs, options)


__all__ = ["KERAS2_FLOOR", "KERAS3_FLOOR", "TORCH_FLOOR", "dot_records"]
