"""Public converters between Keras 3 and PyTorch, each checked by running both sides.

Both go through the canonical form: Keras layer → :class:`RecurrentStack` → torch module,
and back. With ``verify=True`` (the default) the source and the result run on one small
seeded input, and :class:`~xframe_bilstm.errors.ToleranceExceededError` is raised with the
numbers when they differ by more than float rounding explains
(:func:`~xframe_bilstm.comparison.derived_tolerance`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._imports import require
from .canonical import RecurrentStack, output_names
from .comparison import compare_outputs, derived_tolerance
from .errors import ToleranceExceededError

VERIFY_BATCH = 2
VERIFY_STEPS = 7


def keras_to_torch(obj: Any, *, verify: bool = True, seed: int = 0) -> Any:
    """Convert a Keras recurrent layer, a whole Keras model or a model file to PyTorch.

    Accepts ``LSTM``, ``GRU``, ``SimpleRNN``, ``Bidirectional`` of those (any merge mode,
    custom ``backward_layer``) and ``keras.Sequential`` stacks of them. The result is a
    :class:`~xframe_bilstm.adapters.torch.KerasRecurrent` whose ``forward`` takes what the
    Keras layer takes (batch-first input, optional initial states in Keras order, and
    right-padding ``lengths`` in place of a mask) and returns what it returns; its ``rnns``
    are native ``nn.LSTM``/``nn.GRU``/``nn.RNN`` modules wherever those compute the layer
    exactly. A stateful layer's module starts from the layer's current states.

    Args:
        obj: a built Keras layer or ``Sequential``.
        verify: run both on a seeded input and raise if they disagree.
        seed: seed of that input.

    Returns:
        A ``torch.nn.Module``.

    Example:
        >>> import torch, keras
        >>> layer = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True))
        >>> _ = layer(np.zeros((1, 4, 2), "float32"))
        >>> module = keras_to_torch(layer)
        >>> module(torch.zeros(1, 4, 2)).shape
        torch.Size([1, 4, 6])
        >>> sorted(module.rnns[0].state_dict())[:2]
        ['bias_hh_l0', 'bias_hh_l0_reverse']
    """
    from .keras_files import is_model_path

    if is_model_path(obj):
        return _port_file(obj, verify=verify, seed=seed)
    from .models.live import is_whole_keras_model

    if is_whole_keras_model(obj):
        return _port_live_model(obj, verify=verify, seed=seed)
    torch_adapter = _torch_adapter()
    keras_adapter = _keras_adapter()
    stack = keras_adapter.keras_to_canonical(obj)
    module = torch_adapter.canonical_to_torch(stack)
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
        _check(stack, x, expected, actual, f"Keras {_describe(obj)} vs its torch module")
    return module


def _port_file(path: Any, *, verify: bool, seed: int) -> Any:
    require("torch")
    from .keras_files import read_model
    from .models.port import port_graph

    return port_graph(read_model(path), verify=verify, seed=seed)


def _port_live_model(model: Any, *, verify: bool, seed: int) -> Any:
    require("torch")
    from .models.live import graph_from_keras
    from .models.port import port_graph

    def run_keras_model(inputs: Any) -> tuple[np.ndarray, ...]:
        outputs = model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return tuple(np.asarray(output) for output in outputs)

    return port_graph(
        graph_from_keras(model),
        verify=verify,
        seed=seed,
        expected=run_keras_model,
        label=f"Keras {_describe(model)} vs its torch port",
    )


def torch_to_keras(obj: Any, *, verify: bool = True, seed: int = 0) -> Any:
    """Convert an ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (or a converted module) to Keras 3.

    Native modules of any ``num_layers``, ``bidirectional``, ``batch_first`` and ``bias``
    become one Keras layer (``num_layers=1``) or a ``keras.Sequential`` of layers with
    ``return_sequences=True``; bidirectional ones become ``Bidirectional(merge_mode="concat")``.
    The Keras model takes batch-first input and returns the torch module's ``output`` in
    batch-first layout. Keras's last layer returns no states; the torch ``h_n[2*l + d]``
    (layer ``l``, direction ``d``) is the final state of Keras layer ``l``'s forward
    (``d=0``) or backward (``d=1``) half. ``bias_ih + bias_hh`` become Keras's one bias (the
    only step that is not bit-exact: one float addition). A ``dropout`` between stacked
    layers becomes ``keras.layers.Dropout`` layers between them. ``proj_size`` raises
    :class:`~xframe_bilstm.errors.UnsupportedFeatureError`.

    ``obj`` may also be the path of a state_dict file of such a module (``torch.save`` of
    its ``state_dict()``, read with ``weights_only=True``, or ``.safetensors``; the
    configuration is inferred from the names and shapes), or an ``nn.Sequential``-like
    module of ``Embedding``, recurrent modules, ``Linear``, ``Dropout`` and activations,
    which becomes a ``keras.Sequential`` (:mod:`xframe_bilstm.models.from_torch`).

    Example:
        >>> import torch
        >>> layer = torch_to_keras(torch.nn.GRU(2, 3, batch_first=True))
        >>> type(layer).__name__, layer.reset_after
        ('GRU', True)
    """
    torch = require("torch")
    from .keras_files import is_model_path
    from .models import from_torch

    if is_model_path(obj):  # a state_dict file of one nn.LSTM/nn.GRU/nn.RNN
        return torch_to_keras(from_torch.load_state_dict_module(obj), verify=verify, seed=seed)
    torch_adapter = _torch_adapter()
    if not isinstance(obj, torch_adapter.KerasRecurrent) and from_torch.is_sequential_like(obj):
        return _sequential_to_keras(obj, verify=verify, seed=seed)
    keras_adapter = _keras_adapter()
    stack = torch_adapter.torch_to_canonical(obj)
    layer = keras_adapter.canonical_to_keras(
        stack,
        batch_size=VERIFY_BATCH if stack.stateful else None,
        # torch's dropout acts between stacked layers in training; Keras Dropout layers do too.
        dropout=float(getattr(obj, "dropout", 0.0)),
    )
    if verify:
        x = verification_input(stack, seed=seed)
        was_training = obj.training
        obj.eval()
        try:
            if isinstance(obj, torch_adapter.KerasRecurrent):
                expected = torch_adapter.run_torch(obj, x)
                obj.reset_states()
            else:
                expected = (_run_native(torch, obj, x),)
        finally:
            obj.train(was_training)
        actual = keras_adapter.run_keras(layer, x)
        keras_adapter.reset_keras_states(layer)
        _check(stack, x, expected, actual, f"torch {type(obj).__name__} vs its Keras layer")
    return layer


def _sequential_to_keras(module: Any, *, verify: bool, seed: int) -> Any:
    torch = require("torch")
    from .models import from_torch

    model = from_torch.sequential_to_keras(module)
    if verify:
        from .models.live import graph_from_keras
        from .models.reference import model_noise

        first = next(module.children())
        rng = np.random.default_rng(seed)
        x: np.ndarray
        if isinstance(first, torch.nn.Embedding):
            x = rng.integers(0, first.num_embeddings, (VERIFY_BATCH, VERIFY_STEPS))
        elif isinstance(first, torch.nn.RNNBase):
            x = rng.standard_normal((VERIFY_BATCH, VERIFY_STEPS, first.input_size))
        else:
            x = rng.standard_normal((VERIFY_BATCH, first.in_features))
        dtype = next(module.parameters()).dtype
        tensor = torch.as_tensor(x) if x.dtype.kind == "i" else torch.as_tensor(x, dtype=dtype)
        was_training = module.training
        module.eval()
        try:
            expected = from_torch.run_children(module, tensor).cpu().numpy()
        finally:
            module.train(was_training)
        inputs = [x.astype(np.int32) if x.dtype.kind == "i" else x.astype(np.float32)]
        actual = np.asarray(model(inputs[0], training=False))
        noise, _ = model_noise(graph_from_keras(model), inputs)
        result = compare_outputs(
            ["output"],
            [expected],
            [actual],
            atol=noise.tolerance(),
            label=f"torch {type(module).__name__} vs its Keras Sequential",
        )
        if not result:
            raise ToleranceExceededError(result.message())
    return model


def verification_input(
    stack: RecurrentStack, *, seed: int = 0, batch: int | None = None
) -> np.ndarray:
    """The seeded (B, T, D) input that ``verify=True`` runs, in the weights' dtype."""
    dtype = stack.layers[0].weights[0].kernel.dtype
    rng = np.random.default_rng(seed)
    shape = (batch or VERIFY_BATCH, VERIFY_STEPS, stack.input_size)
    return rng.standard_normal(shape).astype(dtype)


