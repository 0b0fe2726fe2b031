"""compare(): runs, pairs, tolerances and the profiles that say where two runs part."""

from __future__ import annotations

import json
from xml.etree import ElementTree

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import WeightShapeError, keras_to_torch  # noqa: E402
from xframe_bilstm.factories import random_stack  # noqa: E402
from xframe_bilstm.frameworks import TorchFramework  # noqa: E402
from xframe_bilstm.runner import compare  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]

REFERENCE = "reference[cpu,float64]"


@pytest.fixture(scope="module")
def bilstm():
    layer = keras.layers.Bidirectional(
        keras.layers.LSTM(4, return_sequences=True, return_state=True),
        backward_layer=keras.layers.LSTM(
            4, return_sequences=True, return_state=True, go_backwards=True
        ),
    )
    layer.build((None, None, 3))
    rng = np.random.default_rng(0)
    for half in (layer.forward_layer, layer.backward_layer):
        half.set_weights(
            [rng.uniform(-0.6, 0.6, w.shape).astype("float32") for w in half.get_weights()]
        )
    return layer


def test_every_framework_agrees_with_the_reference_and_each_other(bilstm) -> None:
    report = compare(bilstm, steps=6, frameworks=["torch", "keras"])
    assert report, "\n".join(report.lines())
    labels = [run.label for run in report.runs]
    assert labels == [
        "reference[cpu,float64]",
        "torch[cpu,float32]",
        "keras[cpu,float32]",
        "keras[cpu,float32]@original",  # the user's layer itself
    ]
    assert [pair.label for pair in report.pairs] == [
        "torch[cpu,float32] vs reference[cpu,float64]",
        "keras[cpu,float32] vs reference[cpu,float64]",
        "keras[cpu,float32]@original vs reference[cpu,float64]",
        "keras[cpu,float32] vs torch[cpu,float32]",
        "torch[cpu,float32] vs keras[cpu,float32]@original",
        "keras[cpu,float32] vs keras[cpu,float32]@original",
    ]
    pair = report.pairs[0]
    assert set(pair.timesteps) == {"output.forward", "output.backward"}
    assert len(pair.timesteps["output.forward"]) == 6
    assert set(pair.directions) == {"forward", "backward"}
    assert all(line.startswith("PASSED | ") for line in report.lines())
    assert report.versions["torch"] == torch.__version__


def test_float64_runs_get_a_far_tighter_tolerance(bilstm) -> None:
    report = compare(bilstm, frameworks=["torch"], dtypes=["float32", "float64"], steps=5)
    tolerances = {p.actual: p.tolerance for p in report.pairs if p.expected == REFERENCE}
    assert tolerances["torch[cpu,float64]"] < 1e-6 * tolerances["torch[cpu,float32]"]
    assert report


def test_masked_runs_report_valid_and_padded_steps(bilstm) -> None:
    report = compare(bilstm, lengths=[6, 3, 1, 6], steps=6)
    assert report, "\n".join(report.lines())
    padding = report.pairs[0].padding
    assert set(padding) == {"output.forward", "output.backward"}
    assert set(padding["output.forward"]) == {"valid", "padded"}


def test_a_faulty_port_fails_and_shows_which_direction(bilstm) -> None:
    port = keras_to_torch(bilstm)
    with torch.no_grad():  # break the backward direction's forget-gate bias only
        port.rnns[0].bias_ih_l0_reverse[4:8] += 1.0
    report = compare(bilstm, against=port, steps=6)
    assert not report
    broken = [pair for pair in report.pairs if "@against" in pair.actual]
    assert broken and all(not pair for pair in broken)
    directions = broken[0].directions
    assert directions["backward"] > 1e-3 > 1e3 * directions["forward"]
    assert any(
        line.startswith("FAILED | torch[cpu,float32]@against vs reference")
        for line in report.lines()
    )


def test_a_correct_port_passes(bilstm) -> None:
    assert compare(bilstm, against=keras_to_torch(bilstm), steps=5)


