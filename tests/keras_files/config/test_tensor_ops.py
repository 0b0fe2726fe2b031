"""The package's own tensor-operation layers in a saved configuration: read exactly as this
package writes them, a user's class of the same name left the user's, bad options named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from xframe_bilstm import UnsupportedFeatureError, keras_to_torch, torch_to_keras  # noqa: E402
from xframe_bilstm.keras_files import read_model  # noqa: E402

from ...models.test_torch_capture import LastStep  # noqa: E402
from .edited import edited  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.torch]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("last_step") / "last_step.keras"
    torch_to_keras(LastStep().eval()).save(path)
    return path


def test_each_layer_reads_as_its_kind_with_its_options(saved: Path) -> None:
    graph = read_model(saved)
    kinds = {record.name: record.kind for record in graph.layers}
    assert kinds["amax"] == "reduce" and kinds["div"] == "scalar_op"
    assert kinds["select"] == "slice"
    assert graph.layer("select").options == {
        "axis": 1,
        "start": -1,
        "stop": None,
        "step": 1,
        "keep_axis": False,
    }
    assert graph.layer("amax").options == {"op": "max", "axes": (1,), "keepdims": False}
    assert graph.layer("div").options == {"op": "divide", "constant": 2.0, "reverse": False}


def test_a_class_of_the_same_name_from_another_module_is_refused(
    saved: Path, tmp_path: Path
) -> None:
    def elsewhere(entry: dict) -> None:
        if entry.get("class_name") == "Reduce":
            entry["module"] = "mylib.layers"

    path = edited(saved, tmp_path / "elsewhere.keras", elsewhere)
    with pytest.raises(UnsupportedFeatureError, match=r"'Reduce' names module 'mylib.layers'"):
        keras_to_torch(path)


@pytest.mark.parametrize(
    ("layer", "key", "value", "message"),
    [
        ("amax", "op", "median", r"'amax' \(xframe_bilstm>Reduce\): option 'op' is 'median'"),
        ("amax", "axes", [0], r"option 'axes' is 0; expected an axis other than the batch"),
        ("select", "step", 0, r"'select' \(xframe_bilstm>Slice\): option 'step' is 0"),
        ("select", "step", -2, r"'select' \(xframe_bilstm>Slice\): option 'step' is -2"),
        ("div", "constant", "2", r"'div' \(xframe_bilstm>ScalarOp\): option 'constant' is '2'"),
        ("div", "reverse", 1, r"option 'reverse' is 1; expected True or False"),
    ],
)
def test_a_bad_option_is_refused_by_name(
    saved: Path, tmp_path: Path, layer: str, key: str, value: Any, message: str
) -> None:
    def spoil(entry: dict) -> None:
        if entry["config"]["name"] == layer:
            entry["config"]["options"][key] = value

    path = edited(saved, tmp_path / "spoiled.keras", spoil)
    with pytest.raises(UnsupportedFeatureError, match=message):
        read_model(path)


@pytest.fixture(scope="module")
def masked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ...models.test_capture_where import Diacritizer

    path = tmp_path_factory.mktemp("masked") / "masked.keras"
    torch_to_keras(Diacritizer("not").eval()).save(path)
    return path


def test_masks_and_products_read_as_their_kinds(masked: Path) -> None:
    graph = read_model(masked)
    (where,) = [record for record in graph.layers if record.kind == "where"]
    assert where.options == {"compare": "eq", "value": 0.0, "fill": float("-inf"), "axes": (1,)}
    assert where.inputs[1] == "input"  # compares the token ids
    products = [record for record in graph.layers if record.kind == "matmul"]
    assert [record.options["transpose_b"] for record in products] == [False, False]


@pytest.mark.parametrize(
    ("kind", "key", "value", "message"),
    [
        ("where", "compare", "approx", "option 'compare' is 'approx'; expected one of eq"),
        ("where", "fill", float("nan"), "option 'fill' is nan; expected a number or an infinity"),
        ("where", "value", "0", "option 'value' is '0'; expected a number"),
        ("where", "axes", [0], "option 'axes' is 0; expected an axis other than the batch"),
        ("matmul", "transpose_a", 1, "option 'transpose_a' is 1; expected True or False"),
    ],
)
def test_a_bad_mask_or_product_option_is_refused_by_name(
    masked: Path, tmp_path: Path, kind: str, key: str, value: Any, message: str
) -> None:
    registered = {"where": "xframe_bilstm>Where", "matmul": "xframe_bilstm>MatMul"}[kind]

    def spoil(entry: dict) -> None:
        if entry.get("registered_name") == registered:
            entry["config"]["options"][key] = value

    path = edited(masked, tmp_path / "spoiled.keras", spoil)
    with pytest.raises(UnsupportedFeatureError, match=message.replace("(", r"\(")):
        read_model(path)
