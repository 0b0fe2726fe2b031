"""Keras 3 ``.keras`` archives: ``config.json`` plus ``model.weights.h5`` in a zip file.

Rules of this module:

- zipfile, json and h5py only; no framework, no pickle, nothing executed.
- Member names are checked before anything is read: no absolute paths, no ``..``, no
  backslashes, no duplicates; ``config.json`` must be of a sane size.
- The weights file is read in place when it is stored uncompressed (as Keras writes it),
  through a window onto the archive, so no copy of it is made in memory or on disk; a
  compressed one is unpacked to a temporary file first.
- Weights are found by the paths Keras 3 gives them, which follow Python attributes and
  class names made unique in layer order (``layers/bidirectional_1/forward_layer/cell/vars/0``),
  not the layers' own names.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from ..errors import UnsupportedFeatureError, WeightShapeError
from ..graph import ModelGraph
from .config import LayerSpec, ModelSpec, build_graph, parse_layers
from .config.cells import cell_entries
from .legacy import keras_major
from .mapped import MappedFile
from .weights import MAX_WEIGHT_BYTES, WeightRef, dataset_ref

MAX_CONFIG_BYTES = 64 * 1024 * 1024
# The weights of the largest model this tool ports fit many times over; a zip entry can
# declare any size, so this is checked before anything is unpacked.
MAX_WEIGHTS_BYTES = 4 * MAX_WEIGHT_BYTES
# deflate cannot compress by more than about 1032:1: past that, the sizes are forged.
MAX_ZIP_RATIO = 1100
CONFIG = "config.json"
METADATA = "metadata.json"
WEIGHTS = "model.weights.h5"

# Where each class keeps its variables, relative to its own group, in creation order.
_VARIABLE_GROUPS = {
    "LSTM": ("cell/vars",),
    "GRU": ("cell/vars",),
    "SimpleRNN": ("cell/vars",),
    "RNN": ("cell/vars",),
    "Bidirectional": ("forward_layer/cell/vars", "backward_layer/cell/vars"),
    "TimeDistributed": ("layer/vars",),
    "MultiHeadAttention": (
        "query_dense/vars",
        "key_dense/vars",
        "value_dense/vars",
        "output_dense/vars",
    ),
}


def _check_members(archive: zipfile.ZipFile, source: str) -> None:
    names = [info.filename for info in archive.infolist()]
    for name in names:
        parts = name.split("/")
        if name.startswith("/") or "\\" in name or ".." in parts or re.match(r"^[A-Za-z]:", name):
            raise UnsupportedFeatureError(f"{source}: unsafe member name {name!r} in the archive")
    if len(set(names)) != len(names):
        raise UnsupportedFeatureError(f"{source}: the archive lists a member twice")
    for required in (CONFIG, WEIGHTS):
        if required not in names:
            raise UnsupportedFeatureError(
                f"{source}: no {required} in the archive; not a Keras 3 .keras model file"
            )
    if archive.getinfo(CONFIG).file_size > MAX_CONFIG_BYTES:
        raise UnsupportedFeatureError(
            f"{source}: {CONFIG} declares {archive.getinfo(CONFIG).file_size} bytes; a "
            f"configuration is at most {MAX_CONFIG_BYTES}"
        )
    weights = archive.getinfo(WEIGHTS)
    if weights.file_size > MAX_WEIGHTS_BYTES:
        raise UnsupportedFeatureError(
            f"{source}: {WEIGHTS} declares {weights.file_size} bytes; at most "
            f"{MAX_WEIGHTS_BYTES} are read"
        )
    for info in archive.infolist():
        if info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1):
            raise UnsupportedFeatureError(
                f"{source}: {info.filename} declares {info.file_size} bytes unpacked from "
                f"{info.compress_size}; no compressor reaches that ratio (a zip bomb?)"
            )
        if info.flag_bits & 0x1:
            raise UnsupportedFeatureError(f"{source}: {info.filename} is encrypted")


def read_archive_spec(path: str | Path, *, strict: bool = True) -> ModelSpec:
    """The parsed configuration of a ``.keras`` file."""
    source = str(path)
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        raise UnsupportedFeatureError(f"{source}: not a zip archive ({error})") from error
    with archive:
        _check_members(archive, source)
        config = json.loads(archive.read(CONFIG))
        version = None
        if METADATA in archive.namelist() and archive.getinfo(METADATA).file_size < 1 << 20:
            version = json.loads(archive.read(METADATA)).get("keras_version")
    return parse_layers(config, major=keras_major(version), source=source, strict=strict)


class _Window(io.RawIOBase):
    """A read-only, seekable view of ``size`` bytes at ``offset`` in an open file."""

    def __init__(self, handle: IO[bytes], offset: int, size: int) -> None:
        super().__init__()
        self._handle, self._offset, self._size, self._position = handle, offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, position: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + position)
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        count = max(0, min(len(view), self._size - self._position))
        self._handle.seek(self._offset + self._position)
        read = self._handle.readinto(view[:count])  # type: ignore[attr-defined]
        self._position += read or 0
        return read or 0


def _data_offset(handle: IO[bytes], info: zipfile.ZipInfo) -> int:
    # The local header repeats the name and has its own extra field: read their lengths.
    handle.seek(info.header_offset)
    header = handle.read(30)
    if header[:4] != b"PK\x03\x04":
        raise UnsupportedFeatureError(
            f"{getattr(handle, 'name', 'archive')}: bad local header for {info.filename}"
        )
    name_length = int.from_bytes(header[26:28], "little")
    extra_length = int.from_bytes(header[28:30], "little")
    return info.header_offset + 30 + name_length + extra_length


@contextmanager
def _weights_file(path: str | Path, map_weights: bool) -> Iterator[tuple[Any, MappedFile | None]]:
    """An open h5py file of the archive's weights, and with ``map_weights`` its mapping
    where the archive stores it uncompressed."""
    import h5py

    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(WEIGHTS)
        if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1:
            with open(path, "rb") as handle:
                offset = _data_offset(handle, info)
                end = handle.seek(0, io.SEEK_END)
                if info.compress_size != info.file_size or offset + info.file_size > end:
                    raise UnsupportedFeatureError(
                        f"{path}: {WEIGHTS} declares {info.file_size} bytes at offset "
                        f"{offset}, past the end of the {end}-byte archive (truncated?)"
                    )
                window = _Window(handle, offset, info.file_size)
                mapped = MappedFile.of(handle, offset, info.file_size) if map_weights else None
                with h5py.File(window, "r") as weights:
                    yield weights, mapped
            return
        with tempfile.TemporaryDirectory() as directory:
            target = Path(directory) / WEIGHTS
            with archive.open(info) as member, open(target, "wb") as out:
                shutil.copyfileobj(member, out, 1 << 20)
            with h5py.File(target, "r") as weights:
                yield weights, None


def _snake_case(name: str) -> str:
    # Keras's own rule for the group names of a .keras weights file.
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def weight_groups(spec: ModelSpec) -> dict[tuple[str, ...], str]:
    """Each layer's path (its name, or the nested models' names and its own) -> its group
    in ``model.weights.h5`` (``layers/<class>[_<k>]``; a nested model's layers under its
    group's ``layers/``).

    Example:
        >>> from xframe_bilstm.keras_files.config import LayerSpec, ModelSpec
        >>> specs = tuple(LayerSpec(n, c, "dense", {}, position=i)
        ...               for i, (n, c) in enumerate([("a", "Dense"), ("b", "Dense")]))
        >>> weight_groups(ModelSpec("m", specs, (), (), 3, "m.keras"))
        {('a',): 'layers/dense', ('b',): 'layers/dense_1'}
    """
    # A shared layer's later call and a nested model's layers are not the model's own.
    entries: list[tuple[int, str, str, ModelSpec | None]] = [
        (layer.position, layer.class_name, (layer.path or (layer.name,))[0], None)
        for layer in spec.layers
        if not layer.shares and len(layer.path) < 2
    ]
    entries += [(model.position, model.class_name, model.name, model.spec) for model in spec.nested]
    used: dict[str, int] = {}
    groups: dict[tuple[str, ...], str] = {}
    for _, class_name, name, model in sorted(entries, key=lambda entry: entry[0]):
        # Keras names a group by the class's own name: this package's layers are read
        # under their registered names ("xframe_bilstm>WeightOp").
        base = _snake_case(class_name.split(">")[-1])
        used[base] = used.get(base, -1) + 1
        group = f"layers/{base}_{used[base]}" if used[base] else f"layers/{base}"
        groups[(name,)] = group
        if model is not None:
            inner = weight_groups(model)
            groups.update({(name, *path): f"{group}/{g}" for path, g in inner.items()})
    return groups


def _variable_groups(layer: LayerSpec, source: str) -> tuple[str, ...]:
    """Where ``layer`` keeps its variables; a list of cells names each by its unique class."""
    cell = layer.config.get("cell")
    if layer.class_name != "RNN" or not isinstance(cell, Mapping):
        return _VARIABLE_GROUPS.get(layer.class_name, ("vars",))
    if cell.get("class_name") != "StackedRNNCells":
        return ("cell/vars",)
    cells = cell_entries(layer.config, f"{source}: layer {layer.name!r} (RNN)")
    used: dict[str, int] = {}
    groups = []
    for class_name, _ in cells:
        base = _snake_case(class_name)
        used[base] = used.get(base, -1) + 1
        groups.append(f"cell/cells/{base}" + (f"_{used[base]}" if used[base] else "") + "/vars")
    return tuple(groups)


def _variables(
    weights: Any, group: str, source: str, layer: LayerSpec, mapped: MappedFile | None
) -> list[WeightRef]:
    # h5py's low-level calls: a port reads every group and dataset of the file once, and
    # the high-level ones cost more than reading the data.
    import h5py

    refs: list[WeightRef] = []
    for relative in _variable_groups(layer, source):
        path = f"{group}/{relative}"
        try:
            variables = h5py.h5o.open(weights.id, path.encode())
        except KeyError:  # no such group
            if layer.kind in ("embedding", "recurrent", "dense"):
                raise WeightShapeError(f"{source}: no {path} for layer {layer.name!r}") from None
            continue
        if not isinstance(variables, h5py.h5g.GroupID):
            raise WeightShapeError(f"{source}: {path} is not a group")
        keys = [name.decode("utf-8", "replace") for name in variables]
        if sorted(keys) != sorted(str(index) for index in range(len(keys))):
            raise WeightShapeError(f"{source}: {path} holds {keys}; expected 0..{len(keys) - 1}")
        for index in range(len(keys)):
            dataset = h5py.h5o.open(variables, str(index).encode())
            if not isinstance(dataset, h5py.h5d.DatasetID):
                raise WeightShapeError(f"{source}: {path}/{index} is not a dataset")
            refs.append(dataset_ref(f"{path}/{index}", dataset, source, mapped))
    return refs


def read_archive(path: str | Path, *, map_weights: bool = False) -> ModelGraph:
    """Read a ``.keras`` file into a :class:`~xframe_bilstm.graph.ModelGraph`.

    ``map_weights``: see :func:`~xframe_bilstm.keras_files.read_model`.

    Example:
        >>> graph = read_archive("classifier.keras")  # doctest: +SKIP
        >>> graph.inputs, graph.outputs  # doctest: +SKIP
        (('input_layer',), ('dense',))
    """
    spec = read_archive_spec(path)
    groups = weight_groups(spec)
    with _weights_file(path, map_weights) as (weights, mapped):

        def read_weights(layer: LayerSpec) -> list[WeightRef]:
            group = groups[layer.path or (layer.name,)]
            return _variables(weights, group, spec.source, layer, mapped)

        return build_graph(spec, read_weights)


__all__ = ["read_archive", "read_archive_spec", "weight_groups"]
