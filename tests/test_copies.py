"""Copies into a destination's orientation: values, layout and memory of their own."""

from __future__ import annotations

import numpy as np
import pytest

from xframe_bilstm.copies import BAND, contiguous_copy, copy_into, read_only_view


@pytest.mark.parametrize("shape", [(5, 3 * BAND + 7), (1, 1), (BAND, 1), (64, 256)])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_transposed_array_is_copied_exactly_into_c_order(shape, dtype) -> None:
    source = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    copy = contiguous_copy(source.T)
    assert copy.flags.c_contiguous and copy.flags.writeable
    assert copy.dtype == source.dtype and copy.shape == source.T.shape
    assert np.array_equal(copy, np.ascontiguousarray(source.T))  # numpy's own transpose
    assert not np.shares_memory(copy, source)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda a: a, id="c-order"),
        pytest.param(lambda a: a[0], id="1-d"),
        pytest.param(lambda a: a[:, ::2], id="strided"),
        pytest.param(lambda a: read_only_view(a), id="read-only"),
    ],
)
def test_other_arrays_are_copied_too(make) -> None:
    source = np.arange(24.0).reshape(4, 6)
    array = make(source)
    copy = contiguous_copy(array)
    assert np.array_equal(copy, array) and copy.flags.c_contiguous and copy.flags.writeable
    assert not np.shares_memory(copy, source)


def test_bfloat16_is_copied_bit_for_bit() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bits = np.random.default_rng(1).integers(0, 2**15, (7, 40)).astype(np.uint16)
    source = bits.view(ml_dtypes.bfloat16)
    copy = contiguous_copy(source.T)
    assert copy.dtype == source.dtype
    assert np.array_equal(copy.view(np.uint16), np.ascontiguousarray(bits.T))


def test_read_only_view_shares_memory_and_leaves_the_source_writable() -> None:
    source = np.zeros((2, 3))
    view = read_only_view(source)
    with pytest.raises(ValueError, match="read-only"):
        view[0, 0] = 1.0
    source[0, 0] = 2.0  # the source's owner may still write: the view follows
    assert view[0, 0] == 2.0 and source.flags.writeable


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda a: a.T, id="transposed"),
        pytest.param(lambda a: a.T[3:9], id="rows-of-a-transpose"),
        pytest.param(lambda a: a, id="c-order"),
        pytest.param(lambda a: a[0], id="1-d"),
        pytest.param(lambda a: read_only_view(a).T[::-1], id="reversed-rows"),
    ],
)
def test_copy_into_writes_the_values_into_the_destination(make) -> None:
    source = np.random.default_rng(2).standard_normal((2 * BAND + 3, 12)).astype("float32")
    array = make(source)
    out = np.full(array.shape, np.nan, dtype=array.dtype)
    copy_into(out, array)
    assert np.array_equal(out, np.array(array.tolist(), dtype=array.dtype))  # element by element
    assert not np.shares_memory(out, source)
