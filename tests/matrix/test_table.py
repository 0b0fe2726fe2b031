"""The declared matrix: lanes, generation rules, exclusions, ids, shards and cell models."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from xframe_bilstm.canonical import output_names
from xframe_bilstm.frameworks import FRAMEWORKS
from xframe_bilstm.matrix import (
    Cell,
    TableError,
    cell_lengths,
    cell_stack,
    lane_cells,
    load_table,
    shard,
)
from xframe_bilstm.reference import run_reference

TABLE = load_table()
ALL = set(FRAMEWORKS)


def cells_of(lane: str) -> list[Cell]:
    """The lane's compare() cells (its optimizer-parity cells aside)."""
    return [c for c in lane_cells(TABLE, lane, available=ALL)[0] if isinstance(c, Cell)]


def test_the_default_lane_covers_every_layout_on_cpu_in_at_least_200_cells() -> None:
    cells = cells_of("default")
    assert len(cells) >= 200
    assert {c.devices for c in cells} == {("cpu",)}
    layouts = {(c.cell, c.direction, c.merge_mode, c.layers, c.returns, c.mask) for c in cells}
    for cell in ("lstm", "gru", "simple_rnn"):
        for merge in ("concat", "sum", "mul", "ave", "none"):
            for returns in ("sequences", "sequences+state", "last", "last+state"):
                assert (cell, "bidirectional", merge, 2, returns, "right-padded") in layouts
        assert (cell, "backward", None, 1, "last+state", "right-padded") in layouts
    assert {c.dtype for c in cells} == {"float32", "float64"}
    assert {"torch", "keras", "onnxruntime", "torch-onnx"} <= {
        f for c in cells for f in c.frameworks
    }


def test_the_slow_and_gpu_lanes_hold_what_their_names_promise() -> None:
    slow = cells_of("slow")
    assert max(c.steps for c in slow) == 1000
    assert {"float16", "bfloat16"} <= {c.dtype for c in slow}
    gpu = cells_of("gpu")
    assert all("gpu:0" in c.devices for c in gpu)
    assert {c.tf32 for c in gpu} == {False, True}


def test_ids_are_unique_readable_and_name_the_configuration() -> None:
    for lane in TABLE.lanes:
        ids = [c.id for c in cells_of(lane)]
        assert len(set(ids)) == len(ids), lane
    cell = next(c for c in cells_of("default") if c.block == "trained-like")
    assert re.fullmatch(
        r"[a-z_]+-(fwd|bwd|bi\.[a-z]+)-L\d+-[a-z+]+-(un)?masked-T\d+xB\d+"
        r"-D\d+H\d+-float\d+(-w[\d.]+)?(-tf32)?",
        cell.id,
    ), cell.id
    assert cell.id.endswith("-w3")
    assert cell.seed == replace(cell, block="elsewhere").seed  # the seed follows the id


def test_merge_modes_belong_to_bidirectional_layers_and_tf32_to_gpus() -> None:
    for lane in TABLE.lanes:
        for cell in cells_of(lane):
            assert (cell.merge_mode is None) == (cell.direction != "bidirectional")
            if cell.tf32:
                assert any(d.startswith("gpu") for d in cell.devices)
    assert not any(c.tf32 for c in cells_of("default") + cells_of("slow"))


def test_excluded_frameworks_do_not_run_and_the_cell_says_why() -> None:
    float64 = [c for c in cells_of("default") if c.dtype == "float64"]
    assert float64
    for cell in float64:
        assert set(cell.frameworks) == {"torch", "keras"}
        reasons = dict(cell.excluded)
        assert "double" in reasons["onnxruntime"]
        assert "float32" in reasons["torch-onnx"]


@pytest.mark.parametrize("lane", sorted(TABLE.lanes))
def test_the_table_asks_no_framework_for_a_dtype_it_does_not_offer(lane: str) -> None:
    """Where the table lets a framework run, the framework itself offers the dtype."""
    for cell in cells_of(lane):
        for name in cell.frameworks:
            assert cell.dtype in FRAMEWORKS[name]().dtypes("cpu"), (cell.id, name)


def test_optional_frameworks_run_only_where_installed() -> None:
    cells, skipped = lane_cells(TABLE, "slow", available={"torch", "keras"})
    assert set(skipped) == {"torch-onnx-dynamo", "keras-onnx"}
    assert not {"torch-onnx-dynamo", "keras-onnx"} & {f for c in cells for f in c.frameworks}
    cells, skipped = lane_cells(TABLE, "slow", available=ALL)
    assert not skipped
    assert "keras-onnx" in {f for c in cells for f in c.frameworks}


