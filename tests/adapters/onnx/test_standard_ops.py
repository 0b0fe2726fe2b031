"""Each standard operator, one node built with ``onnx.helper``, against onnxruntime on it.

The attribute variants and opset forms the exporters emit: ``auto_pad``, asymmetric pads,
``ceil_mode``, ``count_include_pad``, ``Softmax``'s axis before and after opset 13, axes
as attributes and as inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from xframe_bilstm.adapters.onnx import GLUE_OPS, onnx_module  # noqa: E402
from xframe_bilstm.adapters.onnx.standard_ops import STANDARD_OPS  # noqa: E402
from xframe_bilstm.errors import UnsupportedFeatureError  # noqa: E402

_RNG = np.random.default_rng(0)


def _normal(*shape: int) -> np.ndarray:
    return _RNG.standard_normal(shape).astype(np.float32)


def _ints(*values: int) -> np.ndarray:
    return np.asarray(values, np.int64)


class Case:
    """One node: its inputs fed at run time (``fed``) and as initializers (``fixed``)."""

    def __init__(
        self,
        op: str,
        fed: list[np.ndarray],
        opset: int,
        fixed: dict[int, np.ndarray] | None = None,
        outputs: tuple[int, ...] = (TensorProto.FLOAT,),
        **attributes: Any,
    ) -> None:
        self.op, self.fed, self.opset, self.fixed = op, fed, opset, fixed or {}
        self.outputs, self.attributes = outputs, attributes

    def model(self) -> Any:
        count = len(self.fed) + len(self.fixed)
        names, fed_arrays, initializers = [], iter(self.fed), []
        inputs = []
        for k in range(count):
            if k in self.fixed:
                array = self.fixed[k]
                if array.size == 0 and array.dtype == np.dtype("O"):
                    names.append("")  # an omitted optional input
                    continue
                names.append(f"c{k}")
                initializers.append(onnx.numpy_helper.from_array(array, f"c{k}"))
            else:
                array = next(fed_arrays)
                names.append(f"x{k}")
                elem = helper.np_dtype_to_tensor_dtype(array.dtype)
                inputs.append(helper.make_tensor_value_info(f"x{k}", elem, array.shape))
        outs = [f"y{k}" for k in range(len(self.outputs))]
        node = helper.make_node(self.op, names, outs, name="the_node", **self.attributes)
        graph = helper.make_graph(
            [node],
            "case",
            inputs,
            [helper.make_tensor_value_info(o, t, None) for o, t in zip(outs, self.outputs)],
            initializers,
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])


_OMITTED = np.asarray([], dtype=object)
_IMAGE, _SIGNAL = _normal(2, 3, 7, 8), _normal(2, 3, 11)
_KERNEL, _KERNEL1D = _normal(4, 3, 3, 2), _normal(6, 1, 3)
_WIDE = (_normal(2, 3, 4) * 30).astype(np.float32)  # beyond torch's softplus cut-over at 20

CASES = {
    # Convolution: explicit asymmetric pads, strides, dilations, groups, auto_pad.
    "conv2d_pads": Case("Conv", [_IMAGE, _KERNEL, _normal(4)], 11, pads=[1, 0, 2, 1]),
    "conv2d_strided": Case(
        "Conv", [_IMAGE, _KERNEL], 11, strides=[2, 3], dilations=[2, 1], kernel_shape=[3, 2]
    ),
    "conv2d_same_upper": Case("Conv", [_IMAGE, _KERNEL], 11, auto_pad="SAME_UPPER", strides=[2, 2]),
    "conv2d_same_lower": Case("Conv", [_IMAGE, _KERNEL], 11, auto_pad="SAME_LOWER", strides=[2, 3]),
    "conv2d_valid": Case("Conv", [_IMAGE, _KERNEL], 1, auto_pad="VALID"),
    "conv1d_groups": Case("Conv", [_SIGNAL, _normal(6, 1, 3)], 11, group=3, pads=[2, 0]),
    "conv1d_depthwise_same": Case(
        "Conv", [_SIGNAL, _normal(3, 1, 4)], 11, group=3, auto_pad="SAME_UPPER"
    ),
    # ConvTranspose: the full output cut by pads, steps added back by output_padding.
    "conv_transpose1d_cut": Case(
        "ConvTranspose", [_SIGNAL, _normal(3, 2, 4), _normal(2)], 11, strides=[2], pads=[1, 2]
    ),
    "conv_transpose1d_added": Case(
        "ConvTranspose", [_SIGNAL, _normal(3, 2, 3)], 11, strides=[3], output_padding=[2]
    ),
    "conv_transpose2d_groups": Case(
        "ConvTranspose",
        [_IMAGE, _normal(3, 1, 2, 3)],
        11,
        group=3,
        strides=[2, 1],
        dilations=[1, 2],
        pads=[0, 1, 1, 0],
        output_padding=[1, 0],
    ),
    # Pad: attributes before opset 11, inputs after; axes from opset 18, wrap from 19.
    "pad_v2_reflect": Case("Pad", [_SIGNAL], 2, mode="reflect", pads=[0, 0, 3, 0, 0, 2]),
    "pad_v2_constant": Case("Pad", [_SIGNAL], 2, pads=[0, 1, 1, 0, 0, 2], value=1.5),
    "pad_v11_edge": Case("Pad", [_IMAGE], 11, {1: _ints(0, 0, 2, 1, 0, 0, 1, 3)}, mode="edge"),
    "pad_v11_value": Case(
        "Pad", [_SIGNAL], 11, {1: _ints(0, 0, 2, 0, 0, 1), 2: np.float32(-2.0)}
    ),
    "pad_v11_crop": Case("Pad", [_SIGNAL], 11, {1: _ints(0, 0, -2, 0, 0, 3)}),
    "pad_v18_axes": Case(
        "Pad", [_IMAGE], 18, {1: _ints(2, 1, 0, 3), 2: _OMITTED, 3: _ints(-1, 2)}, mode="reflect"
    ),
    "pad_v19_wrap": Case("Pad", [_SIGNAL], 19, {1: _ints(0, 0, 3, 0, 0, 4)}, mode="wrap"),
    # Resize, nearest: each coordinate transformation and rounding, scales and sizes.
    "resize_torch_interpolate": Case(
        "Resize", [_SIGNAL], 13, {1: _OMITTED, 2: np.float32([1, 1, 2])},
        mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor",
    ),
    "resize_half_pixel_by_3": Case(
        "Resize", [_SIGNAL], 13, {1: _OMITTED, 2: np.float32([1, 1, 3])}, mode="nearest"
    ),
    "resize_sizes_align_corners": Case(
        "Resize", [_SIGNAL], 13, {1: _OMITTED, 2: _OMITTED, 3: _ints(2, 3, 17)},
        mode="nearest", coordinate_transformation_mode="align_corners",
    ),
    "resize_2d_pytorch_half_pixel_ceil": Case(
        "Resize", [_IMAGE], 13, {1: _OMITTED, 2: np.float32([1, 1, 2, 0.5])}, mode="nearest",
        coordinate_transformation_mode="pytorch_half_pixel", nearest_mode="round_prefer_ceil",
    ),
    "resize_v10": Case("Resize", [_SIGNAL], 10, {1: np.float32([1, 1, 2.5])}, mode="nearest"),
    "upsample_v9": Case("Upsample", [_IMAGE], 9, {1: np.float32([1, 1, 2, 3])}),
    # Pooling.
    "maxpool_ceil": Case(
        "MaxPool", [_IMAGE], 12, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 1],
        ceil_mode=1,
    ),
    "maxpool_dilated": Case(
        "MaxPool", [_IMAGE], 12, kernel_shape=[2, 2], dilations=[2, 2], strides=[1, 2]
    ),
    "maxpool_same_lower": Case(
        "MaxPool", [_SIGNAL], 8, kernel_shape=[4], strides=[3], auto_pad="SAME_LOWER"
    ),
    "avgpool_exclude_pad_ceil": Case(
        "AveragePool", [_IMAGE], 11, kernel_shape=[3, 2], strides=[2, 2], pads=[1, 1, 1, 1],
        ceil_mode=1,
    ),
    "avgpool_include_pad": Case(
        "AveragePool", [_IMAGE], 11, kernel_shape=[3, 3], strides=[3, 2], pads=[1, 0, 2, 1],
        ceil_mode=1, count_include_pad=1,
    ),
    "avgpool_dilated": Case(
        "AveragePool", [_SIGNAL], 19, kernel_shape=[3], dilations=[2], strides=[3], pads=[1, 2],
        ceil_mode=1, count_include_pad=1,
    ),
    "avgpool_same_upper": Case(
        "AveragePool", [_IMAGE], 7, kernel_shape=[2, 3], strides=[2, 2], auto_pad="SAME_UPPER"
    ),
    "avgpool_unpadded": Case("AveragePool", [_SIGNAL], 11, kernel_shape=[3], strides=[2]),
    "maxpool1d_unpadded": Case("MaxPool", [_SIGNAL], 12, kernel_shape=[2], strides=[2]),
    "global_average": Case("GlobalAveragePool", [_IMAGE], 1),
    "global_max": Case("GlobalMaxPool", [_SIGNAL], 1),
    # Normalization.
    "batchnorm_v9": Case(
        "BatchNormalization",
        [_IMAGE],
        9,
        {1: _normal(3), 2: _normal(3), 3: _normal(3), 4: np.abs(_normal(3)) + 0.5},
        epsilon=1e-3,
    ),
    "batchnorm_v15": Case(
        "BatchNormalization",
        [_SIGNAL],
        15,
        {1: _normal(3), 2: _normal(3), 3: _normal(3), 4: np.abs(_normal(3)) + 0.5},
    ),
    "layernorm": Case(
        "LayerNormalization",
        [_normal(2, 3, 4)],
        17,
        {1: _normal(3, 4), 2: _normal(3, 4)},
        outputs=(TensorProto.FLOAT,) * 3,
        axis=1,
    ),
    "layernorm_no_bias": Case("LayerNormalization", [_normal(2, 5), _normal(5)], 17),
    "instancenorm": Case("InstanceNormalization", [_IMAGE, _normal(3), _normal(3)], 6),
    # Softmax: flattened at axis (default 1) before opset 13, one axis (default -1) after.
    "softmax_v11_default": Case("Softmax", [_normal(2, 3, 4)], 11),
    "softmax_v11_axis2": Case("Softmax", [_normal(2, 3, 4)], 11, axis=2),
    "softmax_v13_default": Case("Softmax", [_normal(2, 3, 4)], 13),
    "logsoftmax_v11_axis0": Case("LogSoftmax", [_normal(2, 3, 4)], 11, axis=0),
    "logsoftmax_v13_axis1": Case("LogSoftmax", [_normal(2, 3, 4)], 13, axis=1),
    # Reductions: axes an attribute (ReduceSum before 13, the others before 18), then an input.
    "reducesum_v11": Case("ReduceSum", [_IMAGE], 11, axes=[1, -1]),
    "reducesum_v13": Case("ReduceSum", [_IMAGE], 13, {1: _ints(2)}, keepdims=0),
    "reducesum_v13_all": Case("ReduceSum", [_IMAGE], 13, keepdims=0),
    "reducesum_v13_noop": Case("ReduceSum", [_IMAGE], 13, noop_with_empty_axes=1),
    "reducemean_v13": Case("ReduceMean", [_IMAGE], 13, axes=[2, 3]),
    "reducemean_v18": Case("ReduceMean", [_IMAGE], 18, {1: _ints(-2)}, keepdims=0),
    "reducemax_v13": Case("ReduceMax", [_IMAGE], 13, axes=[0], keepdims=0),
    "reducemax_v18": Case("ReduceMax", [_IMAGE], 18, {1: _ints(1, 3)}),
    "reducemin_v13": Case("ReduceMin", [_SIGNAL], 13),
    "reduceprod_v13": Case("ReduceProd", [_SIGNAL], 13, axes=[1, 2]),
    "argmax_last": Case(
        "ArgMax", [np.round(_normal(3, 5))], 12, outputs=(TensorProto.INT64,), axis=1,
        select_last_index=1,
    ),
    "argmin": Case("ArgMin", [_normal(3, 5)], 12, outputs=(TensorProto.INT64,), keepdims=0),
    # Matrix products.
    "matmul_batched": Case("MatMul", [_normal(2, 3, 4, 5), _normal(5, 6)], 13),
    "matmul_vector": Case("MatMul", [_normal(4), _normal(2, 4, 3)], 13),
    "gemm": Case("Gemm", [_normal(3, 4), _normal(4, 5)], 11, {2: _normal(5)}),
    "gemm_transposed": Case(
        "Gemm", [_normal(4, 3), _normal(5, 4), _normal(3, 1)], 13, transA=1, transB=1,
        alpha=0.5, beta=2.0,
    ),
    "gemm_v7_no_c": Case("Gemm", [_normal(3, 4), _normal(4, 5)], 11, alpha=1.5),
    "einsum": Case("Einsum", [_normal(2, 3, 4), _normal(2, 4, 5)], 12, equation="bij,bjk->bik"),
    "einsum_sum": Case("Einsum", [_normal(2, 3, 4), _normal(2, 3, 1)], 12, equation="bth,bto->bh"),
    # Elementwise.
    "pow": Case("Pow", [np.abs(_normal(2, 3)), _normal(3)], 13),
    "pow_int_exponent": Case("Pow", [_normal(2, 3)], 13, {1: _ints(3)}),
    "sqrt": Case("Sqrt", [np.abs(_normal(2, 3))], 13),
    "exp": Case("Exp", [_normal(2, 3)], 13),
    "log": Case("Log", [np.abs(_normal(2, 3))], 13),
    "abs": Case("Abs", [_normal(2, 3)], 13),
    "erf": Case("Erf", [_normal(2, 3)], 13),
    "reciprocal": Case("Reciprocal", [_normal(2, 3)], 13),
    "floor": Case("Floor", [_normal(2, 3) * 3], 13),
    "ceil": Case("Ceil", [_normal(2, 3) * 3], 13),
    "sign": Case("Sign", [np.round(_normal(2, 3))], 13),
    "max_variadic": Case("Max", [_normal(2, 3), _normal(3), _normal(1, 3)], 13),
    "min": Case("Min", [_normal(2, 3), _normal(2, 1)], 13),
    "sum": Case("Sum", [_normal(2, 3), _normal(3), _normal(2, 3)], 13),
    "mean": Case("Mean", [_normal(2, 3), _normal(3)], 13),
    "clip_v6": Case("Clip", [_normal(2, 3)], 6, min=-0.5, max=0.7),
    "clip_v6_defaults": Case("Clip", [_normal(2, 3)], 6),
    "clip_v13": Case("Clip", [_normal(2, 3)], 13, {1: np.float32(-0.3), 2: np.float32(0.4)}),
    "clip_v13_max_only": Case("Clip", [_normal(2, 3)], 13, {1: _OMITTED, 2: np.float32(0.4)}),
    # Activations, with their default and given attributes.
    "relu": Case("Relu", [_normal(2, 3)], 14),
    "leaky_relu": Case("LeakyRelu", [_normal(2, 3)], 6),
    "leaky_relu_alpha": Case("LeakyRelu", [_normal(2, 3)], 16, alpha=0.3),
    "elu": Case("Elu", [_normal(2, 3)], 6, alpha=0.7),
    "selu": Case("Selu", [_normal(2, 3)], 6),
    "sigmoid": Case("Sigmoid", [_normal(2, 3)], 13),
    "tanh": Case("Tanh", [_normal(2, 3)], 13),
    "hard_sigmoid": Case("HardSigmoid", [_normal(2, 3) * 4], 6),
    "hard_sigmoid_keras": Case("HardSigmoid", [_normal(2, 3) * 4], 6, alpha=1 / 6, beta=0.5),
    "hard_swish": Case("HardSwish", [_normal(2, 3) * 4], 14),
    "softplus": Case("Softplus", [_WIDE], 1),
    "softsign": Case("Softsign", [_normal(2, 3)], 1),
    "prelu": Case("PRelu", [_normal(2, 3, 4)], 16, {1: _normal(3, 1)}),
    "gelu": Case("Gelu", [_normal(2, 3) * 3], 20),
    "gelu_tanh": Case("Gelu", [_normal(2, 3) * 3], 20, approximate="tanh"),
    # By index: ties in TopK keep the lower index first; negative indices count from the end.
    "topk_v11_ties": Case(
        "TopK", [np.float32([[3, 1, 3, 2, 1], [0, 5, 5, 5, 1]])], 11, {1: _ints(3)},
        outputs=(TensorProto.FLOAT, TensorProto.INT64),
    ),
    "topk_v11_smallest_axis0": Case(
        "TopK", [np.float32([[3, 1], [1, 1], [2, 0]])], 11, {1: _ints(2)},
        outputs=(TensorProto.FLOAT, TensorProto.INT64), axis=0, largest=0,
    ),
    "topk_v1": Case(
        "TopK", [_normal(3, 5)], 1, outputs=(TensorProto.FLOAT, TensorProto.INT64), k=2
    ),
    "gather_elements_negative": Case(
        "GatherElements", [_normal(3, 4)], 13, {1: _ints(0, -1, 2, -4, 1, 1).reshape(3, 2)},
        axis=1,
    ),
    "scatter_elements_inverse": Case(
        "ScatterElements", [_ints(0, 0, 0, 0), _ints(2, 0, 3, 1), _ints(0, 1, 2, 3)], 13,
        outputs=(TensorProto.INT64,),
    ),
    "scatter_elements_axis1": Case(
        "ScatterElements", [_normal(2, 4), _normal(2, 2)], 16,
        {1: _ints(3, -4, 1, 2).reshape(2, 2)}, axis=1,
    ),
    # Dropout in inference: the input, and a mask of ones.
    "dropout_v7": Case("Dropout", [_normal(2, 3)], 7, ratio=0.4),
    "dropout_v13_mask": Case(
        "Dropout", [_normal(2, 3)], 13, {1: np.float32(0.3)},
        outputs=(TensorProto.FLOAT, TensorProto.BOOL),
    ),
    "dropout_v13_not_training": Case(
        "Dropout", [_normal(2, 3)], 13, {1: np.float32(0.3), 2: np.bool_(False)}
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_operator_runs_as_onnxruntime_runs_it(name: str) -> None:
    case = CASES[name]
    model = case.model()
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {f"x{k}": a for k, a in _fed(case)})
    with torch.no_grad():
        actual = onnx_module(model)(*[torch.from_numpy(np.asarray(a)) for _, a in _fed(case)])
    actual = actual if isinstance(actual, tuple) else (actual,)
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert tuple(got.shape) == want.shape
        assert got.numpy().dtype == want.dtype
        np.testing.assert_allclose(got.numpy(), want, atol=1e-5, rtol=1e-5)


def _fed(case: Case) -> list[tuple[int, np.ndarray]]:
    indices = [k for k in range(len(case.fed) + len(case.fixed)) if k not in case.fixed]
    return list(zip(indices, case.fed))


def test_every_operator_of_the_table_has_a_case_here_and_is_written_once() -> None:
    assert set(STANDARD_OPS) == {case.op for case in CASES.values()}
    assert not GLUE_OPS & set(STANDARD_OPS)


def test_float64_runs_the_same_operators_in_float64() -> None:
    case = CASES["avgpool_include_pad"]
    session = ort.InferenceSession(
        case.model().SerializeToString(), providers=["CPUExecutionProvider"]
    )
    (expected,) = session.run(None, {"x0": _IMAGE})
    y = onnx_module(case.model(), dtype=torch.float64)(torch.from_numpy(_IMAGE.astype(np.float64)))
    assert y.dtype == torch.float64
    np.testing.assert_allclose(y.numpy(), expected, atol=1e-6)


def test_an_operator_outside_the_table_is_refused_naming_itself() -> None:
    model = Case("NonZero", [_normal(2, 5)], 13, outputs=(TensorProto.INT64,)).model()
    with pytest.raises(UnsupportedFeatureError, match=r"NonZero \(1 node: 'the_node'\)"):
        onnx_module(model)


@pytest.mark.parametrize(
    ("case", "refused"),
    [
        (
            Case("Dropout", [_normal(2, 3)], 13, {1: np.float32(0.3), 2: np.bool_(True)}),
            r"Dropout node 'the_node': runs in training mode",
        ),
        (
            Case(
                "BatchNormalization",
                [_SIGNAL],
                15,
                {1: _normal(3), 2: _normal(3), 3: _normal(3), 4: _normal(3) ** 2},
                training_mode=1,
            ),
            r"BatchNormalization node 'the_node': training_mode=1",
        ),
        (
            Case(
                "MaxPool",
                [_SIGNAL],
                12,
                outputs=(TensorProto.FLOAT, TensorProto.INT64),
                kernel_shape=[2],
            ),
            r"MaxPool node 'the_node': its Indices output",
        ),
        (
            Case("ScatterElements", [_normal(4), _ints(1, 2), _normal(2)], 16, reduction="add"),
            r"ScatterElements node 'the_node': reduction='add' is not run",
        ),
        (
            Case("Pad", [_SIGNAL], 11, {1: _ints(0, 0, 1, 0, 0, 1)}, mode="mirror"),
            r"Pad node 'the_node': mode='mirror'",
        ),
        (
            Case("Resize", [_SIGNAL], 13, {1: _OMITTED, 2: np.float32([1, 1, 2])}, mode="linear"),
            r"Resize node 'the_node': mode='linear'",
        ),
        (
            Case(
                "Resize",
                [_SIGNAL],
                13,
                {1: _OMITTED, 2: np.float32([1, 1, 2])},
                coordinate_transformation_mode="tf_crop_and_resize",
            ),
            r"Resize node 'the_node': coordinate_transformation_mode='tf_crop_and_resize'",
        ),
    ],
)
def test_what_the_interpreter_cannot_run_exactly_is_refused_naming_the_node(
    case: Case, refused: str
) -> None:
    module = onnx_module(case.model())
    with pytest.raises(UnsupportedFeatureError, match=refused):
        module(*[torch.from_numpy(np.asarray(a)) for _, a in _fed(case)])


def test_size_runs_as_onnxruntime_runs_it() -> None:
    """``Size`` is glue (a shape operator, as ``Shape``), run like the table's operators."""
    case = Case("Size", [_normal(2, 3, 5)], 13, outputs=(TensorProto.INT64,))
    session = ort.InferenceSession(
        case.model().SerializeToString(), providers=["CPUExecutionProvider"]
    )
    (expected,) = session.run(None, {"x0": case.fed[0]})
    with torch.no_grad():
        actual = onnx_module(case.model())(torch.from_numpy(case.fed[0]))
    assert actual.numpy().dtype == expected.dtype and int(actual) == int(expected) == 30


@pytest.mark.parametrize("fmod", [0, 1])
@pytest.mark.parametrize("dtype", [np.int64, np.float32])
def test_mod_runs_as_onnxruntime_runs_it(fmod: int, dtype: type) -> None:
    """``Mod`` is glue (a shape operator exports write for attention heads), run on data
    with either sign convention: ``fmod=1`` the dividend's sign, 0 the divisor's."""
    if dtype == np.float32 and not fmod:
        pytest.skip("ONNX defines Mod of floats with fmod=1 only")
    a = np.array([[7, -7, 5, -5], [3, -8, 0, 9]], dtype)
    b = np.array([3, 3, -2, -2], dtype)
    case = Case(
        "Mod", [a, b], 13, outputs=(helper.np_dtype_to_tensor_dtype(np.dtype(dtype)),), fmod=fmod
    )
    session = ort.InferenceSession(
        case.model().SerializeToString(), providers=["CPUExecutionProvider"]
    )
    (expected,) = session.run(None, {"x0": a, "x1": b})
    with torch.no_grad():
        actual = onnx_module(case.model())(torch.from_numpy(a), torch.from_numpy(b))
    np.testing.assert_array_equal(actual.numpy(), expected)
