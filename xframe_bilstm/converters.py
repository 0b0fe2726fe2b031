"""Public converters between Keras 3 and PyTorch, each checked by running both sides.

Both go through the canonical form: Keras layer → :class:`RecurrentStack` → torch module,
and back. With ``verify=True`` (the default) the source and the result run on one small
seeded input, and :class:`~xframe_bilstm.errors.ToleranceExceededError` is raised with the
numbers when they differ by more than float rounding explains
(:func:`~xframe_bilstm.comparison.check_port`). Whole models go through the model graph
(:mod:`xframe_bilstm.graph`) both ways.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ._imports import require
from .canonical import RecurrentStack
from .comparison import check_port, least_precise
from .errors import UnsupportedFeatureError

VERIFY_BATCH = 2
VERIFY_STEPS = 7


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
    from .custom import custom_layers_in_use
    from .keras_files import is_model_path
    from .models import port

    if is_model_path(obj):
        require("torch")
        with custom_layers_in_use(custom_layers):
            return port.port_file(obj, verify=verify, seed=seed, custom_objects=custom_objects)
    from .models.live import is_whole_keras_model

    if is_whole_keras_model(obj):
        require("torch")
        with custom_layers_in_use(custom_layers):
            return port.port_live_model(obj, verify=verify, seed=seed)
    torch_adapter = _torch_adapter()
    keras_adapter = _keras_adapter()
    stack = keras_adapter.keras_to_canonical(obj)
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
            label=f"Keras {_describe(obj)} (computes in {keras_dtype}) vs its torch module "
            f"(computes in {module.compute_dtype})",
            dtype=least_precise(x.dtype, keras_dtype),
        )
        module.verified_against = "the Keras layer's own call"
    return module


def torch_to_keras(
    obj: Any,
    *,
    verify: bool = True,
    seed: int = 0,
    submodule: str | None = None,
    custom_modules: Mapping[Any, Callable[[Any], Any]] | None = None,
) -> Any:
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
    :class:`~xframe_bilstm.errors.UnsupportedFeatureError`. A stateful module made by
    :func:`keras_to_torch` becomes a stateful layer for the same batch size, carrying on
    from the module's current states.

    ``obj`` may also be:

    - a module with children (an ``nn.Sequential``, or a module whose ``forward`` applies
      ``nn.Embedding``, recurrent modules, ``nn.Linear``, ``nn.Dropout`` and activations
      one after another, each recurrent one passing on ``rnn(x)[0]``), which is read as a
      model graph (:mod:`xframe_bilstm.models.torch_graph`) and rebuilt as a functional
      ``keras.Model``, as ``compare()`` rebuilds any whole model. ``forward`` is read
      first (:func:`~xframe_bilstm.models.torch_forward.check_forward`), even with
      ``verify=False``: anything else it does (a function between children, a sum over
      time, a child skipped) is refused by name, as is a ``forward`` that cannot be read.
    - the path of a state_dict file of one recurrent module (``torch.save`` of its
      ``state_dict()``, read with ``weights_only=True``, or ``.safetensors``; the
      configuration is inferred from the names and shapes), or of a training checkpoint
      holding one under ``"model_state_dict"``, ``"state_dict"`` or ``"model"`` (the
      result's ``checkpoint_key`` says which). Every key must be the recurrent module's: a
      whole model's state_dict is refused with the keys left out, and ``submodule`` picks
      the recurrent part. TorchScript archives are refused without being loaded.

    With ``verify=True`` the result runs on a seeded input next to the original's own
    computation: the module's ``forward``, ``module(x)``, in inference mode.

    Args:
        obj: the module, or the path of its state_dict file.
        verify: run both on a seeded input and raise
            :class:`~xframe_bilstm.errors.ToleranceExceededError` if they disagree.
        seed: seed of that input.
        submodule: convert only this part: ``obj.get_submodule(submodule)`` of a module,
            or the keys under ``submodule + "."`` of a file. The Keras result is then named
            after the part, and its ``converted_part`` attribute holds ``submodule``.
        custom_modules: for children of a module with children that are not among the
            supported modules: their class (or its name) -> ``factory(child)``, returning a
            Keras layer that computes what the child computes, weights included, in the
            same layout. The result is checked against ``module(x)``.

    Returns:
        A Keras layer, ``keras.Sequential`` or (for a module with children) ``keras.Model``.

    Example:
        >>> import torch
        >>> layer = torch_to_keras(torch.nn.GRU(2, 3, batch_first=True))
        >>> type(layer).__name__, layer.reset_after
        ('GRU', True)
        >>> class Tagger(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.lstm = torch.nn.LSTM(3, 4, batch_first=True)
        ...         self.fc = torch.nn.Linear(4, 2)
        ...     def forward(self, x):
        ...         return self.fc(torch.relu(self.lstm(x)[0]))
        >>> [layer.name for layer in torch_to_keras(Tagger()).layers]  # forward captured
        ['input', 'lstm', 'relu', 'fc']
        >>> part = torch_to_keras(Tagger(), submodule="lstm")
        >>> part.name, part.converted_part
        ('lstm', 'lstm')
    """
    require("torch")
    from .keras_files import is_model_path
    from .models import from_torch

    if is_model_path(obj):
        module = from_torch.load_state_dict_module(obj, submodule=submodule)
        result = _module_to_keras(module, verify=verify, seed=seed, name=submodule)
        if module.checkpoint_key is not None:
            result.checkpoint_key = module.checkpoint_key
    elif submodule is not None:
        part = _part_of(obj, submodule)
        result = _module_to_keras(
            part, verify=verify, seed=seed, name=submodule, custom_modules=custom_modules
        )
    else:
        return _module_to_keras(obj, verify=verify, seed=seed, custom_modules=custom_modules)
    if submodule is not None:
        result.converted_part = submodule
    return result


