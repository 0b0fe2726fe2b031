"""run_lanes: which runs go beside TensorFlow's, the order they keep, and that a run
computes in a lane exactly what it computes on its own."""

from __future__ import annotations

import threading
import time
import warnings

import numpy as np
import pytest

from xframe_bilstm.frameworks import FRAMEWORKS, RunSpec
from xframe_bilstm.run_lanes import ALONE, beside, run_lanes


def _plan(*names: str, device: str = "cpu") -> list:
    return [(RunSpec(name, device, "float32"), FRAMEWORKS[name]()) for name in names]


class Recorder:
    """A ``run`` for run_lanes that notes which thread ran each run, and in which order."""

    def __init__(self, fail: str | None = None) -> None:
        self.order: list[tuple[str, str]] = []
        self.fail = fail
        self._lock = threading.Lock()

    def __call__(self, spec: RunSpec, framework: object) -> str:
        time.sleep(0.01)  # long enough for the other lane to start meanwhile
        with self._lock:
            self.order.append((spec.label, threading.current_thread().name))
        if spec.label == self.fail:
            raise RuntimeError(f"{spec.label} broke")
        return spec.label


def test_only_frameworks_sharing_nothing_with_tensorflow_go_beside() -> None:
    lanes = {name: beside(framework) for name, framework in FRAMEWORKS.items()}
    assert {name for name, side in lanes.items() if side} == {"reference", "torch", "onnxruntime"}
    assert {"torch-onnx", "torch-onnx-dynamo"} == ALONE  # they count warnings: never beside
    assert not lanes["keras-torch"]  # Keras on torch saves a live Keras source here first


def test_results_in_plan_order_each_lane_in_its_order_the_exporters_last() -> None:
    plan = _plan("reference", "torch", "keras", "onnxruntime", "torch-onnx", "keras-onnx")
    run = Recorder()
    progress: list[tuple[int, int, str]] = []

    results = run_lanes(plan, run, lambda *call: progress.append(call))

    labels = [spec.label for spec, _ in plan]
    assert results == labels
    caller = threading.current_thread().name
    threads = dict(run.order)
    assert {label for label, thread in threads.items() if thread == caller} == {
        "keras[cpu,float32]",
        "keras-onnx[cpu,float32]",
        "torch-onnx[cpu,float32]",
    }
    second = [label for label, thread in run.order if thread != caller]
    assert second == [labels[0], labels[1], labels[3]]
    assert run.order[-1][0] == "torch-onnx[cpu,float32]"  # after both lanes
    first = [label for label, thread in run.order if thread == caller]
    assert first == [labels[2], labels[5], labels[4]]
    # One progress call per run, before it starts, counting the runs started.
    assert [started for started, _, _ in progress] == list(range(len(plan)))
    assert {total for _, total, _ in progress} == {len(plan)}
    assert sorted(label for _, _, label in progress) == sorted(labels)


def test_device_runs_stay_in_the_calling_thread() -> None:
    plan = _plan("torch", "keras", device="gpu:0")
    run = Recorder()
    run_lanes(plan, run)
    assert {thread for _, thread in run.order} == {threading.current_thread().name}


def test_what_a_run_raises_stops_both_lanes_and_is_raised() -> None:
    plan = _plan("keras", "torch", "onnxruntime", "torch-onnx")
    run = Recorder(fail="keras[cpu,float32]")
    with pytest.raises(RuntimeError, match=r"keras\[cpu,float32\] broke"):
        run_lanes(plan, run)
    assert "torch-onnx[cpu,float32]" not in dict(run.order)  # nothing starts after


def test_the_warning_filters_are_put_back_after_the_lanes() -> None:
    before = list(warnings.filters)

    def leaky(spec: RunSpec, framework: object) -> None:
        # As two interleaved catch_warnings sections can: a filter left behind.
        warnings.filterwarnings("ignore", message=f"left by {spec.label}")

    run_lanes(_plan("torch", "keras"), leaky)
    assert warnings.filters == before


@pytest.mark.keras
@pytest.mark.torch
def test_every_run_in_the_lanes_computes_what_it_computes_alone() -> None:
    torch = pytest.importorskip("torch")
    keras = pytest.importorskip("keras")
    pytest.importorskip("onnxruntime")
    from xframe_bilstm.correspondence import output_names_of
    from xframe_bilstm.planning import plan_runs
    from xframe_bilstm.runner import _run_all
    from xframe_bilstm.sources import read_source

    layer = keras.layers.Bidirectional(keras.layers.LSTM(8, return_sequences=True))
    layer.build((None, None, 5))
    reading = read_source(layer).reading
    x = np.random.default_rng(3).standard_normal((3, 9, 5))
    names = ["torch", "keras", "onnxruntime", "torch-onnx"]
    specs = plan_runs(reading, names, "cpu", ["float32", "float64"], False)
    counts = {spec: len(output_names_of(reading)) for spec, _ in specs}

    runs, results = _run_all(specs, {"": reading}, x, None, None, counts, None)

    assert all(run.error is None for run in runs), [run.error for run in runs]
    assert [run.spec for run in runs] == [spec for spec, _ in specs]
    for spec, framework in specs:  # one after another, in this thread
        alone, _ = framework.run(reading, x, spec, initial_states=None, lengths=None)
        assert len(alone) == len(results[spec])
        for a, b in zip(alone, results[spec], strict=True):
            assert np.array_equal(a, b), spec.label  # bit for bit
    threads = {run.spec.framework: run.settings.get("threads") for run in runs}
    assert threads["torch"] == torch.get_num_threads()  # the process's setting, in the lane
