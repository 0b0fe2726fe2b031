"""Weights read as views of the mapped file: the same values, the port's copy the only one."""

from __future__ import annotations

import gc
import mmap
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")
torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import keras_to_torch  # noqa: E402
from xframe_bilstm.graph import LayerRecord, ModelGraph  # noqa: E402
from xframe_bilstm.keras_files import read_model  # noqa: E402
from xframe_bilstm.keras_files.mapped import MappedFile  # noqa: E402

from ..saved_models import k3_classifier  # noqa: E402
from ..test_custom import CUSTOM, SqueezeLayer, chord_model, features  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]


def _record_arrays(record: LayerRecord) -> Iterator[tuple[str, np.ndarray]]:
    for key, array in record.weights.items():
        yield f"{record.name}/{key}", array
    if record.recurrent is not None:
        for index, direction in enumerate(record.recurrent.weights):
            for field in ("kernel", "recurrent_kernel", "bias"):
                array = getattr(direction, field)
                if array is not None:
                    yield f"{record.name}/{index}/{field}", array
    if isinstance(record.options.get("layer"), LayerRecord):
        yield from _record_arrays(record.options["layer"])


def arrays(graph: ModelGraph) -> dict[str, np.ndarray]:
    return {name: array for record in graph.layers for name, array in _record_arrays(record)}


def maps_file(array: np.ndarray) -> bool:
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base.obj if isinstance(base, memoryview) else base, mmap.mmap)


def mapped_paths() -> str:
    return Path("/proc/self/maps").read_text()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("mapped")
    classifier, _ = k3_classifier(keras)
    chords = chord_model(SqueezeLayer(0.5, name="squeeze"))
    chords.build((None, None, 4))
    stack = keras.Sequential(  # ports as a KerasRecurrent, not a whole-model port
        [
            keras.Input((None, 4)),
            keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True)),
            keras.layers.GRU(2, return_sequences=True),
        ]
    )
    saved = {}
    for name, model in (("classifier", classifier), ("chords", chords), ("stack", stack)):
        for suffix in (".keras", ".h5"):
            saved[name + suffix] = folder / (name + suffix)
            model.save(saved[name + suffix])
    return saved


@pytest.mark.parametrize("name", ["classifier.keras", "classifier.h5"])
def test_mapped_weights_are_the_stored_ones_as_read_only_views(files, name: str) -> None:
    read = arrays(read_model(files[name]))
    mapped = arrays(read_model(files[name], map_weights=True))
    assert read.keys() == mapped.keys() and len(read) >= 8
    for key, array in mapped.items():
        np.testing.assert_array_equal(array, read[key], err_msg=key)
        assert maps_file(array) and not maps_file(read[key]), key
        assert not array.flags.writeable, key


def test_an_archive_that_compresses_its_weights_is_read_not_mapped(files, tmp_path) -> None:
    packed = tmp_path / "packed.keras"
    with (
        zipfile.ZipFile(files["classifier.keras"]) as source,
        zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
    expected = arrays(read_model(files["classifier.keras"]))
    for key, array in arrays(read_model(packed, map_weights=True)).items():
        np.testing.assert_array_equal(array, expected[key], err_msg=key)
        assert not maps_file(array), key


def test_a_filtered_dataset_is_read_and_the_others_mapped(files, tmp_path) -> None:
    path = tmp_path / "filtered.h5"
    shutil.copy(files["classifier.h5"], path)
    dense = next(r.name for r in read_model(path).layers if r.kind == "dense")  # Keras numbers it
    with h5py.File(path, "r+") as handle:
        group = handle["model_weights"][dense]
        names: list[str] = []
        group.visititems(
            lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None
        )
        kernel = next(name for name in names if "kernel" in name)
        data = group[kernel][()]
        del group[kernel]
        group.create_dataset(kernel, data=data, compression="gzip", chunks=data.shape)
    expected = arrays(read_model(files["classifier.h5"]))
    got = arrays(read_model(path, map_weights=True))
    for key, array in got.items():
        np.testing.assert_array_equal(array, expected[key], err_msg=key)
    assert not maps_file(got[f"{dense}/kernel"])
    assert sum(map(maps_file, got.values())) == len(got) - 1


def test_a_view_is_refused_where_the_data_is_not_one_run_inside_the_file(tmp_path) -> None:
    path = tmp_path / "layouts.h5"
    data = np.arange(12, dtype="<f4").reshape(3, 4)
    with h5py.File(path, "w") as handle:
        handle["plain"] = data
        handle.create_dataset("chunked", data=data, chunks=(1, 4))
        handle.create_dataset("deflated", data=data, compression="gzip")
        handle.create_dataset("unwritten", shape=(3, 4), dtype="<f4")
        handle["big_endian"] = data.astype(">f4")
        odd = h5py.h5t.IEEE_F32LE.copy()  # 32-bit floats of another exponent bias
        odd.set_ebias(100)
        space = h5py.h5s.create_simple(data.shape)
        h5py.h5d.create(handle.id, b"odd", odd, space).write(h5py.h5s.ALL, h5py.h5s.ALL, data)
    mapped = MappedFile.of_path(path)
    assert mapped is not None
    with h5py.File(path, "r") as handle:
        for name in ("plain", "big_endian"):
            dtype = np.dtype(handle[name].dtype)
            np.testing.assert_array_equal(mapped.view(handle[name].id, dtype, (3, 4)), data)
        np.testing.assert_array_equal(handle["odd"][()], data)  # h5py converts them
        for name in ("chunked", "deflated", "unwritten", "odd"):
            assert mapped.view(handle[name].id, np.dtype("<f4"), (3, 4)) is None, name
        assert mapped.view(handle["plain"].id, np.dtype("<f4"), (2, 4)) is None  # not its size
        address = handle["plain"].id.get_offset()
        short = MappedFile(mapped.pages, 0, address + 8)  # the data runs past the file's end
        assert short.view(handle["plain"].id, np.dtype("<f4"), (3, 4)) is None


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/self/maps")
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("model", ["chords", "stack"])
def test_a_port_leaves_no_mapping_of_the_file_behind(files, model, suffix, verify) -> None:
    path = files[model + suffix]  # chords: a custom layer, whose record the port keeps
    port = keras_to_torch(path, custom_layers=CUSTOM, verify=verify)
    gc.collect()
    assert str(path.resolve()) not in mapped_paths()
    model = keras.saving.load_model(path)
    x = features()
    with torch.no_grad():
        got = port(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, np.asarray(model(x)), atol=1e-5)
