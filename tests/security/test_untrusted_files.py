"""Model files from strangers: nothing in them runs, and every damaged one is refused.

Each test damages one thing in an otherwise valid file (see :mod:`.files`) and checks the
error is an :class:`XFrameError` that names the file and the damage, raised before any
large allocation.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from xframe_bilstm.errors import UnsupportedFeatureError, WeightShapeError, XFrameError
from xframe_bilstm.keras_files import read_model, read_spec
from xframe_bilstm.keras_files.weights import WeightRef

from .files import h5_bytes, lstm_config, lstm_weights, write_h5, write_keras

pytest.importorskip("h5py")


def _refused(path: Path, match: str, error: type[XFrameError] = XFrameError) -> XFrameError:
    with pytest.raises(error, match=match) as caught:
        read_model(path)
    assert str(path) in str(caught.value)
    return caught.value


# ------------------------------------------------------------------ code in Keras files


def _lambda_model(marker: Path, path: Path) -> None:
    """A real Keras 3 archive whose Lambda layer's bytecode creates ``marker`` when run."""
    keras = pytest.importorskip("keras")
    # A lambda (a named function is stored by name; a lambda as marshalled bytecode), with
    # the path as a constant so the bytecode alone does the writing.
    payload = eval(f"lambda x: (open({str(marker)!r}, 'w').write('code ran'), x)[1]")

    model = keras.Sequential(
        [keras.Input((4, 3)), keras.layers.Lambda(payload, name="lambda"), keras.layers.LSTM(2)]
    )
    model.save(path)
    marker.unlink()  # building the model called the function; start clean


@pytest.mark.keras
def test_lambda_bytecode_in_a_keras_file_never_runs(tmp_path: Path, capsys) -> None:
    pytest.importorskip("torch")
    from xframe_bilstm import keras_to_torch, lint
    from xframe_bilstm.cli import main

    marker, path = tmp_path / "pwned", tmp_path / "lambda.keras"
    _lambda_model(marker, path)
    config = json.loads(zipfile.ZipFile(path).read("config.json"))
    assert "__lambda__" in json.dumps(config)  # the bytecode is in the file

    for attempt in (read_model, read_spec, keras_to_torch):
        with pytest.raises(UnsupportedFeatureError, match=r"'lambda' \(Lambda\)"):
            attempt(path)
    assert any(trap.action == "refused" for trap in lint(path))
    assert main(["--keras", str(path), "--frameworks", "torch"]) == 2
    assert "Lambda" in capsys.readouterr().err
    assert not marker.exists()

    # The premise: Keras itself, told to trust the file, does run the code.
    import keras

    keras.saving.load_model(path, safe_mode=False)
    assert marker.exists()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"class_name": "MyAttention", "module": "os", "registered_name": "Custom>MyAttention"},
            "refused: 'MyAttention' names module 'os'",
        ),
        # A built-in class name is no cover: Keras would import the module it names.
        ({"class_name": "Dense", "module": "os"}, "refused: 'Dense' names module 'os'"),
        (
            {"class_name": "Lambda", "config": {"function": {"class_name": "__lambda__"}}},
            "cannot port layer.*'odd' \\(Lambda\\)",
        ),
        (
            {"class_name": "TFOpLambda", "config": {"function": "math.add"}},
            "cannot port layer.*'odd' \\(TFOpLambda\\)",
        ),
    ],
    ids=["custom-object", "builtin-name-foreign-module", "lambda-config", "tf-op-lambda"],
)
def test_layers_that_would_need_code_are_refused_by_name(
    tmp_path: Path, entry: dict, message: str
) -> None:
    config = lstm_config()
    entry = {**entry, "config": {"name": "odd", **entry.get("config", {})}}
    config["config"]["layers"].insert(1, entry)
    error = _refused(write_keras(tmp_path / "m.keras", config), message)
    assert isinstance(error, UnsupportedFeatureError)


# ------------------------------------------------------------------ code in torch files


