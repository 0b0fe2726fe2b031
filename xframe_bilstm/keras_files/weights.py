"""Weights that are read only once their shape has been checked.

Rules of this module:

- A :class:`WeightRef` knows a weight's name, shape and dtype before its data is read;
  :meth:`WeightRef.read` is the only step that allocates, and it refuses a shape other than
  the one the layer's configuration implies, so a file cannot make us allocate what its
  configuration does not declare.
- Only floating-point weights are accepted (bfloat16 too: Keras 3 stores it as 2-byte
  opaque data with a ``dtype`` attribute, read back as ``ml_dtypes.bfloat16``).
- A weight's declared size must be backed by the file: a store that declares more bytes
  than it holds (``stored``, times the largest ratio a compressor reaches when the data is
  ``compressed``) is refused before it is read, as is any weight over
  :data:`MAX_WEIGHT_BYTES`. HDF5 can declare a dataset of terabytes in a file of kilobytes
  (its chunks are never written); reading it would allocate the terabytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..canonical import is_float_dtype
from ..errors import UnsupportedFeatureError, WeightShapeError
from .mapped import MappedFile

# No recurrent or embedding weight of a model this tool ports comes near this (1e9 floats).
MAX_WEIGHT_BYTES = 4 * 1024**3
# deflate, the HDF5 filter Keras could use, cannot compress by more than about 1032:1.
MAX_COMPRESSION_RATIO = 1100


@dataclass(frozen=True)
class WeightRef:
    """One stored weight: where it is, its shape and dtype, and how to read it.

    Example:
        >>> ref = WeightRef.of_array("dense/kernel", np.zeros((2, 3), "float32"))
        >>> ref.read((2, 3), "layer 'dense' kernel").shape
        (2, 3)
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    loader: Callable[[], np.ndarray]
    source: str = "model"
    stored: int | None = None  # bytes the file holds for it, where the store says
    compressed: bool = False

    @classmethod
    def of_array(cls, name: str, array: np.ndarray, source: str = "model") -> WeightRef:
        array = np.asarray(array)
        return cls(name, tuple(array.shape), array.dtype, lambda: array, source)

    def _where(self, what: str) -> str:
        # ``what`` usually names the file already; say it once.
        return what if what.startswith(self.source) else f"{self.source}: {what}"

    def check(self, shape: tuple[int, ...], what: str) -> None:
        """Raise WeightShapeError unless this weight is floating point and of ``shape``."""
        if not is_float_dtype(self.dtype):
            raise WeightShapeError(
                f"{self._where(what)} ({self.name}) has dtype {self.dtype}; expected floats"
            )
        if tuple(self.shape) != tuple(shape):
            raise WeightShapeError(
                f"{self._where(what)} ({self.name}) has shape {tuple(self.shape)}; its "
                f"configuration implies {tuple(shape)}"
            )
        declared = int(np.prod(self.shape, dtype=np.float64)) * self.dtype.itemsize
        if declared > MAX_WEIGHT_BYTES:
            raise WeightShapeError(
                f"{self._where(what)} ({self.name}) declares {declared} bytes (shape "
                f"{tuple(self.shape)}); at most {MAX_WEIGHT_BYTES} are read"
            )
        if self.stored is not None:
            backed = self.stored * (MAX_COMPRESSION_RATIO if self.compressed else 1)
            if declared > backed:
                raise WeightShapeError(
                    f"{self._where(what)} ({self.name}) declares {declared} bytes (shape "
                    f"{tuple(self.shape)}) but the file holds {self.stored} for it; a "
                    "truncated or forged file"
                )

    def read(self, shape: tuple[int, ...], what: str) -> np.ndarray:
        """Check the declared shape, then read the data (and check what was read)."""
        self.check(shape, what)
        array = np.asarray(self.loader())
        if array.shape != tuple(shape) or not is_float_dtype(array.dtype):
            # a store that lied about its shape or dtype
            raise WeightShapeError(
                f"{self._where(what)} ({self.name}) read as {array.dtype} of shape "
                f"{array.shape}, declared floats of shape {tuple(shape)}"
            )
        return array


def expect_count(refs: Sequence[WeightRef], count: int, where: str) -> None:
    """Refuse a layer that stores other than ``count`` weights."""
    if len(refs) != count:
        raise WeightShapeError(f"{where}: expected {count} weights, found {len(refs)}")


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _bfloat16(source: str, name: str) -> np.dtype:
    """numpy's bfloat16 from ``ml_dtypes`` (a dependency of TensorFlow, Keras and JAX)."""
    try:
        import ml_dtypes
    except ImportError as error:
        raise UnsupportedFeatureError(
            f"{source}: weight {name} is bfloat16, which numpy reads only with the ml_dtypes "
            "package; pip install ml_dtypes, or save the model in float32"
        ) from error
    return np.dtype(ml_dtypes.bfloat16)


def dataset_ref(
    name: str, dataset: Any, source: str, mapped: MappedFile | None = None
) -> WeightRef:
    """A :class:`WeightRef` of an h5py dataset: its shape, dtype and stored size, unread.

    ``dataset`` is the dataset's low-level id (``h5py.Dataset.id``): a port describes every
    dataset of a file, and h5py's wrapper of one costs more than the description. With
    ``mapped`` (the dataset's file, mapped), the weight is read as a view of the file's
    pages where its data is one unfiltered run (:mod:`.mapped`).
    """
    import h5py

    try:
        dtype = np.dtype(dataset.dtype)
        shape = tuple(int(size) for size in dataset.shape)
        stored = int(dataset.get_storage_size())
        compressed = dataset.get_create_plist().get_nfilters() > 0
        # Keras 3 stores bfloat16 as 2-byte opaque data marked with a dtype attribute.
        bfloat16 = (
            dtype == np.dtype("V2")
            and _text(h5py.Dataset(dataset).attrs.get("dtype")) == "bfloat16"
        )
    except (TypeError, ValueError, OSError) as error:
        raise WeightShapeError(f"{source}: weight {name} cannot be described ({error})") from error
    if bfloat16:
        dtype = _bfloat16(source, name)

    def load() -> np.ndarray:
        view = None if mapped is None else mapped.view(dataset, dtype, shape)
        if view is not None:
            return view  # read-only, as the mapping is
        array = np.asarray(h5py.Dataset(dataset)[()])
        if bfloat16:
            array = array.view(dtype)  # the same 16 bits, read as bfloat16
        # A fresh array no one else holds: read-only, the canonical form keeps it uncopied.
        array.setflags(write=False)
        return array

    return WeightRef(name, shape, dtype, load, source, stored=stored, compressed=compressed)


__all__ = ["MAX_WEIGHT_BYTES", "WeightRef", "dataset_ref", "expect_count"]
