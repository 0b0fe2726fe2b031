"""The per-weight size cap of the file reader: a weight declaring more than 4 GiB is refused.

HDF5 lets a compressed, chunked dataset declare any shape and write only a few chunks. The
file below declares a 5 GiB embedding and stores about 10 MB of incompressible data for it:
enough that the stored size, times the largest ratio deflate reaches, covers the declared
size, so only the 4 GiB cap stands between the reader and a 5 GiB allocation. The reader
runs in a process whose address space is capped far below that, so a reader that does
allocate fails with ``MemoryError`` instead of taking the machine's memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .files import write_keras

h5py = pytest.importorskip("h5py")
resource = pytest.importorskip("resource")  # POSIX only: the address-space limit

ROOT = Path(__file__).resolve().parents[2]
GiB = 1024**3
VOCABULARY, WIDTH = 2**21, 640  # float32: 5 GiB declared
ROWS_PER_CHUNK = 1024  # 2.6 MB chunks
WRITTEN_CHUNKS = 4
DEFLATE_RATIO = 1100  # the most any compressor Keras uses can reach, with margin
ADDRESS_SPACE = 3 * GiB

READ_IN_A_SMALL_PROCESS = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]), int(sys.argv[2])))
from xframe_bilstm.errors import XFrameError
from xframe_bilstm.keras_files import read_model
try:
    read_model(sys.argv[1])
except XFrameError as error:
    print(json.dumps({"error": type(error).__name__, "message": str(error)}))
else:
    print(json.dumps({"error": None}))
"""


def embedding_config() -> dict[str, Any]:
    """Token ids, an Embedding of VOCABULARY × WIDTH, then an LSTM of 2 units."""
    layers = [
        {
            "class_name": "InputLayer",
            "config": {"name": "ids", "batch_shape": [None, None], "dtype": "int32"},
        },
        {
            "class_name": "Embedding",
            "config": {"name": "embedding", "input_dim": VOCABULARY, "output_dim": WIDTH},
        },
        {"class_name": "LSTM", "config": {"name": "lstm", "units": 2}},
    ]
    return {"class_name": "Sequential", "config": {"name": "sequential", "layers": layers}}


def forge_embedding(group: Any, name: str) -> None:
    """A compressed dataset declaring 5 GiB, with a few chunks of random bytes written."""
    dataset = group.create_dataset(
        name,
        shape=(VOCABULARY, WIDTH),
        dtype="float32",
        chunks=(ROWS_PER_CHUNK, WIDTH),
        compression="gzip",
    )
    rows = WRITTEN_CHUNKS * ROWS_PER_CHUNK
    noise = np.random.default_rng(0).integers(0, 256, (rows, WIDTH * 4), dtype=np.uint8)
    dataset[:rows] = noise.view(np.float32)
    declared = VOCABULARY * WIDTH * 4
    stored = dataset.id.get_storage_size()
    # The premise: only the size cap can refuse this weight, not the ratio check.
    assert declared > 4 * GiB and stored * DEFLATE_RATIO >= declared, (declared, stored)


def lstm_arrays(input_size: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    shapes = [(input_size, 8), (2, 8), (8,)]
    return [rng.standard_normal(shape).astype("float32") for shape in shapes]


def write_forged_h5(path: Path) -> Path:
    """A whole-model .h5 file as Keras 2 writes it, with the forged embedding."""
    with h5py.File(path, "w") as handle:
        handle.attrs["keras_version"] = "2.15.0"
        handle.attrs["model_config"] = json.dumps(embedding_config())
        embedding = handle.create_group("model_weights/embedding")
        forge_embedding(embedding, "embedding/embeddings:0")
        embedding.attrs["weight_names"] = [b"embedding/embeddings:0"]
        lstm = handle.create_group("model_weights/lstm")
        names = ("kernel:0", "recurrent_kernel:0", "bias:0")
        for name, array in zip(names, lstm_arrays(WIDTH)):
            lstm.create_dataset(f"lstm/{name}", data=array)
        lstm.attrs["weight_names"] = [f"lstm/{name}".encode() for name in names]
    return path


def write_forged_keras(path: Path) -> Path:
    """A .keras archive (weights stored, as Keras writes them) with the forged embedding."""
    weights = path.with_suffix(".weights.h5")
    with h5py.File(weights, "w") as handle:
        forge_embedding(handle, "layers/embedding/vars/0")
        for index, array in enumerate(lstm_arrays(WIDTH)):
            handle.create_dataset(f"layers/lstm/cell/vars/{index}", data=array)
    write_keras(path, embedding_config(), weights=weights.read_bytes())
    weights.unlink()
    with zipfile.ZipFile(path) as archive:  # stored, not deflated: the zip checks pass
        assert archive.getinfo("model.weights.h5").compress_type == zipfile.ZIP_STORED
    return path


def read_with_little_memory(path: Path) -> dict[str, Any]:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    result = subprocess.run(
        [sys.executable, "-c", READ_IN_A_SMALL_PROCESS, str(path), str(ADDRESS_SPACE)],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("write", [write_forged_h5, write_forged_keras], ids=["h5", "keras"])
def test_a_weight_declaring_more_than_4_gib_is_refused_by_name(tmp_path: Path, write) -> None:
    path = write(tmp_path / f"forged.{'h5' if write is write_forged_h5 else 'keras'}")
    assert path.stat().st_size < 20_000_000
    result = read_with_little_memory(path)
    assert result["error"] == "WeightShapeError", result
    message = result["message"]
    assert str(path) in message and "layer 'embedding'" in message
    assert f"declares {VOCABULARY * WIDTH * 4} bytes" in message
    assert f"at most {4 * GiB} are read" in message


def test_the_small_process_reads_an_honest_file(tmp_path: Path) -> None:
    # The address-space limit leaves room to read a real model file: a refusal above is
    # the reader's, not the limit's.
    assert read_with_little_memory(write_keras(tmp_path / "honest.keras")) == {"error": None}