def test_a_masked_cell_leaves_out_what_cannot_run_its_lengths() -> None:
    """The dynamo exporter cannot capture a stack's packed sequences: left out of masked
    cells, named; it runs the unmasked ones."""
    cells, _ = lane_cells(TABLE, "default", available=ALL)
    masked = next(c for c in cells if c.mask == "right-padded")
    unmasked = next(c for c in cells if c.mask == "none")
    frameworks = ("torch", "torch-onnx-dynamo")
    excluded = dict(replace(masked, frameworks=frameworks).request().excluded)
    assert set(excluded) == {"torch-onnx-dynamo"}
    assert "packed sequences" in excluded["torch-onnx-dynamo"]
    assert not replace(unmasked, frameworks=frameworks).request().excluded


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_shards_split_a_lane_exactly_and_keep_structure_groups_whole(count: int) -> None:
    cells = lane_cells(TABLE, "default", available=ALL)[0]
    parts = [shard(cells, index, count) for index in range(1, count + 1)]
    ids = [c.id for part in parts for c in part]
    assert sorted(ids) == sorted(c.id for c in cells)
    owners = {}
    for index, part in enumerate(parts):
        for cell in part:
            assert owners.setdefault(cell.structure, index) == index
    sizes = [len(part) for part in parts]
    assert max(sizes) - min(sizes) <= 0.2 * len(cells) / count + 2
    with pytest.raises(ValueError, match="shard 3/2"):
        shard(cells, 3, 2)


def test_a_cell_builds_the_model_and_mask_it_names() -> None:
    cell = next(
        c
        for c in cells_of("default")
        if c.cell == "gru" and c.merge_mode == "ave" and c.layers == 2 and c.returns == "last"
    )
    stack = cell_stack(cell)
    assert [layer.merge_mode for layer in stack.layers] == ["concat", "ave"]
    assert all(layer.direction == "bidirectional" for layer in stack.layers)
    assert (stack.return_sequences, stack.return_state) == (False, False)
    assert stack.layers[0].weights[0].bias.shape == (2, 3 * cell.units)  # Keras's GRU bias
    lengths = cell_lengths(cell)
    assert lengths is not None and min(lengths) == 1 and max(lengths) == cell.steps
    x = np.random.default_rng(cell.seed).standard_normal((cell.batch, cell.steps, 5))
    (output,) = run_reference(stack, x, lengths=lengths)
    assert output.shape == (cell.batch, cell.units)
    assert output_names(stack) == ("output",)
    unmasked = next(c for c in cells_of("default") if c.mask == "none")
    assert cell_lengths(unmasked) is None


def test_weights_follow_the_seed_and_scale() -> None:
    cell = next(c for c in cells_of("default") if c.layers == 2 and c.weight_scale == 1.0)
    first, again = cell_stack(cell), cell_stack(cell)
    assert first.layers[0].weights[0] == again.layers[0].weights[0]
    scaled = cell_stack(replace(cell, weight_scale=3.0))  # another id, so other draws
    assert not np.array_equal(scaled.layers[0].weights[0].kernel, first.layers[0].weights[0].kernel)

    def rms(stack):
        return np.sqrt(
            np.mean(
                [np.mean(w.recurrent_kernel**2) for layer in stack.layers for w in layer.weights]
            )
        )

    assert 2.0 < rms(scaled) / rms(first) < 4.5


@pytest.mark.parametrize("kind", ["gru", "lstm", "simple_rnn"])
def test_cell_weights_are_the_draw_the_baselines_hold(kind: str) -> None:
    """The baselines record errors of these exact weights: per direction, in order, kernel
    and recurrent kernel ~ N(0, 1) with gate k scaled by (0.4 + 0.3 k) * weight_scale over
    the fan-in's square root, then bias magnitudes in [0.1, 0.5), then their signs."""
    cell = next(
        c
        for c in cells_of("default")
        if c.cell == kind and c.weight_scale == 3.0 and c.direction == "bidirectional"
    )
    rng = np.random.default_rng(cell.seed)
    gates = {"lstm": 4, "gru": 3, "simple_rnn": 1}[kind]
    width = gates * cell.units
    scales = np.repeat(0.4 + 0.3 * np.arange(gates), cell.units) * 3.0
    size = cell.input_size
    for layer in cell_stack(cell).layers:
        for weights in layer.weights:
            kernel = rng.standard_normal((size, width)) * scales / np.sqrt(size)
            recurrent = rng.standard_normal((cell.units, width)) * scales / np.sqrt(cell.units)
            shape = (2, width) if kind == "gru" else (width,)
            bias = rng.uniform(0.1, 0.5, shape)
            bias = bias * np.where(rng.integers(0, 2, shape) == 0, -1.0, 1.0)
            np.testing.assert_array_equal(weights.kernel, kernel.astype(np.float32))
            np.testing.assert_array_equal(weights.recurrent_kernel, recurrent.astype(np.float32))
            np.testing.assert_array_equal(weights.bias, bias.astype(np.float32))
        size = layer.output_size


