"""The runs of a comparison in two lanes: TensorFlow's in the calling thread, others beside.

A comparison's first call spends most of its time in two kinds of work that can overlap:
Keras tracing its layer (Python, holding the GIL) and the other frameworks' kernels
(PyTorch generating and running its oneDNN kernels, onnxruntime running a session), which
release the GIL while they compute. So the CPU runs of frameworks that share no state with
TensorFlow go in a second thread, one after another, while the other runs go in the calling
thread, one after another; the runs that must be alone go last. Each run computes exactly
what it computes in a sequence: every framework's runs stay in one thread and in the order
planned, a framework's global switches are set and put back by its own runs only, and
PyTorch's thread count is a process setting that a new thread reads (onnxruntime sets its
own per session). The records come back in the order planned.

Python's warning filters are one process-wide state that ``warnings.catch_warnings`` swaps
in and out, so sections of two threads that interleave can put back each other's filters.
The runs that count the warnings they raise (the PyTorch exporters') run alone, and the
filters in place before the lanes are put back once both have finished.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Sequence
from typing import TypeVar

from .frameworks import Framework, RunSpec

Result = TypeVar("Result")

# The packages whose frameworks' runs may go beside TensorFlow's: their kernels release the
# GIL and they touch neither TensorFlow nor Keras. Everything else (Keras, its ONNX and
# TFLite exports) stays in the calling thread, and so do the Keras columns of other backends
# (``keras-torch``), which save a live Keras source in this process for their child.
BESIDE = frozenset({"torch", "onnxruntime", "numpy"})
# Frameworks whose runs go alone, after both lanes: they record the warnings raised while
# they run (``catch_warnings(record=True)``), which another thread's section would upset.
ALONE = frozenset({"torch-onnx", "torch-onnx-dynamo"})


def beside(framework: Framework | type[Framework]) -> bool:
    """Whether ``framework``'s runs may go in the second lane (see :data:`BESIDE`).

    Example:
        >>> from xframe_bilstm.frameworks import FRAMEWORKS
        >>> [name for name, framework in FRAMEWORKS.items() if beside(framework)]
        ['reference', 'torch', 'onnxruntime']
    """
    return (
        framework.module in BESIDE
        and framework.name not in ALONE
        and not framework.name.startswith("keras")
    )


def run_lanes(
    plan: Sequence[tuple[RunSpec, Framework]],
    run: Callable[[RunSpec, Framework], Result],
    progress: Callable[[int, int, str], None] | None = None,
) -> list[Result]:
    """``run(spec, framework)`` for every run of ``plan``, in two lanes; results in plan order.

    ``progress(started, total, label)`` is called before each run starts, from the lane
    that starts it, one call at a time. ``run`` is expected to record a framework's failure
    in its result; anything it raises stops both lanes (the other after its current run)
    and is raised here.
    """
    results: dict[int, Result] = {}
    lock = threading.Lock()
    started = [0]
    stop = threading.Event()
    failures: list[BaseException] = []

    def go(indices: list[int]) -> None:
        try:
            for index in indices:
                if stop.is_set():
                    return
                spec, framework = plan[index]
                if progress is not None:
                    with lock:
                        progress(started[0], len(plan), spec.label)
                        started[0] += 1
                results[index] = run(spec, framework)
        except BaseException as error:  # raised in the caller's thread, after both lanes
            failures.append(error)
            stop.set()

    first: list[int] = []
    second: list[int] = []  # on the CPU only: devices' memory is not shared between lanes
    last: list[int] = []
    for index, (spec, framework) in enumerate(plan):
        if framework.name in ALONE:
            last.append(index)
        elif beside(framework) and spec.device == "cpu":
            second.append(index)
        else:
            first.append(index)
    if first and second:
        with warnings.catch_warnings():  # the filters as they were, whatever the lanes did
            lane = threading.Thread(target=go, args=(second,), name="xframe-runs", daemon=True)
            lane.start()
            try:
                go(first)
            finally:
                if failures:
                    stop.set()
                lane.join()
    else:  # one lane: nothing to overlap
        go(first or second)
    go(last)
    if failures:
        raise failures[0]
    return [results[index] for index in range(len(plan))]


__all__ = ["ALONE", "BESIDE", "beside", "run_lanes"]
