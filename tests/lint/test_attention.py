"""lint()'s attention traps, read from Keras models' configurations."""

from __future__ import annotations

import pytest

keras = pytest.importorskip("keras")

from xframe_bilstm import lint  # noqa: E402

from .. import attention_models  # noqa: E402


def _traps(model: object) -> dict[tuple[str, str], str]:
    return {(trap.layer, trap.trap): trap.action for trap in lint(model)}


def test_a_masked_multi_head_attention_warns_of_fully_masked_rows_and_cleared_masks() -> None:
    traps = _traps(attention_models.multi_head_classifier(keras))
    assert traps[("mha", "fully masked query steps")] == "converted"
    # 'bilstm' is read by the attention and by the residual Add.
    assert traps[("mha", "masks cleared")] == "converted"


def test_an_attention_without_masks_has_no_trap() -> None:
    x = keras.Input((None, 4))
    model = keras.Model(x, keras.layers.Attention(name="att")([x, x]))
    assert not [trap for trap in lint(model) if trap.layer == "att"]
