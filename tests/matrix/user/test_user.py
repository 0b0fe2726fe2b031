"""``python -m xframe_bilstm matrix --config FILE``: a user's own models, end to end.

The project folder holds what a user would commit: a Keras tagger (Embedding with
``mask_zero``, a bidirectional LSTM, Dense) saved as ``.keras``; the user's own PyTorch
port of it, written by hand (packed sequences) with its weights in a state_dict file and a
factory in ``tagger_models.py``; a torch ``nn.LSTM`` saved as a state_dict; and the TOML
file. The injected changes move the port's Dense bias of one class by a known amount, so
the error the ratchet sees is that amount: the port's outputs for that class move by it at
every step, padded or not.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm.cli.matrix import matrix_main  # noqa: E402
from xframe_bilstm.matrix.ratchet import version_key  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

VOCABULARY, FEATURES, UNITS, CLASSES = 50, 8, 6, 5
PORT_CELL = "tagger-port-tokens-float32"
PORT_RUN = "torch[cpu,float32]@against"

TAGGER_MODELS = '''
"""The user's own PyTorch port of the Keras tagger."""
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).parent


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(50, 8)
        self.lstm = nn.LSTM(8, 6, batch_first=True, bidirectional=True)
        self.dense = nn.Linear(12, 5)

    def forward(self, ids):
        lengths = (ids != 0).sum(1).cpu()  # id 0 pads, as Embedding(mask_zero=True) reads it
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embedding(ids), lengths, batch_first=True, enforce_sorted=False
        )
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(
            out, batch_first=True, total_length=ids.shape[1]
        )
        return self.dense(out)


def build_tagger():
    model = Tagger()
    state = torch.load(HERE / "models" / "tagger_port.pt", weights_only=True)
    model.load_state_dict(state)
    return model.eval()