def _part_of(module: Any, submodule: str) -> Any:
    """``module.get_submodule(submodule)``, or a refusal naming the children there are."""
    torch = require("torch")
    if not isinstance(module, torch.nn.Module):
        raise UnsupportedFeatureError(
            f"submodule={submodule!r} needs a torch module or a state_dict file; got "
            f"{type(module).__name__}"
        )
    try:
        return module.get_submodule(submodule)
    except AttributeError as error:
        children = ", ".join(repr(name) for name, _ in module.named_children()) or "none"
        raise UnsupportedFeatureError(
            f"{type(module).__name__} has no submodule {submodule!r} ({error}); its children: "
            f"{children}"
        ) from error


def _module_to_keras(
    obj: Any,
    *,
    verify: bool,
    seed: int,
    name: str | None = None,
    custom_modules: Mapping[Any, Callable[[Any], Any]] | None = None,
) -> Any:
    """Convert a live module; see :func:`torch_to_keras`."""
    torch = require("torch")
    from .models.torch_graph import is_whole_module

    torch_adapter = _torch_adapter()
    if is_whole_module(obj):
        return _whole_module_to_keras(
            obj, verify=verify, seed=seed, name=name, custom_modules=custom_modules
        )
    keras_adapter = _keras_adapter()
    stack = torch_adapter.torch_to_canonical(obj)
    # A stateful module keeps its batch size and may be mid-sequence: the layer carries on.
    states = obj.carried_states() if isinstance(obj, torch_adapter.KerasRecurrent) else []
    batch = (getattr(obj, "batch_size", None) or VERIFY_BATCH) if stack.stateful else None
    layer = keras_adapter.canonical_to_keras(
        stack,
        name=name,
        batch_size=batch,
        # torch's dropout acts between stacked layers in training; Keras Dropout layers do too.
        dropout=float(getattr(obj, "dropout", 0.0)),
    )
    if states:
        keras_adapter.restore_states(layer, states)
    if verify:
        x = verification_input(stack, seed=seed, batch=batch)
        expected = _run_torch_source(torch, torch_adapter, obj, x, states)
        try:
            actual = keras_adapter.run_keras(layer, x)
        finally:
            if states:
                keras_adapter.restore_states(layer, states)
            else:
                keras_adapter.reset_keras_states(layer)
        label = f"torch {type(obj).__name__} vs its Keras layer"
        check_port(stack, x, expected, actual, label=label, dtype=x.dtype)
    return layer


def _run_torch_source(
    torch: Any, torch_adapter: Any, module: Any, x: np.ndarray, states: list[np.ndarray]
) -> tuple[np.ndarray, ...]:
    """The module's own outputs for ``x``, in inference mode; its states are put back."""
    with torch_adapter.evaluating(module):
        if not isinstance(module, torch_adapter.KerasRecurrent):
            return (_run_native(torch, module, x),)
        try:
            return tuple(torch_adapter.run_torch(module, x))
        finally:
            if states:
                module.load_states(states)
            else:
                module.reset_states()


