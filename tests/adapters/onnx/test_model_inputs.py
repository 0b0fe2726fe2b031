"""Seeded inputs for whole models' graphs: images, token ids, features with dynamic time."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper  # noqa: E402

from xframe_bilstm.adapters.onnx.example_inputs import seeded_graph_inputs  # noqa: E402
from xframe_bilstm.adapters.onnx.model_inputs import whole_model_inputs  # noqa: E402
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402


def _graph(inputs: list, nodes: list | None = None, tables: dict | None = None) -> object:
    initializers = [onnx.numpy_helper.from_array(a, name) for name, a in (tables or {}).items()]
    nodes = nodes or [helper.make_node("Identity", [inputs[0].name], ["y"])]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    return helper.make_model(helper.make_graph(nodes, "g", inputs, [output], initializers))


def test_an_image_gets_batch_first_and_time_elsewhere_fixed_sizes_kept() -> None:
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 1, 32, "width"])
    inputs = seeded_graph_inputs(_graph([image]), seed=0, batch=2, steps=7)
    assert inputs.names == ("image",) and inputs.x_name == "image"
    assert inputs.value("image").shape == (2, 1, 32, 7)
    assert inputs.value("image").dtype == np.float32
    assert inputs.state_names == () and inputs.lengths_name is None


def test_token_ids_index_within_the_embedding_table_they_read() -> None:
    tokens = helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", "time"])
    gather = helper.make_node("Gather", ["table", "tokens"], ["y"])
    model = _graph([tokens], [gather], {"table": np.zeros((5, 3), np.float32)})
    names, arrays = whole_model_inputs(model, seed=0, batch=40, steps=30)
    assert names == ("tokens",) and arrays[0].shape == (40, 30)
    assert arrays[0].min() == 0 and arrays[0].max() == 4  # every row of the table, no more


def test_a_dimension_named_as_a_first_one_is_the_batch() -> None:
    features = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["b", 4, "t"])
    lengths = helper.make_tensor_value_info("lengths", TensorProto.INT32, ["b"])
    _, arrays = whole_model_inputs(_graph([features, lengths]), seed=0, batch=3, steps=9)
    assert [a.shape for a in arrays] == [(3, 4, 9), (3,)]
    assert arrays[1][0] == 9 and arrays[1].min() >= 1  # valid lengths, the first row full


def test_a_graph_neither_reading_fits_keeps_the_recurrent_reading_s_refusal() -> None:
    mask = helper.make_tensor_value_info("mask", TensorProto.BOOL, ["batch", "time"])
    with pytest.raises(UnsupportedFeatureError, match=r"graph input 'mask' is bool"):
        seeded_graph_inputs(_graph([mask]), seed=0, batch=2, steps=7)
    with pytest.raises(UnsupportedFeatureError, match=r"'mask' is bool; example inputs"):
        whole_model_inputs(_graph([mask]), seed=0, batch=2, steps=7)
