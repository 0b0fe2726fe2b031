"""A captured torch module compared on torch, Keras and onnxruntime, its own run included."""

from __future__ import annotations

from typing import Any

from xframe_bilstm import compare


def assert_agrees_everywhere(module: Any, **options: Any) -> Any:
    """``compare(module)`` on torch, Keras and onnxruntime passes, with the module's own run
    (``@original``), the Keras port and an onnxruntime run among its pairs; the report."""
    report = compare(module, frameworks=["torch", "keras", "onnxruntime"], **options)
    assert report, report.lines()
    labels = {pair.actual for pair in report.pairs} | {pair.expected for pair in report.pairs}
    assert {"torch[cpu,float32]@original", "keras[cpu,float32]"} <= labels
    assert any(label.startswith("onnxruntime") for label in labels)
    return report
