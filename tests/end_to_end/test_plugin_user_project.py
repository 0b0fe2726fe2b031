"""The plugin as a user meets it: a project of its own (a saved Keras model, a hand-written
PyTorch port, a test file) run by pytest in a subprocess, once with a faithful port and once
with one that copies the Keras bias into both torch biases."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

pytestmark = [pytest.mark.keras, pytest.mark.torch]

PORT = textwrap.dedent(
    '''
    """A hand-written PyTorch port of model.keras, from the weights exported to weights.npz."""
    from pathlib import Path

    import numpy as np
    import torch


    def load_port():
        weights = np.load(Path(__file__).with_name("weights.npz"))
        lstm = torch.nn.LSTM(3, 4, batch_first=True, bidirectional=True)
        with torch.no_grad():
            for suffix, side in (("", "forward"), ("_reverse", "backward")):
                # Keras kernels are (inputs, 4·units) with gates i,f,c,o; torch's i,f,g,o rows.
                kernel = torch.from_numpy(weights[side + "_kernel"].T)
                recurrent = torch.from_numpy(weights[side + "_recurrent"].T)
                bias = torch.from_numpy(weights[side + "_bias"])
                getattr(lstm, "weight_ih_l0" + suffix).copy_(kernel)
                getattr(lstm, "weight_hh_l0" + suffix).copy_(recurrent)
                getattr(lstm, "bias_ih_l0" + suffix).copy_(bias)
                getattr(lstm, "bias_hh_l0" + suffix).zero_()  # Keras has one bias
        return lstm
    '''
)
# The classic porting bug: torch adds both biases, so copying Keras's into each doubles it.
BROKEN_PORT = PORT.replace(
    '"bias_hh_l0" + suffix).zero_()  # Keras has one bias',
    '"bias_hh_l0" + suffix).copy_(bias)',
)
assert BROKEN_PORT != PORT
TEST = textwrap.dedent(
    """
    from pathlib import Path

    import pytest
    from port import load_port

    from xframe_bilstm.testing import assert_equivalent

    MODEL = Path(__file__).with_name("model.keras")


    def test_port_matches_the_keras_model(xframe_seeded_inputs):
        x = xframe_seeded_inputs(2, 12, 3)
        assert_equivalent(MODEL, load_port(), inputs=x)


    @pytest.mark.keras
    def test_needs_keras():
        pass


    @pytest.mark.slow
    def test_takes_long():
        pass
    """
)
NODE_ID = "test_port.py::test_port_matches_the_keras_model"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, keras.Model]:
    """A user's project: model.keras, its weights as arrays, test_port.py (no port.py yet)."""
    directory = tmp_path_factory.mktemp("user_project")
    model = keras.Sequential(
        [
            keras.Input((None, 3)),
            keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True)),
        ]
    )
    rng = np.random.default_rng(3)
    arrays = {}
    for side, half in (
        ("forward", model.layers[0].forward_layer),
        ("backward", model.layers[0].backward_layer),
    ):
        weights = [rng.uniform(-0.6, 0.6, w.shape).astype(np.float32) for w in half.get_weights()]
        half.set_weights(weights)
        for name, array in zip(("kernel", "recurrent", "bias"), weights):
            arrays[f"{side}_{name}"] = array
    model.save(directory / "model.keras")
    np.savez(directory / "weights.npz", **arrays)
    (directory / "test_port.py").write_text(TEST)
    (directory / "pytest.ini").write_text("[pytest]\n")  # its own rootdir, not ours
    return directory, model


def _pytest(directory: Path, port: str) -> subprocess.CompletedProcess[str]:
    (directory / "port.py").write_text(port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs"]
    command += ["--rootdir", str(directory), "--xframe-frameworks=torch", "test_port.py"]
    return subprocess.run(
        command, cwd=directory, env=env, capture_output=True, text=True, timeout=120
    )


def test_a_faithful_port_passes(project) -> None:
    result = _pytest(project[0], PORT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 2 skipped" in result.stdout
    assert "keras not selected by --xframe-frameworks=torch" in result.stdout
    assert "slow: run with --xframe-slow or -m slow" in result.stdout


def test_a_broken_port_fails_readably(project) -> None:
    directory, model = project
    result = _pytest(directory, BROKEN_PORT)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "1 failed, 2 skipped" in out
    headline = re.search(
        r"AssertionError: not equivalent: torch\[cpu,float32\]@against vs reference\[cpu,float64\]"
        r": max abs error ([0-9.e+-]+) at output\[\d+, \d+, \d+\], tolerance ([0-9.e+-]+)",
        out,
    )
    assert headline, out
    # The error it reports is the one Keras itself and the broken port give on that input.
    generator = np.random.default_rng(zlib.crc32(NODE_ID.encode()))
    x = generator.standard_normal((2, 12, 3)).astype(np.float32)
    namespace: dict = {"__file__": str(directory / "port.py")}
    exec(BROKEN_PORT, namespace)
    with torch.no_grad():
        ported = namespace["load_port"]()(torch.from_numpy(x))[0].numpy()
    difference = np.abs(ported.astype(np.float64) - np.asarray(model(x), np.float64)).max()
    assert float(headline.group(1)) == pytest.approx(difference, rel=0.05)
    assert float(headline.group(2)) < 1e-5
    assert "diagnosis: bias_double_counted: " in out
    assert "by direction: forward" in out and "worst per time step, output.backward:" in out
    # The traceback ends in the user's test: none of the helper's own code is shown.
    assert "__tracebackhide__" not in out and "def assert_equivalent" not in out
    assert "xframe_bilstm/testing.py" not in out and "_diagnosis_line" not in out
