"""numpy arrays into tensors that own their memory: values, dtypes and no sharing."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xframe_bilstm.adapters.torch.tensors import owned_tensor  # noqa: E402
from xframe_bilstm.convolution import torch_kernel, torch_kernel_view  # noqa: E402


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@pytest.mark.parametrize(
    "array",
    [
        _read_only(np.arange(12, dtype="float32").reshape(3, 4)),
        _read_only(np.arange(12, dtype="float32").reshape(3, 4)).T,  # transposed view
        np.arange(24, dtype="float64").reshape(2, 3, 4).transpose(2, 0, 1),
        np.arange(6, dtype=">f4").reshape(2, 3),  # big-endian, as a foreign file may hold
        np.array(2.5, dtype="float32"),
        np.arange(4, dtype="int64"),
    ],
)
def test_owned_tensor_equals_torch_tensor_and_owns_its_memory(array: np.ndarray) -> None:
    tensor = owned_tensor(array)
    expected = torch.tensor(array.astype(array.dtype.newbyteorder("=")))
    assert tensor.dtype == expected.dtype
    assert torch.equal(tensor, expected)
    assert tensor.is_contiguous()
    assert not np.shares_memory(tensor.numpy(), array)
    tensor.add_(1)  # writable, and the source is untouched
    assert torch.equal(torch.tensor(array.astype(array.dtype.newbyteorder("="))), expected)


def test_owned_tensor_keeps_bfloat16_bits() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    array = np.array([1.0, -2.5, 3.140625], dtype=ml_dtypes.bfloat16)
    tensor = owned_tensor(array)
    assert tensor.dtype == torch.bfloat16
    assert tensor.view(torch.int16).tolist() == array.view(np.int16).tolist()


def test_torch_kernel_view_is_torch_kernel_without_the_copy() -> None:
    kernel = np.arange(3 * 5 * 2 * 4, dtype="float32").reshape(3, 5, 2, 4)
    view = torch_kernel_view(kernel)
    assert np.shares_memory(view, kernel)
    np.testing.assert_array_equal(view, torch_kernel(kernel))
    # torch's layout, independently: out channel o, input channel i at kernel position (a, b).
    assert view[3, 1, 2, 4] == kernel[2, 4, 1, 3]