MINIMAL = """
ratchet = 4.0
[defaults]
cell = ["lstm"]
direction = ["forward"]
merge_mode = ["concat"]
layers = [1]
returns = ["sequences"]
mask = ["none"]
steps = [3]
batch = [2]
dtype = ["float32"]
tf32 = [false]
weight_scale = [1.0]
units = [2]
input_size = [3]
[lanes.tiny]
frameworks = ["torch"]
[[lanes.tiny.blocks]]
name = "one"
"""


def test_a_minimal_table_makes_one_cell() -> None:
    table = load_table(MINIMAL)
    (cell,), _ = lane_cells(table, "tiny", available=ALL)
    assert cell.id == "lstm-fwd-L1-seq-unmasked-T3xB2-D3H2-float32"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('name = "one"', 'name = "one"\nheight = [1]'), "'height' is not an axis"),
        (('name = "one"', 'name = "one"\nsteps = [0]'), "steps: 0 is not a valid steps"),
        (('frameworks = ["torch"]', 'frameworks = ["caffe"]'), "not registered"),
        (("ratchet = 4.0", "ratchet = 1.0"), "ratchet: expected a number above 1"),
        (("units = [2]\n", ""), "missing \\['units'\\]"),
        (('name = "one"', 'name = "one"\npaths = [["fast"]]'), "paths: \\['fast'\\] is not"),
        (('name = "one"', 'name = "one"\npaths = ["unroll"]'), "paths: 'unroll' is not"),
        (
            (
                "[lanes.tiny]",
                '[[exclude]]\nframeworks = ["keras"]\npath = "fast"\nmask = ["none"]\n'
                'reason = "r"\n[lanes.tiny]',
            ),
            "exclude\\[0\\].path: 'fast' is not one of",
        ),
        (
            (
                "[lanes.tiny]",
                '[[exclude]]\nframeworks = ["torch"]\ndtype = ["float64"]\n[lanes.tiny]',
            ),
            "every exclusion must say why",
        ),
    ],
)
def test_table_mistakes_are_refused_by_name(change: tuple[str, str], message: str) -> None:
    with pytest.raises(TableError, match=message):
        load_table(MINIMAL.replace(*change))


def test_unknown_lanes_are_named() -> None:
    with pytest.raises(TableError, match="lane 'nightly' is not one of"):
        lane_cells(TABLE, "nightly", available=ALL)


def test_kernel_paths_make_their_own_cells_and_exclusions_drop_one_path_only() -> None:
    text = MINIMAL.replace('frameworks = ["torch"]', 'frameworks = ["torch", "keras"]').replace(
        'name = "one"', 'name = "one"\nmask = ["none", "right-padded"]\npaths = [[], ["unroll"]]'
    )
    text = text.replace(
        "[lanes.tiny]",
        '[[exclude]]\nframeworks = ["keras"]\npath = "unroll"\nmask = ["right-padded"]\n'
        'reason = "a bug"\n[lanes.tiny]',
    )
    cells, _ = lane_cells(load_table(text), "tiny", available=ALL)
    by_id = {cell.id: cell for cell in cells}
    assert sorted(by_id) == [
        "lstm-fwd-L1-seq-masked-T3xB2-D3H2-float32",
        "lstm-fwd-L1-seq-masked-T3xB2-D3H2-float32-unroll",
        "lstm-fwd-L1-seq-unmasked-T3xB2-D3H2-float32",
        "lstm-fwd-L1-seq-unmasked-T3xB2-D3H2-float32-unroll",
    ]
    masked = by_id["lstm-fwd-L1-seq-masked-T3xB2-D3H2-float32-unroll"]
    assert masked.frameworks == ("torch", "keras")  # keras still runs, without unroll
    assert masked.excluded == (("keras:unroll", "a bug"),)
    assert masked.config()["paths"] == ("unroll",)


# --------------------------------------------------------------------------- gradients,
# optimizer steps and the columns a block adds


