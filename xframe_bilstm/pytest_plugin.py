"""The pytest plugin, registered as ``xframe_bilstm`` through the ``pytest11`` entry point.

Installing the package with its ``test`` extra is enough to load it (``-p no:xframe_bilstm``
turns it off). It adds:

- options ``--xframe-frameworks=torch,keras``, ``--xframe-devices=cpu,gpu:0`` and
  ``--xframe-paths=all`` (ini keys ``xframe_frameworks``, ``xframe_devices`` and
  ``xframe_paths``), the defaults of every :func:`~xframe_bilstm.testing.assert_equivalent`
  call, and ``--xframe-slow``;
- markers ``torch``, ``keras``, ``onnx`` (skipped when not installed, or not selected by
  ``--xframe-frameworks``), ``gpu`` (skipped without a visible CUDA device, or when
  ``--xframe-devices`` names none) and ``slow`` (skipped unless ``--xframe-slow`` is given
  or ``-m`` names ``slow``; a project that declares its own ``slow`` marker keeps its own
  policy, and the plugin leaves its slow tests alone);
- fixtures ``xframe_seeded_inputs``, ``xframe_frameworks`` and ``xframe_devices``.

No framework is imported here: availability is looked up, and a GPU count imports torch
only when a test asks for GPUs (and never after TensorFlow, which can crash).
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import itertools
import os
import re
import sys
import zlib
from collections.abc import Callable

import numpy as np
import pytest

from . import testing
from .frameworks import FRAMEWORKS, auto_frameworks
from .frameworks.base import KERNEL_PATHS

# marker -> (the packages it needs, the frameworks of compare() that select it, extra).
_FRAMEWORK_MARKERS = {
    "torch": (("torch",), {"torch", "torch-onnx", "torch-onnx-dynamo"}, "torch"),
    "keras": (
        ("keras", "tensorflow"),
        {"keras", "keras-onnx", "keras-jax", "keras-torch", "tflite"},
        "tf",
    ),
    "onnx": (
        ("onnx", "onnxruntime"),
        {"onnxruntime", "torch-onnx", "torch-onnx-dynamo", "keras-onnx"},
        "onnx",
    ),
}
_MARKERS = (
    "torch: needs PyTorch",
    "keras: needs TensorFlow and Keras 3",
    "onnx: needs onnx and onnxruntime",
    "gpu: needs a CUDA device",
    "slow: long-running; run with --xframe-slow or -m slow",
)
_DEVICE = re.compile(r"cpu|gpu:\d+")
_PREVIOUS = pytest.StashKey[testing.Selection]()
_SKIPS_SLOW = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xframe_bilstm", "recurrent-model equivalence (xframe_bilstm)")
    names = ", ".join(name for name in FRAMEWORKS if name != "reference")
    group.addoption(
        "--xframe-frameworks",
        metavar="NAMES",
        help=f"comma-separated frameworks to run ({names}); default: every installed one",
    )
    group.addoption(
        "--xframe-devices",
        metavar="DEVICES",
        help="comma-separated devices to run on (cpu, gpu:0, ...); default: every visible one",
    )
    group.addoption(
        "--xframe-paths",
        metavar="PATHS",
        help="kernel paths to run besides the defaults: all, or some of "
        f"{', '.join(KERNEL_PATHS)}; default: none",
    )
    group.addoption("--xframe-slow", action="store_true", help="run the tests marked slow")
    parser.addini("xframe_frameworks", "default of --xframe-frameworks", default="")
    parser.addini("xframe_devices", "default of --xframe-devices", default="")
    parser.addini("xframe_paths", "default of --xframe-paths", default="")


def pytest_configure(config: pytest.Config) -> None:
    # Loaded into every session of an environment that has the package: a project's own
    # declared `slow` marker means it has its own policy for those tests.
    declared = {line.split(":")[0].strip() for line in config.getini("markers")}
    config.stash[_SKIPS_SLOW] = "slow" not in declared
    for line in _MARKERS:
        config.addinivalue_line("markers", line)
    frameworks = _listed(config, "frameworks")
    for name in frameworks or ():
        if name not in FRAMEWORKS or name == "reference":
            raise pytest.UsageError(f"--xframe-frameworks: {name!r} is not one of: {_names()}")
        if not FRAMEWORKS[name].available():
            raise pytest.UsageError(f"--xframe-frameworks: {name!r} is not installed here")
    devices = _listed(config, "devices")
    for device in devices or ():
        if not _DEVICE.fullmatch(device):
            raise pytest.UsageError(f"--xframe-devices: {device!r} is not cpu or gpu:N")
        # Asked for by name, a missing GPU is an error: a GPU job must not pass on a CPU.
        if device.startswith("gpu:") and int(device[4:]) >= visible_gpus():
            raise pytest.UsageError(
                f"--xframe-devices: {device} is not visible here ({visible_gpus()} CUDA devices)"
            )
    paths = _listed(config, "paths") or []
    for path in [] if paths == ["all"] else paths:
        if path.rpartition(":")[2] not in KERNEL_PATHS:
            raise pytest.UsageError(
                f"--xframe-paths: {path!r} is not all or one of: {', '.join(KERNEL_PATHS)}"
            )
    config.stash[_PREVIOUS] = testing.SELECTION  # a session run inside a test restores it
    testing.SELECTION = testing.Selection(
        frameworks="auto" if frameworks is None else tuple(frameworks),
        devices="auto" if devices is None else tuple(devices),
        paths="all" if paths == ["all"] else tuple(paths),
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    testing.SELECTION = config.stash.get(_PREVIOUS, testing.Selection())


def pytest_report_header(config: pytest.Config) -> str:
    selection = testing.SELECTION
    frameworks = selection.frameworks if selection.frameworks != "auto" else _installed()
    devices = selection.devices if selection.devices != "auto" else ("every visible one",)
    paths = [selection.paths] if isinstance(selection.paths, str) else selection.paths
    return (
        f"xframe_bilstm: frameworks {', '.join(frameworks)}; devices {', '.join(devices)}; "
        f"kernel paths {', '.join(paths) or 'default only'}"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        reason = _skip_reason(config, item)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


def _skip_reason(config: pytest.Config, item: pytest.Item) -> str | None:
    frameworks = _listed(config, "frameworks")
    for marker, (packages, members, extra) in _FRAMEWORK_MARKERS.items():
        if item.get_closest_marker(marker) is None:
            continue
        missing = [p for p in packages if importlib.util.find_spec(p) is None]
        if missing:
            return f"needs {', '.join(missing)}: pip install 'xframe_bilstm[{extra}]'"
        if frameworks is not None and not members & set(frameworks):
            return f"{marker} not selected by --xframe-frameworks={','.join(frameworks)}"
    if item.get_closest_marker("gpu") is not None:
        devices = _listed(config, "devices")
        if devices is not None and not any(d.startswith("gpu") for d in devices):
            return f"no GPU selected by --xframe-devices={','.join(devices)}"
        if visible_gpus() == 0:
            return "needs a CUDA device; none is visible"
    slow_asked = config.getoption("xframe_slow") or "slow" in (config.getoption("markexpr") or "")
    skips_slow = config.stash.get(_SKIPS_SLOW, True)
    if item.get_closest_marker("slow") is not None and skips_slow and not slow_asked:
        return "slow: run with --xframe-slow or -m slow"
    return None


@functools.cache
def visible_gpus() -> int:
    """CUDA devices this process can use, without importing a framework that is not here."""
    tensorflow_first = "tensorflow" in sys.modules and "torch" not in sys.modules
    if not tensorflow_first and importlib.util.find_spec("torch") is not None:
        import torch

        return int(torch.cuda.device_count())
    if tensorflow_first:
        return len(sys.modules["tensorflow"].config.list_physical_devices("GPU"))
    # Neither framework: count the device nodes, as many as CUDA_VISIBLE_DEVICES lets through.
    nodes = len(glob.glob("/dev/nvidia[0-9]*"))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return nodes
    # CUDA stops at the first entry that names no device ("" and "-1" hide them all).
    listed = itertools.takewhile(lambda v: v.strip() not in ("", "-1"), visible.split(","))
    return min(nodes, len(list(listed)))


@pytest.fixture
def xframe_seeded_inputs(
    request: pytest.FixtureRequest,
) -> Callable[..., np.ndarray]:
    """``make(batch, steps, features, *, seed=None, lengths=None)``: a float32 input.

    Without a seed the draws come from a generator seeded by the test's node id: each test
    (and each parameter set) gets its own inputs, the same on every run; successive calls
    in one test draw new ones. Padded steps (past ``lengths``) hold zeros.
    """
    generator = np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))

    def make(
        batch: int,
        steps: int,
        features: int,
        *,
        seed: int | None = None,
        lengths: list[int] | None = None,
    ) -> np.ndarray:
        source = generator if seed is None else seed
        return testing.seeded_inputs(batch, steps, features, seed=source, lengths=lengths)

    return make


@pytest.fixture(scope="session")
def xframe_frameworks(pytestconfig: pytest.Config) -> list[str]:
    """The frameworks selected by ``--xframe-frameworks``, else every installed one."""
    return _listed(pytestconfig, "frameworks") or list(_installed())


@pytest.fixture(scope="session")
def xframe_devices(pytestconfig: pytest.Config) -> list[str]:
    """The devices selected by ``--xframe-devices``, else the CPU and every visible GPU."""
    gpus = [f"gpu:{index}" for index in range(visible_gpus())]
    return _listed(pytestconfig, "devices") or ["cpu", *gpus]


def _listed(config: pytest.Config, key: str) -> list[str] | None:
    """The names an option (or its ini key) lists; None for "every one" (unset or auto)."""
    value = config.getoption(f"xframe_{key}") or config.getini(f"xframe_{key}")
    names = [name.strip() for name in str(value).split(",") if name.strip()]
    return None if names in ([], ["auto"]) else names


def _installed() -> tuple[str, ...]:
    return tuple(auto_frameworks())


def _names() -> str:
    return ", ".join(name for name in FRAMEWORKS if name != "reference")