'''

MATRIX = """
[matrix]
name = "tagger"
description = "the tagger, its port and the encoder"
baselines = "ci/baselines"
frameworks = ["torch", "keras"]
devices = ["cpu"]
dtypes = ["float32"]

[[sources]]
name = "tagger-keras"
file = "models/tagger.keras"
inputs = ["tokens"]
dtypes = ["float32", "float64"]

[[sources]]
name = "tagger-port"
factory = "tagger_models:build_tagger"
against = "tagger-keras"
frameworks = []   # the port against the reference only
inputs = ["tokens"]

[[sources]]
name = "encoder"
file = "models/encoder.pt"
inputs = ["features"]

[[inputs]]
name = "tokens"
batch = 4
steps = 10
dtype = "int32"
low = 1
high = 50
lengths = [10, 4, 1, 9]

[[inputs]]
name = "features"
batch = 3
steps = 6
dtype = "float32"
features = 4
lengths = [6, 2, 5]
"""

CELLS = [
    "tagger-keras-tokens-float32",
    "tagger-keras-tokens-float64",
    PORT_CELL,
    "encoder-features-float32",
]


def _port_state(model) -> dict:
    """The Keras tagger's weights in the hand port's layout (same gate order i, f, c, o)."""
    emb, fk, fr, fb, bk, br, bb, dk, db = model.get_weights()
    state = {"embedding.weight": emb, "dense.weight": dk.T, "dense.bias": db}
    for suffix, (kernel, recurrent, bias) in (("", (fk, fr, fb)), ("_reverse", (bk, br, bb))):
        state[f"lstm.weight_ih_l0{suffix}"] = kernel.T
        state[f"lstm.weight_hh_l0{suffix}"] = recurrent.T
        state[f"lstm.bias_ih_l0{suffix}"] = bias
        state[f"lstm.bias_hh_l0{suffix}"] = np.zeros_like(bias)
    return {name: torch.from_numpy(np.ascontiguousarray(v)) for name, v in state.items()}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    (root / "models").mkdir()
    keras.utils.set_random_seed(1)
    tagger = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(VOCABULARY, FEATURES, mask_zero=True),
            keras.layers.Bidirectional(keras.layers.LSTM(UNITS, return_sequences=True)),
            keras.layers.Dense(CLASSES),
        ]
    )
    tagger.save(root / "models" / "tagger.keras")
    torch.save(_port_state(tagger), root / "models" / "tagger_port.pt")
    torch.manual_seed(0)
    encoder = torch.nn.LSTM(4, 5, batch_first=True, bidirectional=True)
    torch.save(encoder.state_dict(), root / "models" / "encoder.pt")
    (root / "tagger_models.py").write_text(textwrap.dedent(TAGGER_MODELS))
    (root / "matrix.toml").write_text(MATRIX)

    # The hand port is right (an independent check, Keras against torch, before any of
    # ours): otherwise the matrix would be judging a broken fixture.
    spec = importlib.util.spec_from_file_location("tagger_models_check", root / "tagger_models.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ids = np.random.default_rng(0).integers(1, VOCABULARY, (4, 10))
    ids[np.arange(10)[None, :] >= np.array([10, 4, 1, 9])[:, None]] = 0
    with torch.no_grad():
        ported = module.build_tagger()(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(ported, tagger(ids).numpy(), rtol=0, atol=1e-6)
    return root


@pytest.fixture(scope="module")
def baselined(project: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The first run, which records the baseline: its JSON record and what it printed."""
    out = tmp_path_factory.mktemp("records")
    records, junit = out / "cells.json", out / "cells.xml"
    argv = ["--config", str(project / "matrix.toml"), "--update-baselines"]
    status = matrix_main([*argv, "--json", str(records), "--junit", str(junit)])
    return {"status": status, "json": json.loads(records.read_text()), "junit": junit}


@contextlib.contextmanager
def port_bias_moved(project: Path, delta: float) -> Iterator[None]:
    """The port's saved Dense bias of class 0 moved by ``delta``; put back afterwards."""
    path = project / "models" / "tagger_port.pt"
    saved = path.read_bytes()
    state = torch.load(path, weights_only=True)
    state["dense.bias"][0] += delta
    torch.save(state, path)
    try:
        yield
    finally:
        path.write_bytes(saved)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = matrix_main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_the_first_run_records_every_cell_and_the_baseline(project: Path, baselined) -> None:
    assert baselined["status"] == 0
    data = baselined["json"]
    assert data["lane"] == "tagger" and data["passed"] is True
    assert data["description"] == "the tagger, its port and the encoder"
    assert [cell["id"] for cell in data["cells"]] == CELLS
    by_id = {cell["id"]: cell for cell in data["cells"]}

    whole = by_id["tagger-keras-tokens-float32"]
    # Keras runs the model rebuilt from its reading, and the file as loaded: the original.
    assert set(whole["max_errors"]) == {
        "torch[cpu,float32]",
        "keras[cpu,float32]",
        "keras[cpu,float32]@original",
    }
    assert whole["config"]["inputs"][0]["lengths"] == [10, 4, 1, 9]
    # float64: the torch port and the model rebuilt in Keras; the file as Keras loads it
    # computes in its own float32.
    wide = by_id["tagger-keras-tokens-float64"]
    assert wide["frameworks"] == ["torch", "keras"] and not wide["excluded"]
    assert 0 <= wide["max_errors"]["torch[cpu,float64]"] < 1e-13
    assert 0 <= wide["max_errors"]["keras[cpu,float64]"] < 1e-13
    port = by_id[PORT_CELL]
    assert port["config"]["against"] == "tagger-keras"
    assert set(port["max_errors"]) == {PORT_RUN}
    encoder = by_id["encoder-features-float32"]
    # A state_dict file also runs as the module it holds, labelled @original.
    assert set(encoder["max_errors"]) == {
        "torch[cpu,float32]",
        "keras[cpu,float32]",
        "torch[cpu,float32]@original",
    }
    for cell in data["cells"]:
        assert cell["errors"] == [] and cell["drift"] == []
        assert all(pair["max_abs_error"] < pair["tolerance"] for pair in cell["pairs"])

    suite = ElementTree.parse(baselined["junit"]).getroot()
    assert suite.get("tests") == "4" and suite.get("failures") == "0"
    assert [case.get("name") for case in suite] == CELLS

    key = version_key(data["versions"])
    written = json.loads((project / "ci" / "baselines" / "tagger" / f"{key}.json").read_text())
    assert written["lane"] == "tagger" and written["ratchet"] == 4.0
    assert sorted(written["cells"]) == sorted(CELLS)
    assert written["cells"][PORT_CELL] == {PORT_RUN: port["max_errors"][PORT_RUN]}


def test_a_clean_rerun_passes_with_the_ratchet_on(
    project: Path, baselined, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import xframe_bilstm.keras_files as keras_files

    reads: list[str] = []
    read_model = keras_files.read_model

    def counting(path: str):
        reads.append(path)
        return read_model(path)

    monkeypatch.setattr(keras_files, "read_model", counting)
    status, out, _ = run(capsys, "--config", str(project / "matrix.toml"))
    assert status == 0, out
    assert "matrix tagger 1/1: 4 cells, 4 passed, 0 failed, 0 drifted; baseline " in out
    assert "(4 cells, ratchet 4x)" in out
    # Each of the three cells of the Keras file (two dtypes, and the port's original) reads
    # it once: planning and compare() take what the cell read.
    assert len(reads) == 3


def _window(baselined: dict) -> tuple[float, float]:
    """The port run's ratchet limit and tolerance, as the baseline run measured them."""
    (cell,) = [c for c in baselined["json"]["cells"] if c["id"] == PORT_CELL]
    limit = 4.0 * max(cell["max_errors"][PORT_RUN], cell["reference_drift"][PORT_RUN])
    (pair,) = cell["pairs"]
    return limit, pair["tolerance"]


def test_a_port_moved_past_the_ratchet_drifts_end_to_end(
    project: Path, baselined, tmp_path: Path
) -> None:
    """A real ``python -m xframe_bilstm`` in two worker processes (spawned: each re-imports
    the factory) fails on the moved port alone, and says by how much."""
    limit, tolerance = _window(baselined)
    assert limit * 1.5 < tolerance, "no room between the ratchet and the tolerance"
    delta = math.sqrt(limit * tolerance)
    junit = tmp_path / "cells.xml"
    command = [sys.executable, "-m", "xframe_bilstm", "matrix"]
    command += ["--config", str(project / "matrix.toml"), "--jobs", "2", "--junit", str(junit)]
    with port_bias_moved(project, delta):
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,  # the factory is found from the matrix file's folder, not from here
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    (drift,) = [line for line in lines if line.startswith("DRIFT | ")]
    assert drift.startswith(f"DRIFT | {PORT_CELL} | {PORT_RUN}: max error ")
    assert "the ratchet allows 4x" in drift
    # The error is the moved bias, up to the port's own float32 error.
    error = float(drift.split("max error ")[1].split()[0])
    assert error == pytest.approx(delta, rel=0.05)
    assert not [line for line in lines if line.startswith("FAILED | ")]
    assert "4 cells, 3 passed, 0 failed, 1 drifted" in result.stdout
    failed = [case for case in ElementTree.parse(junit).getroot() if len(case)]
    assert [case.get("name") for case in failed] == [PORT_CELL]


def test_a_port_moved_past_the_tolerance_fails(project: Path, baselined, capsys) -> None:
    _, tolerance = _window(baselined)
    with port_bias_moved(project, 20 * tolerance):
        status, out, _ = run(capsys, "--config", str(project / "matrix.toml"))
    assert status == 1
    failed = [line for line in out.splitlines() if line.startswith("FAILED | ")]
    assert len(failed) == 1
    assert failed[0].startswith(f"FAILED | {PORT_CELL} | {PORT_RUN} vs reference[cpu,float64]")
    assert "4 cells, 3 passed, 1 failed, 0 drifted" in out


def test_listing_and_shards_need_no_framework(project: Path, capsys) -> None:
    config = str(project / "matrix.toml")
    assert run(capsys, "--config", config, "--list")[1].split() == CELLS
    parts = [
        run(capsys, "--config", config, "--list", "--shard", f"{k}/2")[1].split() for k in (1, 2)
    ]
    assert sorted(parts[0] + parts[1]) == sorted(CELLS) and all(parts)


def test_lane_and_config_exclude_each_other(project: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        matrix_main(["--lane", "default", "--config", str(project / "matrix.toml")])
    assert exited.value.code == 2
    assert "--lane and --config exclude each other" in capsys.readouterr().err


def test_a_factory_that_cannot_be_imported_fails_its_own_cells(
    project: Path, tmp_path: Path, capsys
) -> None:
    config = tmp_path / "matrix.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [matrix]
            name = "broken"
            frameworks = ["torch"]
            [[sources]]
            name = "missing"
            factory = "no_such_module_here:build"
            inputs = ["x"]
            [[sources]]
            name = "encoder"
            file = "{(project / "models" / "encoder.pt").as_posix()}"
            inputs = ["x"]
            [[inputs]]
            name = "x"
            batch = 2
            steps = 3
            dtype = "float64"
            features = 4
            """
        )
    )
    status, out, _ = run(capsys, "--config", str(config), "--baselines", str(tmp_path))
    assert status == 1
    (failed,) = [line for line in out.splitlines() if line.startswith("FAILED | ")]
    assert failed.startswith("FAILED | missing-x-float32 | SourceError: source 'missing': ")
    assert "cannot import no_such_module_here (ModuleNotFoundError" in failed
    assert "2 cells, 1 passed, 1 failed" in out  # the other source still ran


BASE = """
[matrix]
name = "m"
{matrix}
[[sources]]
name = "s"
file = "model.keras"
inputs = ["x"]
{source}
[[inputs]]
name = "x"
batch = 2
steps = 3
dtype = "float32"
features = 2
{inputs}
"""


@pytest.mark.parametrize(
    ("matrix", "source", "inputs", "message"),
    [
        ('colour = "blue"', "", "", "matrix: unknown keys ['colour']"),
        ("", "", "lengths = [3, 4]", "inputs[x].lengths: expected a list of integers in 1..3"),
        ("", "", "low = 1", "inputs[x].low: does not apply to float features"),
        ('frameworks = ["torch", "tensorflow"]', "", "", "matrix.frameworks: ['tensorflow']"),
        ('dtypes = ["float8"]', "", "", "matrix.dtypes: ['float8'] not among"),
        ("rtol = 1e-5", "", "", "matrix.rtol: give both rtol and atol, or neither"),
        ("", 'against = "t"', "", "sources[s].against: 't' is not another source"),
        ("", 'against = "s"', "", "sources[s].against: 's' is not another source"),
        ("[matrix.extra]", "", "", "matrix: unknown keys ['extra']"),
        ("", "", "pad = 1.5\n[[inputs]]\nname = 'x'", "inputs[1].batch: missing"),
        ("", "rtol = 0.1\natol = -1", "", "sources[s].atol: expected a number >= 0, got -1"),
    ],
)
def test_config_errors_name_the_key(
    tmp_path: Path, capsys, matrix: str, source: str, inputs: str, message: str
) -> None:
    (tmp_path / "model.keras").write_bytes(b"")
    config = tmp_path / "matrix.toml"
    config.write_text(BASE.format(matrix=matrix, source=source, inputs=inputs))
    status, out, err = run(capsys, "--config", str(config))
    assert status == 2, out
    assert err.startswith(f"error: {config.resolve()}: ")
    assert message in err


@pytest.mark.parametrize(
    ("replace", "by", "message"),
    [
        ('file = "model.keras"', 'file = "missing.keras"', "sources[s].file: no such file: "),
        ('file = "model.keras"', 'factory = "pkg.models"', 'sources[s].factory: expected "package'),
        ('inputs = ["x"]', 'inputs = ["y"]', "sources[s].inputs: ['y'] not among the [[inputs]]"),
        ('name = "m"', 'name = "a b"', "matrix.name: expected a name of letters"),
        ('dtype = "float32"', 'dtype = "int32"', "inputs[x].features: does not apply to integer"),
        ("[[inputs]]", "[[inputs]\n", "not valid TOML"),
    ],
)
def test_config_errors_in_values(
    tmp_path: Path, capsys, replace: str, by: str, message: str
) -> None:
    (tmp_path / "model.keras").write_bytes(b"")
    config = tmp_path / "matrix.toml"
    text = BASE.format(matrix="", source="", inputs="")
    assert replace in text
    config.write_text(text.replace(replace, by, 1))
    status, _, err = run(capsys, "--config", str(config))
    assert status == 2
    assert message in err, err


PATHS_MATRIX = """
[matrix]
name = "paths"
baselines = "ci/baselines"
frameworks = ["torch", "keras"]
paths = ["mkldnn-off", "onednn-off"]

[[sources]]
name = "encoder"
file = "models/encoder.pt"
inputs = ["features"]

[[sources]]
name = "tagger"
file = "models/tagger.keras"
inputs = ["tokens"]
paths = ["mkldnn-off"]

[[sources]]
name = "tagger-unrolled"
file = "models/tagger.keras"
inputs = ["tokens"]
paths = ["unroll"]

[[inputs]]
name = "tokens"
batch = 4
steps = 10
dtype = "int32"
high = 50
lengths = [10, 4, 1, 9]

[[inputs]]
name = "features"
batch = 3
steps = 6
dtype = "float32"
features = 4
"""


def test_kernel_paths_run_as_their_own_runs_in_a_user_matrix(
    project: Path, tmp_path: Path, capsys
) -> None:
    config = project / "paths.toml"
    config.write_text(PATHS_MATRIX)
    records = tmp_path / "cells.json"
    status, _, _ = run(capsys, "--config", str(config), "--json", str(records))
    cells = {cell["id"]: cell for cell in json.loads(records.read_text())["cells"]}
    encoder = cells["encoder-features-float32"]
    assert encoder["passed"], encoder["errors"]
    assert {
        "torch[cpu,float32,mkldnn-off]",
        "keras[cpu,float32,onednn-off]",
    } <= set(encoder["max_errors"])
    tagger = cells["tagger-tokens-float32"]
    assert tagger["passed"], tagger["errors"]
    assert "torch[cpu,float32,mkldnn-off]" in tagger["max_errors"]
    runs = {run["label"]: run for run in encoder["runs"]}
    assert runs["torch[cpu,float32,mkldnn-off]"]["kernel"].startswith("ATen loop")
    assert runs["keras[cpu,float32,onednn-off]"]["kernel"].startswith("oneDNN off")
    if torch.backends.mkldnn.is_available():
        assert runs["torch[cpu,float32]"]["kernel"] == "oneDNN (mkldnn) LSTM"
    # Unrolled, Keras zeroes valid backward outputs of the masked Bidirectional (a Keras
    # bug): the rebuilt model's unroll run is refused, naming the layer.
    (error,) = cells["tagger-unrolled-tokens-float32"]["errors"]
    assert "keras[cpu,float32,unroll]" in error and "unroll=True with a mask" in error
    assert status == 1
