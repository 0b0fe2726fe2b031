"""The reference's convolutions, padding and cropping on hand-derived cases."""

from __future__ import annotations

import numpy as np
import pytest

from xframe_bilstm.reference.convolution import conv_reference, pad_or_crop_reference


def _options(**changes: object) -> dict[str, object]:
    options: dict[str, object] = {
        "rank": 1,
        "kernel_size": (3,),
        "strides": (1,),
        "padding": "valid",
        "dilation_rate": (1,),
        "groups": 1,
        "data_format": "channels_last",
    }
    options.update(changes)
    return options


def _run(x: list[float], **changes: object) -> list[float]:
    kernel = np.ones((3, 1, 1))
    y = conv_reference(_options(**changes), {"kernel": kernel}, np.array(x)[None, :, None], float)
    return y[0, :, 0].tolist()


def test_strided_same_puts_the_odd_zero_at_the_end() -> None:
    # 4 steps, stride 2: 2 outputs need 5 steps: [1, 2, 3, 4, 0] (torch's symmetric
    # padding would read [0, 1, 2, 3, 4] and give [3, 9]).
    assert _run([1, 2, 3, 4], padding="same", strides=(2,)) == [6.0, 7.0]


def test_same_with_stride_one_pads_both_sides() -> None:
    assert _run([1, 2, 3], padding="same") == [3.0, 6.0, 5.0]


def test_causal_dilated_pads_the_whole_span_before() -> None:
    # span 5: y[t] = x[t-4] + x[t-2] + x[t]
    assert _run([1, 2, 3, 4, 5], padding="causal", dilation_rate=(2,)) == [1, 2, 4, 6, 9]


def test_groups_read_their_own_channels() -> None:
    x = np.array([[[1.0, 10.0]]])  # one step, two channels
    kernel = np.array([[[2.0, 3.0]]])  # (k=1, in/groups=1, filters=2)
    y = conv_reference(_options(kernel_size=(1,), groups=2), {"kernel": kernel}, x, float)
    assert y.tolist() == [[[2.0, 30.0]]]


def test_channels_first_convolves_the_last_axis() -> None:
    x = np.array([[[1.0, 2.0, 3.0]]])  # (batch, channels=1, steps=3)
    y = conv_reference(
        _options(data_format="channels_first"), {"kernel": np.ones((3, 1, 1))}, x, float
    )
    assert y.tolist() == [[[6.0]]]


@pytest.mark.parametrize(
    ("kind", "key", "expected"),
    [("zero_padding", "padding", [0, 1, 2, 3, 0, 0]), ("cropping", "cropping", [2])],
)
def test_padding_and_cropping(kind: str, key: str, expected: list[float]) -> None:
    x = np.array([1.0, 2.0, 3.0])[None, :, None]
    pairs = ((1, 2),) if kind == "zero_padding" else ((1, 1),)
    options = {key: pairs, "data_format": "channels_last"}
    assert pad_or_crop_reference(kind, options, x)[0, :, 0].tolist() == expected
