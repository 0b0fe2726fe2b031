"""``assert_equivalent``: passes a faithful port, and fails a broken one with the report's
numbers, the diagnosis and a traceback that ends in the test, not in the helper."""

from __future__ import annotations

import re
import subprocess
import sys
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xframe_bilstm import testing  # noqa: E402
from xframe_bilstm.testing import Selection, assert_equivalent  # noqa: E402

pytestmark = pytest.mark.torch

STEPS = 9


def _gru(seed: int) -> torch.nn.GRU:
    torch.manual_seed(seed)
    module = torch.nn.GRU(3, 4, batch_first=True)
    with torch.no_grad():  # biases large enough that a misplaced one shows
        for name, parameter in module.named_parameters():
            if name.startswith("bias"):
                parameter.uniform_(-0.5, 0.5)
    return module


def _copy(module: torch.nn.GRU, *, swap_r_z: bool = False) -> torch.nn.GRU:
    """A port of ``module``; with ``swap_r_z`` its r and z gate blocks are exchanged."""
    port = torch.nn.GRU(3, 4, batch_first=True)
    port.load_state_dict(module.state_dict())
    if swap_r_z:
        with torch.no_grad():
            for parameter in port.parameters():
                r, z, n = parameter.data.chunk(3)
                parameter.copy_(torch.cat([z, r, n]))
    return port


def _run(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x))[0].double().numpy()


def _number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in:\n{text}"
    return float(found.group(1))


@pytest.fixture
def x(xframe_seeded_inputs) -> np.ndarray:
    return xframe_seeded_inputs(2, STEPS, 3)


def test_a_faithful_port_passes_on_every_framework_asked(x) -> None:
    expected = _gru(0)
    report = assert_equivalent(expected, _copy(expected), inputs=x, frameworks=["torch"])
    assert report and {pair.label for pair in report.pairs} >= {
        "torch[cpu,float32]@against vs reference[cpu,float64]",
        "torch[cpu,float32]@against vs torch[cpu,float32]",
    }


def test_swapped_gates_fail_with_the_numbers_and_the_cause(x) -> None:
    expected, broken = _gru(1), _copy(_gru(1), swap_r_z=True)
    with pytest.raises(AssertionError) as raised:
        assert_equivalent(expected, broken, inputs=x, frameworks=["torch"])
    message = str(raised.value)
    headline = message.splitlines()[0]
    assert headline.startswith(
        "not equivalent: torch[cpu,float32]@against vs reference[cpu,float64]: max abs error"
    )
    # The numbers are the ones torch itself gives for the two modules.
    difference = np.abs(_run(broken, x) - _run(expected, x))
    error = _number(r"max abs error ([0-9.e+-]+) at", headline)
    assert error == pytest.approx(difference.max(), rel=0.05)
    tolerance = _number(r"tolerance ([0-9.e+-]+)", headline)
    assert 0 < tolerance < 1e-5 < error
    assert "diagnosis: gate_order: " in message and "z,r,h read as r,z,h" in message
    per_step = re.search(r"worst per time step, output: (.*)", message)
    assert per_step, message
    steps = [float(value) for value in per_step.group(1).split()]
    assert len(steps) == STEPS
    np.testing.assert_allclose(steps, difference.max(axis=(0, 2)), rtol=0.05, atol=1e-6)
    assert "FAILED | torch[cpu,float32]@against vs torch[cpu,float32]" in message
    assert "PASSED | torch[cpu,float32] vs reference[cpu,float64]" in message


def test_the_traceback_ends_in_the_test(x) -> None:
    with pytest.raises(AssertionError) as raised:
        assert_equivalent(_gru(2), _copy(_gru(2), swap_r_z=True), inputs=x, frameworks=["torch"])
    shown = raised.traceback.filter(raised)
    assert shown[-1].frame.code.name == "test_the_traceback_ends_in_the_test"
    assert not [entry for entry in shown if entry.path == testing.__file__]