def test_a_framework_that_raises_fails_its_own_run_only(bilstm, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(TorchFramework, "run", broken)
    report = compare(bilstm, steps=5, frameworks=["torch", "keras"])
    assert not report
    torch_run = next(run for run in report.runs if run.spec.framework == "torch")
    assert torch_run.error == "RuntimeError: kernel exploded"
    assert [pair.label for pair in report.pairs] == [
        "keras[cpu,float32] vs reference[cpu,float64]",
        "keras[cpu,float32]@original vs reference[cpu,float64]",
        "keras[cpu,float32] vs keras[cpu,float32]@original",
    ]
    assert all(report.pairs)
    assert report.failures == ["FAILED | torch[cpu,float32] | RuntimeError: kernel exploded"]


def test_nan_input_never_passes(bilstm) -> None:
    x = np.random.default_rng(0).standard_normal((2, 4, 3))
    x[1, 2, 0] = np.nan
    report = compare(bilstm, inputs=x, frameworks=["torch"])
    assert not report
    assert "non-finite" in report.pairs[0].comparison.message()


def test_given_tolerances_replace_the_derived_one(bilstm) -> None:
    report = compare(bilstm, frameworks=["torch"], rtol=0.0, atol=1e-12, steps=5)
    assert not report and report.pairs[0].tolerance == 1e-12
    with pytest.raises(ValueError, match="both rtol and atol"):
        compare(bilstm, rtol=1e-3)


def test_views_are_valid_json_junit_and_markdown(bilstm) -> None:
    report = compare(bilstm, frameworks=["torch"], steps=4, lengths=[4, 2, 1, 3])
    data = json.loads(report.to_json())
    assert data["passed"] is True and data["lengths"] == [4, 2, 1, 3]
    assert data["pairs"][0]["outputs"][0]["name"] == "output"
    suite = ElementTree.fromstring(report.to_junit())
    # torch and the layer itself against the reference, and torch against the layer.
    assert suite.get("tests") == "3" and suite.get("failures") == "0"
    assert "| torch[cpu,float32] vs reference[cpu,float64] | PASSED |" in report.to_markdown()


def test_canonical_source_and_float16(bilstm) -> None:
    stack = random_stack(np.random.default_rng(1), "gru", 3, 4, direction="bidirectional")
    report = compare(stack, frameworks=["torch"], dtypes=["float16", "bfloat16"], steps=5)
    assert report, "\n".join(report.lines())
    assert {run.spec.dtype for run in report.runs} == {"float64", "float16", "bfloat16"}


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"frameworks": ["caffe"]}, ValueError, "frameworks: 'caffe'"),
        ({"dtypes": ["int8"]}, ValueError, "dtypes: 'int8'"),
        (
            {"inputs": np.zeros((2, 4, 5))},
            WeightShapeError,
            r"inputs: expected .* \(batch, time, 3\)",
        ),
        ({"lengths": [21, 1, 1, 1]}, WeightShapeError, r"lengths: each must be in 1\.\.20"),
        ({"initial_states": [np.zeros((4, 4))]}, WeightShapeError, "initial_states: expected 4"),
    ],
)
def test_bad_arguments_are_named(bilstm, options, error, match) -> None:
    with pytest.raises(error, match=match):
        compare(bilstm, **options)


def test_initial_states_for_a_whole_model_are_refused_naming_its_runs() -> None:
    """The reference takes them (tests/test_stack_graph.py); the port and the model as
    loaded start from zeros, so compare() refuses rather than pair runs that differ."""
    from xframe_bilstm import UnsupportedFeatureError

    inputs = keras.Input((5, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.LSTM(4)(inputs)))
    with pytest.raises(UnsupportedFeatureError, match=r"torch port.*start its recurrent layers"):
        compare(model, frameworks=["torch"], initial_states=[np.zeros((4, 4))] * 2)


def test_initial_states_for_a_model_without_recurrent_layers_name_that_first() -> None:
    """The check comes from the graph (stack_graph.state_layers), as for a stack."""
    from xframe_bilstm import UnsupportedFeatureError

    inputs = keras.Input((5, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    with pytest.raises(UnsupportedFeatureError, match="has no recurrent layer to start from"):
        compare(model, frameworks=["torch"], initial_states=[np.zeros((4, 4))])