def test_the_default_lane_compares_gradients_of_every_cell_kind_with_and_without_a_mask() -> None:
    cells = [c for c in cells_of("default") if c.gradients]
    kinds = {(c.cell, c.reset_after, c.direction, c.mask) for c in cells}
    for kind in [("lstm", True), ("gru", True), ("gru", False), ("simple_rnn", True)]:
        for mask in ("none", "right-padded"):
            assert (*kind, "bidirectional", mask) in kinds
    for cell in cells:
        assert cell.id.endswith("-grad")
        assert cell.request().arguments["gradients"] is True
        assert {"torch", "keras"} <= set(cell.frameworks)
        assert "no gradients" in dict(cell.excluded)["onnxruntime"]
    forward = [c for c in cells_of("default") if not c.gradients]
    assert all("gradients" not in c.request().arguments for c in forward[:5])


def test_reset_after_makes_gru_cells_only_and_builds_the_gru_it_names() -> None:
    cells = cells_of("default")
    assert all(c.reset_after for c in cells if c.cell != "gru")
    (without,) = [c for c in cells if not c.reset_after and c.mask == "right-padded"]
    assert without.id.endswith("-r0-grad") and without.cell == "gru"
    layer = cell_stack(without).layers[0]
    assert layer.reset_after is False
    assert layer.weights[0].bias.shape == (3 * without.units,)  # one bias, as Keras's
    assert cell_stack(replace(without, reset_after=True)).layers[0].reset_after is True


def test_a_block_adds_its_columns_where_installed_and_its_cells_say_why_not() -> None:
    columns = {"keras-jax", "keras-torch", "tflite"}
    lane = TABLE.lane("default")
    assert columns <= set(lane.all_frameworks)
    with_columns = [c for c in cells_of("default") if columns <= set(c.frameworks)]
    assert {c.cell for c in with_columns} == {"lstm", "gru", "simple_rnn"}
    assert all(c.block == "layouts" for c in with_columns)  # repeats gain the columns
    assert len(with_columns) <= 3, "each column starts a process or converts: keep it small"

    core = {"torch", "keras", "onnxruntime", "torch-onnx"}
    cells, skipped = lane_cells(TABLE, "default", available=core)
    assert skipped == dict.fromkeys(sorted(columns), "not installed")
    assert not columns & {f for c in cells for f in c.frameworks}
    ids = {c.id for c in with_columns}
    for cell in cells:
        if cell.id in ids:
            assert columns <= set(dict(cell.excluded))
            assert dict(cell.excluded)["tflite"] == "not installed"


def test_the_default_lane_ends_with_its_optimizer_parity_cells() -> None:
    cells = lane_cells(TABLE, "default", available=ALL)[0]
    training = [c for c in cells if not isinstance(c, Cell)]
    assert cells[-len(training) :] == training
    assert {c.optimizer for c in training} == {"sgd-momentum", "adam", "adamw"}
    assert {c.cell for c in training} == {"lstm", "gru"}
    assert all(c.frameworks == ("keras", "torch") for c in training)


TRAINING = '\n[[lanes.tiny.training]]\nname = "steps"\ncell = ["lstm"]\noptimizer = ["adam"]\n'


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('name = "one"', 'name = "one"\ngradients = ["yes"]'), "gradients: 'yes' is not"),
        (('name = "one"', 'name = "one"\nreset_after = [0]'), "reset_after: 0 is not"),
        (('name = "one"', 'name = "one"\nframeworks = ["caffe"]'), "\\[one\\].frameworks"),
        (('"adam"]', '"rmsprop"]'), "optimizer: 'rmsprop' is not one of"),
        (('"adam"]', '"adam"]\nsteps = 0'), "steps: expected a positive number"),
        (('"adam"]', '"adam"]\nlr = 0.1'), "unexpected keys \\['lr'\\]"),
        (('cell = ["lstm"]\noptimizer', "optimizer"), "cell: expected a non-empty list"),
    ],
)
def test_gradient_and_training_mistakes_are_refused_by_name(
    change: tuple[str, str], message: str
) -> None:
    with pytest.raises(TableError, match=message):
        load_table((MINIMAL + TRAINING).replace(*change))


def test_a_training_block_makes_one_cell_per_cell_direction_and_optimizer() -> None:
    text = (MINIMAL + TRAINING).replace(
        '["adam"]', '["sgd", "adamw"]\ndirection = ["forward", "backward"]\nsteps = 2'
    )
    cells, _ = lane_cells(load_table(text), "tiny", available=ALL)
    assert [c.id for c in cells] == [
        "lstm-fwd-L1-seq-unmasked-T3xB2-D3H2-float32",
        "train-lstm-fwd-sgd-k2",
        "train-lstm-fwd-adamw-k2",
        "train-lstm-bwd-sgd-k2",
        "train-lstm-bwd-adamw-k2",
    ]