def _run_native(torch: Any, module: Any, x: np.ndarray) -> np.ndarray:
    dtype = next(module.parameters()).dtype
    inputs = torch.as_tensor(x, dtype=dtype)
    with torch.no_grad():
        output, _ = module(inputs if module.batch_first else inputs.transpose(0, 1))
    output = output if module.batch_first else output.transpose(0, 1)
    return output.numpy()


def _check(
    stack: RecurrentStack,
    x: np.ndarray,
    expected: tuple[np.ndarray, ...],
    actual: tuple[np.ndarray, ...],
    label: str,
) -> None:
    names = output_names(stack)[: len(expected)]
    tolerance = derived_tolerance(stack, x, dtype=x.dtype)
    result = compare_outputs(names, expected, actual, atol=tolerance, label=label)
    if not result:
        raise ToleranceExceededError(result.message())


def _describe(obj: Any) -> str:
    return f"{type(obj).__name__} {getattr(obj, 'name', '')!r}".strip()


def _torch_adapter() -> Any:
    require("torch")
    from .adapters import torch as torch_adapter

    return torch_adapter


def _keras_adapter() -> Any:
    require("keras")
    from .adapters import keras as keras_adapter

    return keras_adapter


__all__ = ["keras_to_torch", "torch_to_keras", "verification_input"]
