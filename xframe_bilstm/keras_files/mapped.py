"""An HDF5 file's bytes mapped into memory, so that weights are read as views, not copies.

A port copies every weight into its own parameters at once. Reading each weight into an
array first would copy it twice (file to array, array to parameter) and touch twice its
memory; a view of the file's pages lets the port's copy be the only one. HDF5 stores an
unfiltered, contiguous dataset as one run of bytes at a known address, which is all a view
needs; any other layout is read by h5py as before.

A mapped file must not change while its views live: truncating it ends the process
(SIGBUS), as with ``numpy.load(mmap_mode=...)``. So views are only for a caller that copies
them right away and drops them (``read_model(path, map_weights=True)``).
"""

from __future__ import annotations

import functools
import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np


@dataclass(frozen=True)
class MappedFile:
    """The HDF5 file that starts at ``start`` in ``pages`` and holds ``size`` bytes."""

    pages: mmap.mmap
    start: int
    size: int

    @classmethod
    def of(cls, handle: IO[bytes], start: int, size: int) -> MappedFile | None:
        """The mapping of an open file's ``size`` bytes at ``start``; None where it cannot map."""
        try:
            pages = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # an empty file, or one that is not a regular file
            return None
        if start < 0 or start + size > len(pages):
            pages.close()
            return None
        return cls(pages, start, size)

    @classmethod
    def of_path(cls, path: str | Path) -> MappedFile | None:
        """The mapping of the whole file at ``path`` (HDF5 addresses count from its start)."""
        with open(path, "rb") as handle:
            return cls.of(handle, 0, os.fstat(handle.fileno()).st_size)

    def view(self, dataset: Any, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray | None:
        """A read-only view of the data of ``dataset`` (an h5py dataset id) as ``dtype`` of
        ``shape``, or None where it is not one unfiltered run of exactly that many bytes
        inside this file."""
        import h5py

        plist = dataset.get_create_plist()
        if (
            plist.get_layout() != h5py.h5d.CONTIGUOUS
            or plist.get_nfilters()
            or plist.get_external_count()
        ):
            return None
        if not _stored_as_numpy_has_it(dataset):
            return None
        address = dataset.get_offset()  # None where no data was ever written
        count = int(np.prod(shape, dtype=np.int64))
        nbytes = count * dtype.itemsize
        if address is None or dataset.get_storage_size() != nbytes:
            return None
        if address < 0 or address + nbytes > self.size:
            return None  # points outside the file: h5py's own read reports it
        return np.frombuffer(self.pages, dtype, count, self.start + address).reshape(shape)


def _stored_as_numpy_has_it(dataset: Any) -> bool:
    """Whether the dataset's bytes are its numpy dtype's as they stand: HDF5 also stores
    floats of other layouts, which h5py converts as it reads them."""
    native = _hdf5_type(np.dtype(dataset.dtype))
    return native is not None and bool(dataset.get_type().equal(native))


@functools.lru_cache(maxsize=32)
def _hdf5_type(dtype: np.dtype) -> Any:
    """The HDF5 type h5py writes ``dtype`` as; None for one it has no type for."""
    import h5py

    try:
        return h5py.h5t.py_create(dtype)
    except (TypeError, ValueError):
        return None


__all__ = ["MappedFile"]
