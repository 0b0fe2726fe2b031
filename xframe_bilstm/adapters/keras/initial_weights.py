"""Keras variables created from the weights themselves, not zero-filled then set.

Building a layer with its configured initializers and then assigning each weight holds two
buffers per variable: TensorFlow keeps the memory of the replaced one resident, so a large
conversion peaks well above the size of its weights. Lending a layer (or a recurrent cell)
an initializer that returns the weight creates each variable holding its value from the
start; the configured initializers are put back right after building, so the layer's
``get_config`` and a saved ``.keras`` file are those of an ordinary layer and never embed
the weights.

On TensorFlow the value handed over is made with one allocation, which the variable then
adopts: the weight's memory is read in place (DLPack) and copied once into Keras's
orientation. Converting a numpy array instead copies it into a tensor and the variable
copies that again: three copies of the weight alive at once with the array itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..._imports import require
from ...canonical import RecurrentLayer
from ...copies import contiguous_copy
from ...errors import WeightShapeError

# The alignment of TensorFlow's CPU allocator (``Allocator::kAllocatorAlignment``).
_TENSORFLOW_ALIGNMENT = 64

# The cell attributes lent an initializer, with the canonical weight each one creates.
LENT = (("kernel_initializer", "kernel"), ("recurrent_initializer", "recurrent_kernel"))


class _FromWeight:
    """An initializer giving one canonical weight (in Keras's orientation), used once."""

    def __init__(self, array: np.ndarray, where: str) -> None:
        self.array: np.ndarray | None = array
        self.where = where

    def __call__(self, shape: Any, dtype: Any = None, **_: Any) -> Any:
        array = self.array
        if array is None:
            raise RuntimeError(f"{self.where}: the weight was already used to create a variable")
        if tuple(shape) != array.shape:
            raise WeightShapeError(
                f"{self.where} has shape {tuple(shape)}; the canonical weight has shape "
                f"{array.shape}"
            )
        self.array = None  # the variable holds it from here on
        return tensor_copy(array, dtype)


def tensor_copy(array: np.ndarray, dtype: Any = None) -> Any:
    """A new backend tensor of ``array``'s values as ``dtype``, C-contiguous, sharing no memory.

    On TensorFlow, an array that is C-contiguous or the transpose of one (a kernel read from
    torch) of the wanted dtype is read in place and copied once, by ``tf.transpose`` or
    ``DeepCopy``: the only buffer made is the one a variable created from it keeps. Anything
    else goes through ``keras.ops.convert_to_tensor``. Either way the values are those
    ``Variable.assign`` of the array gives.

    Example:
        >>> source = np.arange(6.0, dtype="float32").reshape(2, 3)
        >>> copy = tensor_copy(source.T, "float32")
        >>> np.asarray(copy).tolist(), np.shares_memory(np.asarray(copy), source)
        ([[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]], False)
    """
    keras = require("keras")
    wanted = np.dtype(keras.backend.standardize_dtype(dtype or array.dtype))
    if keras.backend.backend() == "tensorflow" and array.dtype == wanted:
        copied = _tensorflow_copy(array)
        if copied is not None:
            return copied
    # The conversion Variable.assign makes, so the values are those assigning gives.
    return keras.ops.convert_to_tensor(contiguous_copy(array), dtype=dtype)


def _tensorflow_copy(array: np.ndarray) -> Any:
    """``array`` copied once by TensorFlow from its memory in place, or None where DLPack
    cannot lend that memory (another layout or alignment, a dtype DLPack lacks, a read-only
    owner)."""
    tf = require("tensorflow")
    transposed = array.ndim == 2 and not array.flags.c_contiguous and array.T.flags.c_contiguous
    source = array.T if transposed else array
    # TensorFlow's kernels take only buffers aligned as its own allocator aligns them (torch
    # aligns its parameters so; numpy arrays may be off); any other aborts the process.
    aligned = source.ctypes.data % _TENSORFLOW_ALIGNMENT == 0
    if not source.flags.c_contiguous or source.size == 0 or not aligned:
        return None
    view = source.view()
    try:
        # DLPack cannot say read-only, and numpy lends no read-only array through it; the
        # view is only read, by the one copy below.
        view.setflags(write=True)
        lent = tf.experimental.dlpack.from_dlpack(view.__dlpack__())
    except (BufferError, TypeError, ValueError):
        return None
    return tf.transpose(lent) if transposed else tf.raw_ops.DeepCopy(x=lent)


def halves(layer: RecurrentLayer, keras_layer: Any) -> tuple[Any, ...]:
    """The Keras recurrent layers holding ``layer``'s directions, in canonical order."""
    if layer.direction == "bidirectional":
        return (keras_layer.forward_layer, keras_layer.backward_layer)
    return (keras_layer,)


def lend_weights(layer: RecurrentLayer, keras_layer: Any) -> Callable[[], bool]:
    """Give an unbuilt Keras layer's cells initializers that create its kernels from ``layer``.

    Args:
        layer: the canonical layer whose kernels and recurrent kernels the cells receive.
        keras_layer: its Keras layer (or ``Bidirectional``), constructed but not built.

    Returns:
        A function that puts the cells' configured initializers back, to call once the layer
        is built (or failed to build); it returns whether every lent weight created its
        variable (when not, the caller assigns the weights).
    """
    restores = [
        lend_initializers(
            half.cell,
            {key: getattr(weights, key) for _, key in LENT},
            f"layer {half.name!r}",
            attributes={key: attribute for attribute, key in LENT},
        )
        for half, weights in zip(halves(layer, keras_layer), layer.weights, strict=True)
    ]

    def restore() -> bool:
        return all([put_back() for put_back in restores])  # every one put back

    return restore


def lend_initializers(
    owner: Any,
    weights: Mapping[str, np.ndarray],
    where: str,
    *,
    attributes: Mapping[str, str] | None = None,
) -> Callable[[], bool]:
    """Give ``owner`` (an unbuilt layer or cell) initializers that create variables from arrays.

    Args:
        owner: the object whose initializer attributes its ``build`` passes to ``add_weight``.
        weights: Keras's name of each weight (``"kernel"``, ``"gamma"``) -> its array, in
            Keras's shape and orientation.
        where: the layer, as a refusal names it.
        attributes: a weight's initializer attribute where it is not ``<name>_initializer``
            (a recurrent cell's ``recurrent_kernel`` has ``recurrent_initializer``).

    Returns:
        A function that puts the configured initializers back, to call once ``owner`` is
        built (or failed to build); it returns whether every lent weight created its
        variable (when not, the caller assigns the weights).
    """
    lent: list[tuple[Any, str, Any, _FromWeight]] = []
    for key, array in weights.items():
        attribute = (attributes or {}).get(key, f"{key}_initializer")
        initializer = _FromWeight(array, f"{where}: its {key}")
        lent.append((owner, attribute, getattr(owner, attribute), initializer))
        setattr(owner, attribute, initializer)

    def restore() -> bool:
        for cell, attribute, configured, _ in lent:
            setattr(cell, attribute, configured)
        return all(initializer.array is None for *_, initializer in lent)

    return restore