def test_a_failing_diagnosis_leaves_the_comparison_failure_intact(x, monkeypatch) -> None:
    def broken_diagnose(*args, **kwargs):
        raise RuntimeError("diagnosis broke")

    monkeypatch.setattr(testing, "diagnose", broken_diagnose)
    with pytest.raises(AssertionError, match=r"^not equivalent: .*max abs error") as raised:
        assert_equivalent(_gru(3), _copy(_gru(3), swap_r_z=True), inputs=x, frameworks=["torch"])
    assert "diagnosis: none (RuntimeError: diagnosis broke)" in str(raised.value)


def test_the_selection_is_the_default_frameworks(x, monkeypatch) -> None:
    monkeypatch.setattr(testing, "SELECTION", Selection(frameworks=("torch",), devices=("cpu",)))
    report = assert_equivalent(_gru(4), _copy(_gru(4)), inputs=x)
    assert {run.label for run in report.runs} == {
        "reference[cpu,float64]",
        "torch[cpu,float32]",
        "torch[cpu,float32]@against",
        "torch[cpu,float32]@original",
    }


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN here")
def test_the_selected_kernel_paths_run_too(x, monkeypatch) -> None:
    selection = Selection(frameworks=("torch",), devices=("cpu",), paths=("mkldnn-off",))
    monkeypatch.setattr(testing, "SELECTION", selection)
    report = assert_equivalent(_gru(5), _copy(_gru(5)), inputs=x)
    assert "torch[cpu,float32,mkldnn-off]" in {run.label for run in report.runs}


class _Shifted(torch.nn.Module):
    """A custom module (no canonical form): the GRU's output plus ``shift``."""

    def __init__(self, gru: torch.nn.GRU, shift: float) -> None:
        super().__init__()
        self.gru, self.shift = gru, shift

    def forward(self, x):
        output, h = self.gru(x)
        return output + self.shift, h[0]  # Keras's order and shapes: output, then h (B, H)


def test_a_custom_module_is_judged_by_diagnose(x) -> None:
    gru = _gru(5)
    assert assert_equivalent(gru, _Shifted(_copy(gru), 0.0), inputs=x).code == "equivalent"
    with pytest.raises(AssertionError) as raised:
        assert_equivalent(gru, _Shifted(_copy(gru), 0.125), inputs=x)
    headline = str(raised.value).splitlines()[0]
    assert _number(r"max abs error ([0-9.e+-]+) at output", headline) == pytest.approx(
        0.125, rel=0.05
    )
    assert "\ndiagnosis: " in str(raised.value)


def test_arrays_need_a_tolerance_and_fail_with_the_index() -> None:
    expected = np.zeros((2, 3))
    actual = expected.copy()
    actual[1, 2] = 1e-3
    assert assert_equivalent(expected, actual, rtol=0.0, atol=1e-3)
    with pytest.raises(ValueError, match="rtol and atol"):
        assert_equivalent(expected, actual)
    with pytest.raises(AssertionError, match=r"max abs error 0.001 at array\[1, 2\], tolerance"):
        assert_equivalent(expected, actual, rtol=0.0, atol=1e-4)


def test_seeded_inputs_follow_the_node_id(request, xframe_seeded_inputs) -> None:
    first, second = xframe_seeded_inputs(2, 5, 3), xframe_seeded_inputs(2, 5, 3)
    generator = np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
    np.testing.assert_array_equal(first, generator.standard_normal((2, 5, 3)).astype(np.float32))
    assert first.dtype == np.float32 and not np.array_equal(first, second)
    padded = xframe_seeded_inputs(2, 5, 3, seed=11, lengths=[5, 2])
    full = np.random.default_rng(11).standard_normal((2, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(padded[0], full[0])
    np.testing.assert_array_equal(padded[1, :2], full[1, :2])
    assert not padded[1, 2:].any()


def test_framework_and_device_fixtures_list_what_is_here(xframe_frameworks, xframe_devices):
    assert "torch" in xframe_frameworks and "reference" not in xframe_frameworks
    gpus = torch.cuda.device_count()
    assert xframe_devices == ["cpu"] + [f"gpu:{index}" for index in range(gpus)]


def test_importing_the_helpers_imports_no_framework_and_no_pytest() -> None:
    code = (
        "import sys, xframe_bilstm.testing; "
        "print(','.join(m for m in ('torch', 'tensorflow', 'keras', 'pytest', 'h5py') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == ""