def _whole_module_to_keras(
    module: Any,
    *,
    verify: bool,
    seed: int,
    name: str | None,
    custom_modules: Mapping[Any, Callable[[Any], Any]] | None = None,
) -> Any:
    """A module made of children, through its model graph; checked against ``module(x)``."""
    require("keras")
    from .adapters.keras.graph import graph_to_keras
    from .models.torch_graph import graph_from_torch

    graph = graph_from_torch(module, name=name, custom_modules=custom_modules)
    model = graph_to_keras(graph)
    if verify:
        torch = require("torch")
        from .inputs import example_inputs
        from .models.port import call_keras_model

        x = example_inputs(graph, batch=VERIFY_BATCH, steps=VERIFY_STEPS, seed=seed)[0]
        dtype = next(module.parameters()).dtype
        tensor = torch.as_tensor(x) if x.dtype.kind == "i" else torch.as_tensor(x, dtype=dtype)
        expected = _expected_of(torch, module, tensor)
        (actual,) = call_keras_model(model, [x if x.dtype.kind == "i" else x.astype("float32")])
        if expected.shape != actual.shape:
            raise UnsupportedFeatureError(
                f"torch {type(module).__name__}(x) returns shape {tuple(expected.shape)} for "
                f"an input of shape {x.shape}, its Keras port {actual.shape}; the port "
                "cannot match it. Convert the recurrent submodule alone (submodule=...)"
            )
        # The Keras model computes in float32; a float16/bfloat16 module rounds more.
        coarser = least_precise("float32", str(dtype).split(".")[-1])
        label = f"torch {type(module).__name__} vs its Keras model"
        from .models.torch_custom import check_custom_port, has_custom

        if has_custom(graph):  # no reference runs a user's class: the module's own rounding
            check_custom_port(graph, module, [x], [expected], [actual], label=label, dtype=coarser)
        else:
            check_port(graph, [x], [expected], [actual], label=label, dtype=coarser)
    return model


def _expected_of(torch: Any, module: Any, tensor: Any) -> np.ndarray:
    """``module(tensor)`` as numpy, or a refusal saying why it cannot be compared."""
    from .models.torch_forward import run_forward

    label = f"torch {type(module).__name__}(x)"
    try:
        output = run_forward(module, tensor)
    except Exception as error:  # the user's forward, on an input its first child accepts
        raise UnsupportedFeatureError(
            f"{label} raised {type(error).__name__} ({error}) on an input of shape "
            f"{tuple(tensor.shape)}, so its Keras port cannot be checked against it"
        ) from error
    if not isinstance(output, torch.Tensor):
        raise UnsupportedFeatureError(
            f"{label} returns a {type(output).__name__}; its Keras port returns one tensor"
        )
    from .adapters.torch import tensor_to_numpy

    return tensor_to_numpy(output)


def verification_input(
    stack: RecurrentStack, *, seed: int = 0, batch: int | None = None
) -> np.ndarray:
    """The seeded (B, T, D) input that ``verify=True`` runs, in the weights' dtype.

    Example:
        >>> from xframe_bilstm.canonical import DirectionWeights, RecurrentLayer
        >>> w = DirectionWeights(np.zeros((3, 2), "float16"), np.zeros((2, 2), "float16"))
        >>> stack = RecurrentStack((RecurrentLayer("simple_rnn", 3, 2, (w,),
        ...                                        recurrent_activation=None),))
        >>> x = verification_input(stack)
        >>> x.shape, x.dtype
        ((2, 7, 3), dtype('float16'))
    """
    dtype = stack.layers[0].weights[0].kernel.dtype
    rng = np.random.default_rng(seed)
    shape = (batch or VERIFY_BATCH, VERIFY_STEPS, stack.input_size)
    return rng.standard_normal(shape).astype(dtype)


def _run_native(torch: Any, module: Any, x: np.ndarray) -> np.ndarray:
    from .adapters.torch import numpy_to_tensor, tensor_to_numpy

    dtype = next(module.parameters()).dtype
    inputs = numpy_to_tensor(x, dtype)  # bfloat16 too, which torch.as_tensor cannot read
    with torch.no_grad():
        output, _ = module(inputs if module.batch_first else inputs.transpose(0, 1))
    output = output if module.batch_first else output.transpose(0, 1)
    return tensor_to_numpy(output)


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
