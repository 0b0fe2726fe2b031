"""Copies of weights in the orientation a destination stores them, at the speed of memory.

Keras keeps a recurrent kernel as (D, G·H), PyTorch as (G·H, D): moving weights between
them is a transpose. numpy copies a transposed array element by element across strides,
several times slower than a plain copy; copying it in narrow bands keeps what is read and
written in the cache, which brings the transposed copy close to a plain one.
"""

from __future__ import annotations

import numpy as np

# Columns per band: a band of a (G·H, D) float32 source is read 64 bytes at a time per row,
# and the rows it writes stay in the cache while it is copied.
BAND = 16


def contiguous_copy(array: np.ndarray) -> np.ndarray:
    """A new C-contiguous array with ``array``'s values, never sharing its memory.

    A transposed 2-D array (Fortran order, as ``tensor.numpy().T`` gives) is copied band by
    band; anything else by numpy's own copy.

    Example:
        >>> source = np.arange(6.0).reshape(2, 3)
        >>> copy = contiguous_copy(source.T)
        >>> copy.tolist(), copy.flags.c_contiguous, np.shares_memory(copy, source)
        ([[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]], True, False)
    """
    array = np.asarray(array)
    if array.ndim != 2 or array.flags.c_contiguous or not array.flags.f_contiguous:
        return np.array(array, order="C", copy=True)
    out = np.empty(array.shape, array.dtype)
    for start in range(0, array.shape[1], BAND):
        out[:, start : start + BAND] = array[:, start : start + BAND]
    return out


def copy_into(out: np.ndarray, array: np.ndarray) -> None:
    """Copy ``array`` into ``out`` (same shape), a column-major 2-D source (a transpose, or
    rows of one) band by band.

    Example:
        >>> out = np.empty((3, 2))
        >>> copy_into(out, np.arange(6.0).reshape(2, 3).T)
        >>> out.tolist()
        [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]
    """
    if array.ndim != 2 or abs(array.strides[0]) >= abs(array.strides[1]):
        np.copyto(out, array)
        return
    for start in range(0, array.shape[1], BAND):
        out[:, start : start + BAND] = array[:, start : start + BAND]


def read_only_view(array: np.ndarray) -> np.ndarray:
    """A view of ``array`` that cannot be written through (``array`` itself stays writable).

    The canonical form keeps read-only arrays without copying them; a conversion that
    copies the weights into their destination at once hands it such views.

    Example:
        >>> source = np.zeros(3)
        >>> view = read_only_view(source)
        >>> view.flags.writeable, np.shares_memory(view, source), source.flags.writeable
        (False, True, True)
    """
    view = np.asarray(array).view()
    view.setflags(write=False)
    return view