class _RunsCode:
    """Unpickling calls ``os.mkdir(marker)``: code chosen by whoever wrote the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.torch
@pytest.mark.parametrize("suffix", [".pt", ".bin"])
def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path: Path, suffix: str) -> None:
    torch = pytest.importorskip("torch")
    from xframe_bilstm import compare, torch_to_keras
    from xframe_bilstm.models.from_torch import load_state_dict_module

    marker, path = tmp_path / "pwned", tmp_path / f"evil{suffix}"
    state = {**torch.nn.LSTM(3, 2).state_dict(), "weight_ih_l0": _RunsCode(marker)}
    if suffix == ".pt":
        torch.save(state, path)  # torch's zip format
    else:
        path.write_bytes(pickle.dumps({"weight": _RunsCode(marker)}, protocol=2))  # bare
    assert not marker.exists()
    for attempt in (load_state_dict_module, torch_to_keras, compare):
        with pytest.raises(UnsupportedFeatureError, match=r"refused.*(posix|os)\.mkdir") as caught:
            attempt(path)
        assert str(path) in str(caught.value)
    from xframe_bilstm.cli import main

    assert main(["--torch", str(path)]) == 2  # one line, no traceback
    assert not marker.exists()
    # The premise: a plain unpickler runs it.
    pickle.loads(pickle.dumps(_RunsCode(marker)))
    assert marker.is_dir()


@pytest.mark.torch
@pytest.mark.parametrize(
    ("damage", "match"),
    [
        ("truncate", "not a readable state_dict"),
        ("not-a-dict", "expected a state_dict"),
        ("wrong-shape", r"weight_hh_l0 has shape \(8, 5\)"),
        ("int-weights", "expected floats"),
        ("bad-safetensors", "not a readable state_dict"),
        ("missing", "no such file"),
    ],
)
def test_damaged_torch_files_are_refused(tmp_path: Path, damage: str, match: str) -> None:
    torch = pytest.importorskip("torch")
    from xframe_bilstm.models.from_torch import load_state_dict_module

    state = torch.nn.LSTM(3, 2).state_dict()
    path = tmp_path / ("m.safetensors" if damage == "bad-safetensors" else "m.pt")
    if damage == "truncate":
        torch.save(state, path)
        path.write_bytes(path.read_bytes()[:300])
    elif damage == "not-a-dict":
        torch.save([torch.zeros(2)], path)
    elif damage == "wrong-shape":
        torch.save({**state, "weight_hh_l0": torch.zeros(8, 5)}, path)
    elif damage == "int-weights":
        torch.save({**state, "bias_ih_l0": torch.zeros(8, dtype=torch.int64)}, path)
    elif damage == "bad-safetensors":
        # A header that declares a size far past the end of the file.
        path.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    with pytest.raises(XFrameError, match=match) as caught:
        load_state_dict_module(path)
    assert str(path) in str(caught.value)


# ------------------------------------------------------------------ damaged Keras files


def test_truncated_keras_archive_is_refused(tmp_path: Path) -> None:
    path = write_keras(tmp_path / "m.keras")
    path.write_bytes(path.read_bytes()[:-200])
    _refused(path, "not a zip archive|damaged|truncated")


def test_truncated_weights_inside_a_keras_archive_are_refused(tmp_path: Path) -> None:
    whole = h5_bytes(lstm_weights())
    path = write_keras(tmp_path / "m.keras", weights=whole[: len(whole) // 2])
    _refused(path, "damaged|truncated")


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_config_that_is_not_json_is_refused(tmp_path: Path, fmt: str) -> None:
    text = '{"class_name": "Sequential", "config": {'
    if fmt == "keras":
        path = write_keras(tmp_path / "m.keras", text)
    else:
        import h5py

        path = write_h5(tmp_path / "m.h5")
        with h5py.File(path, "a") as handle:
            handle.attrs["model_config"] = text
    _refused(path, "not JSON")


def test_config_nested_past_any_parser_is_refused(tmp_path: Path) -> None:
    _refused(write_keras(tmp_path / "m.keras", "[" * 100_000 + "]" * 100_000), "damaged|JSON")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"units": "two"}, "damaged"),
        ({"units": -3}, r"implies \(3, -12\)"),
        ({"units": None}, "damaged"),
    ],
)
def test_config_values_that_lie_are_refused(tmp_path: Path, change: dict, match: str) -> None:
    config = lstm_config()
    config["config"]["layers"][1]["config"].update(change)
    _refused(write_keras(tmp_path / "m.keras", config), match)


def test_config_without_units_is_refused(tmp_path: Path) -> None:
    config = lstm_config()
    del config["config"]["layers"][1]["config"]["units"]
    _refused(write_keras(tmp_path / "m.keras", config), "damaged.*units")


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_missing_weight_is_refused(tmp_path: Path, fmt: str) -> None:
    if fmt == "keras":
        weights = lstm_weights()
        del weights["layers/lstm/cell/vars/1"]
        path = write_keras(tmp_path / "m.keras", weights=h5_bytes(weights))
        _refused(path, r"holds \['0', '2'\]", WeightShapeError)
    else:
        path = write_h5(tmp_path / "m.h5", layer={"recurrent_kernel:0": None})
        _refused(path, "not a dataset", WeightShapeError)


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_weight_of_a_shape_the_config_does_not_imply_is_refused(tmp_path: Path, fmt: str) -> None:
    if fmt == "keras":
        weights = {**lstm_weights(), "layers/lstm/cell/vars/1": np.zeros((5, 8), "float32")}
        path = write_keras(tmp_path / "m.keras", weights=h5_bytes(weights))
    else:
        path = write_h5(tmp_path / "m.h5", layer={"recurrent_kernel:0": np.zeros((5, 8), "f4")})
    _refused(path, r"shape \(5, 8\); its configuration implies \(2, 8\)", WeightShapeError)


@pytest.mark.parametrize("dtype", ["int32", "S4", "complex64"])
def test_weights_that_are_not_floats_are_refused(tmp_path: Path, dtype: str) -> None:
    weights = lstm_weights()
    weights["layers/lstm/cell/vars/0"] = np.zeros((3, 8), dtype)
    path = write_keras(tmp_path / "m.keras", weights=h5_bytes(weights))
    _refused(path, "expected floats", WeightShapeError)


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_absurd_declared_weight_is_refused_before_it_is_read(
    tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2 billion units: the file declares an (2e9, 8e9) kernel of 64 exabytes in a few
    # kilobytes (HDF5 never writes the chunks). Reading it would allocate it.
    units = 2_000_000_000
    config = lstm_config(units=units)
    shapes = [(3, 4 * units), (units, 4 * units), (4 * units,)]
    reads: list[str] = []
    monkeypatch.setattr(
        WeightRef, "read", lambda self, *a: reads.append(self.name) or WeightRef.check(self, *a)
    )
    if fmt == "keras":
        huge = {f"layers/lstm/cell/vars/{index}": shape for index, shape in enumerate(shapes)}
        path = write_keras(tmp_path / "m.keras", config, weights=h5_bytes({}, huge=huge))
    else:
        layer = dict(zip(("kernel:0", "recurrent_kernel:0", "bias:0"), shapes))
        path = write_h5(tmp_path / "m.h5", config, layer=layer)
    assert path.stat().st_size < 1_000_000
    _refused(path, "declares .* bytes", WeightShapeError)


def test_declared_size_not_backed_by_the_file_is_refused(tmp_path: Path) -> None:
    # A small weight whose chunks were never written: a forged or truncated file.
    import h5py

    buffer = tmp_path / "w.h5"
    with h5py.File(buffer, "w") as handle:
        for name, array in lstm_weights().items():
            if name.endswith("/1"):
                handle.create_dataset(name, shape=array.shape, dtype="f4", chunks=(1, 1))
            else:
                handle.create_dataset(name, data=array)
    path = write_keras(tmp_path / "m.keras", weights=buffer.read_bytes())
    _refused(path, "but the file holds 0 for it", WeightShapeError)


@pytest.mark.parametrize(
    "name", ["../outside.txt", "/etc/passwd", "a\\..\\b", "C:/evil", "x/../../y"]
)
def test_member_outside_the_archive_is_refused(tmp_path: Path, name: str) -> None:
    path = write_keras(tmp_path / "m.keras", extra={name: b"x"})
    _refused(path, "unsafe member name")
    assert not (tmp_path / "outside.txt").exists()


def test_zip_bomb_is_refused_before_it_is_unpacked(tmp_path: Path) -> None:
    # 100 MB of zeros packs into about 100 KB (a real ratio); the entry's declared size is
    # then forged to 4 GB, past any ratio a compressor reaches.
    path = tmp_path / "bomb.keras"
    write_keras(path, extra={"assets/zeros": b"\0" * 100_000_000}, compression=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 1_000_000
    read_model(path)  # an honest ratio is read
    data = bytearray(path.read_bytes())
    start = 0
    while True:  # the bomb's central directory record; its uncompressed size is at +24
        start = data.find(b"PK\x01\x02", start)
        name_length = int.from_bytes(data[start + 28 : start + 30], "little")
        if data[start + 46 : start + 46 + name_length] == b"assets/zeros":
            break
        start += 4
    data[start + 24 : start + 28] = (2**32 - 2).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    error = _refused(path, "no compressor reaches that ratio")
    assert "assets/zeros" in str(error)


def test_oversized_config_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = write_keras(
        tmp_path / "m.keras",
        '{"pad": "' + " " * (65 * 1024 * 1024) + '"}',
        compression=zipfile.ZIP_DEFLATED,
    )
    _refused(path, "config.json declares .* bytes; a configuration is at most")


@pytest.mark.parametrize(
    "content", [b"", b"PK\x03\x04 truncated", b"\x89HDF\r\n\x1a\n broken", b"plain text"]
)
def test_files_that_are_no_model_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "m.keras"
    path.write_bytes(content)
    for attempt in (read_model, read_spec):
        with pytest.raises(UnsupportedFeatureError) as caught:
            attempt(path)
        assert str(path) in str(caught.value)


def test_missing_file_is_refused_with_its_path(tmp_path: Path) -> None:
    _refused(tmp_path / "absent.keras", "cannot read the file")
