"""Keras → PyTorch: a recurrent layer, a whole model or a model file, checked by running both."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .._imports import require
from ..comparison import check_port, least_precise
from .verification import (
    describe,
    require_keras_adapter,
    require_torch_adapter,
    verification_input,
)


def keras_to_torch(
    obj: Any,
    *,
    verify: bool = True,
    seed: int = 0,
    custom_layers: Mapping[str, Callable[..., Any]] | None = None,
    custom_objects: Mapping[str, Any] | None = None,
) -> Any:
    """Convert a Keras recurrent layer, a whole Keras model or a model file to PyTorch.

    Accepts ``LSTM``, ``GRU``, ``SimpleRNN``, ``Bidirectional`` of those (any merge mode,
    custom ``backward_layer``) and ``keras.Sequential`` stacks of them. The result is a
    :class:`~xframe_bilstm.adapters.torch.KerasRecurrent` whose ``forward`` takes what the
    Keras layer takes (batch-first input, optional initial states in Keras order, and
    right-padding ``lengths`` in place of a mask) and returns what it returns; its ``rnns``
    are native ``nn.LSTM``/``nn.GRU``/``nn.RNN`` modules wherever those compute the layer
    exactly. A stateful layer's module starts from the layer's current states.

    A whole Keras 3 or tf_keras model (live, or a ``.keras``/``.h5`` file, read without
    executing anything in it) becomes a :class:`~xframe_bilstm.models.to_torch.KerasModel`,
    or a ``KerasRecurrent`` when it is only recurrent layers in a chain.

    What is verified against (``verify=True``):

    - a live layer or model: its own ``call``, run by Keras;
    - a Keras 3 file, where Keras is installed: the model as
      ``keras.saving.load_model(path, safe_mode=True, compile=False)`` loads and runs it;
    - a tf_keras (Keras 2) file, where tf_keras is installed: the model as
      ``tf_keras.models.load_model(path, compile=False, safe_mode=True)`` loads and runs
      it (files with ``Lambda`` code are refused by the reader before anything loads);
    - otherwise (no TensorFlow, a Keras 2 file without tf_keras, or a file Keras cannot
      load or run here): the float64 reference reading of the file, and the result says so.

    Dtypes: the port holds the Keras variables' dtype and computes in it, as torch modules
    do: float32 under a mixed-precision policy (``"mixed_float16"``, ``"mixed_bfloat16"``,
    whose layers keep float32 variables and compute in float16 or bfloat16), float16 or
    bfloat16 for layers built in those dtypes. The comparison allows the rounding of the
    less precise of the two compute dtypes (:func:`~xframe_bilstm.comparison.derived_tolerance`
    with that dtype's epsilon). The module says all of this in three attributes:

    - ``compute_dtype``: the dtype the port computes in (e.g. ``"float32"``);
    - ``keras_compute_dtype``: the least precise dtype the Keras original computes in
      (e.g. ``"float16"`` for ``"mixed_float16"``; ``None`` when nothing ran Keras);
    - ``verified_against``: what the port was checked against, in words (``None`` with
      ``verify=False``).

    Custom layers (classes of your own) are ported by factories you map to their class
    names, ``custom_layers={"SqueezeLayer": factory}``: ``factory(config, weights)`` gets the
    layer's configuration (a dict, as its ``get_config()`` returns it) and its weights as
    numpy arrays in the order the layer created them (``layer.get_weights()``), and returns
    an ``nn.Module`` that takes and returns tensors in the Keras layout (batch first,
    channels last). Nothing is imported from a file. The verification runs the Keras model
    itself, so Keras must know the class: registered with
    ``keras.saving.register_keras_serializable`` or passed in ``custom_objects``; the float64
    reference cannot run a custom layer, and says so by name.

    Args:
        obj: a built Keras layer, ``Sequential`` or model, or the path of a model file.
        verify: run both on a seeded input and raise if they disagree.
        seed: seed of that input.
        custom_layers: class name (or Keras's registered ``package>Name``) -> factory.
        custom_objects: passed to Keras's loader for a file (as ``load_model`` takes it).

    Returns:
        A ``torch.nn.Module``.

    Raises:
        ToleranceExceededError: the port and what it is verified against disagree.
        UnsupportedFeatureError: a layer, option or file that cannot be ported, named.

    Example:
        >>> import torch, keras
        >>> layer = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True))
        >>> _ = layer(np.zeros((1, 4, 2), "float32"))
        >>> module = keras_to_torch(layer)
        >>> module(torch.zeros(1, 4, 2)).shape
        torch.Size([1, 4, 6])
        >>> sorted(module.rnns[0].state_dict())[:2]
        ['bias_hh_l0', 'bias_hh_l0_reverse']
        >>> module.compute_dtype, module.verified_against
        ('float32', "the Keras layer's own call")
    """
    from ..custom import custom_layers_in_use
    from ..keras_files import is_model_path
    from ..models import port

    if is_model_path(obj):
        require("torch")
        with custom_layers_in_use(custom_layers):
            return port.port_file(obj, verify=verify, seed=seed, custom_objects=custom_objects)
    from ..models.live import is_whole_keras_model

    if is_whole_keras_model(obj):
        require("torch")
        with custom_layers_in_use(custom_layers):
            return port.port_live_model(obj, verify=verify, seed=seed)
    torch_adapter = require_torch_adapter()
    keras_adapter = require_keras_adapter()
    # Views of the variables: the module copies them into its parameters right away.
    stack = keras_adapter.keras_to_canonical(obj, borrow=True)
    module = torch_adapter.canonical_to_torch(stack)
    keras_dtype = keras_adapter.compute_dtype(obj)
    port.describe_port(module, keras_dtype, None)
    # A stateful layer may be mid-sequence: the module carries on from the same states.
    states = keras_adapter.snapshot_states(obj)
    if states:
        module.load_states(states)
    if verify:
        x = verification_input(stack, seed=seed, batch=keras_adapter.fixed_batch_size(obj))
        try:
            expected = keras_adapter.run_keras(obj, x)
        finally:
            keras_adapter.restore_states(obj, states)
        actual = torch_adapter.run_torch(module, x)
        if states:
            module.load_states(states)
        check_port(
            stack,
            x,
            expected,
            actual,
            label=f"Keras {describe(obj)} (computes in {keras_dtype}) vs its torch module "
            f"(computes in {module.compute_dtype})",
            dtype=least_precise(x.dtype, keras_dtype),
        )
        module.verified_against = "the Keras layer's own call"
    return module
