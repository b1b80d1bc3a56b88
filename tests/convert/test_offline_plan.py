"""`edgeship embed --offline-plan`: edgeship's memory plan as TFLite Micro's
OfflineMemoryAllocation metadata, read back, valid, output-preserving and smaller."""

import dataclasses
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from edgeship.convert.embed import EmbedConfig
from edgeship.convert.offline_plan import (
    OFFLINE_PLAN_METADATA,
    ONLINE,
    TFLM_ALIGNMENT,
    plan_offline,
    read_offline_plan,
    with_offline_plan,
)
from edgeship.errors import ToolFailureError
from edgeship.firmware import embed_model, measure_offline_plan, measure_tflm_arena
from edgeship.options import declared_options, flag_name
from edgeship.tflite_graph import flatbuffer_schema, read_graph, read_model

MLPERF_DIR = Path(__file__).resolve().parents[3] / "shared" / "models" / "mlperf_tiny"


@pytest.fixture(scope="module")
def chain_model(tmp_path_factory) -> Path:
    """An untrained int8 chain shaped like MLPerf Tiny VWW's first layers (32x32x3 input,
    conv stride 2, depthwise, pointwise expansions): TFLite Micro's own greedy planner leaves
    a gap in its arena on this shape (8,192 head bytes where 6,144 are live at most)."""
    from edgeship.convert.tflite import export_tflite
    from edgeship.deps import import_tf_keras

    _, keras = import_tf_keras()
    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((32, 32, 3))
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inputs)
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = layers.Conv2D(16, 1, activation="relu")(x)
    x = layers.DepthwiseConv2D(3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(32, 1, activation="relu")(x)
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = layers.Conv2D(32, 1, activation="relu")(x)
    # logits of 10 classes: outputs that vary with the input, so a corrupted arena shows
    outputs = layers.Dense(10)(layers.Flatten()(layers.AveragePooling2D(2)(x)))
    samples = np.random.default_rng(0).uniform(-1, 1, (16, 32, 32, 3)).astype(np.float32)
    path = tmp_path_factory.mktemp("offline_plan") / "chain_int8.tflite"
    path.write_bytes(export_tflite(keras.Model(inputs, outputs), representative_samples=samples))
    return path


def _live_ranges(data: bytes) -> dict[int, tuple[int, int]]:
    """Each activation's [first, last] op position, derived here from the graph alone: the
    input from before op 0, the output to the last op (TFLite Micro's rules)."""
    graph = read_graph(data)
    ranges = {index: (-1, -1) for index in graph.inputs}
    for position, op in enumerate(graph.operators):
        for index in op.outputs:
            ranges.setdefault(index, (position, position))
        for index in op.inputs + op.outputs:
            if index >= 0 and graph.tensors[index].data is None:
                ranges[index] = (ranges[index][0], max(ranges[index][1], position))
    for index in graph.outputs:
        ranges[index] = (ranges[index][0], len(graph.operators) - 1)
    return ranges


def _assert_valid(data: bytes, offsets: list[int]) -> None:
    """Every activation has a 16-aligned offset, constants none, and no two activations live
    during the same op share a byte."""
    graph = read_graph(data)
    ranges = _live_ranges(data)
    assert len(offsets) == len(graph.tensors)
    for tensor in graph.tensors:
        if tensor.data is not None:
            assert offsets[tensor.index] == ONLINE, tensor.name
    spans = {}
    for index, (first, last) in ranges.items():
        offset = offsets[index]
        assert offset >= 0 and offset % TFLM_ALIGNMENT == 0, graph.tensors[index].name
        tensor = graph.tensors[index]
        spans[index] = (offset, offset + tensor.size * np.dtype(tensor.dtype).itemsize, first, last)
    for index, (start, end, first, last) in spans.items():
        for other, (other_start, other_end, other_first, other_last) in spans.items():
            if other <= index or first > other_last or other_first > last:
                continue
            assert end <= other_start or other_end <= start, (
                f"{graph.tensors[index].name} and {graph.tensors[other].name} overlap")


def _buffer_positions(data: bytes) -> list[int]:
    """Where each non-empty buffer's data starts in the file."""
    schema = flatbuffer_schema()
    model = schema.Model.GetRootAsModel(bytearray(data), 0)
    positions = []
    for index in range(model.BuffersLength()):
        buffer = model.Buffers(index)
        if buffer.DataLength():
            positions.append(buffer._tab.Vector(buffer._tab.Offset(4)))
    return positions


def test_plan_reads_back_and_keeps_everything_else(chain_model):
    data = chain_model.read_bytes()
    plan = plan_offline(data)
    planned = with_offline_plan(data, plan)
    offsets = read_offline_plan(planned)
    assert offsets == list(plan.offsets)
    assert read_offline_plan(data) is None
    before, after = read_model(data), read_model(planned)
    entry = next(item for item in after.metadata if item.name.decode() == OFFLINE_PLAN_METADATA)
    raw = np.asarray(after.buffers[entry.buffer].data, np.uint8).tobytes()
    assert struct.unpack("<3i", raw[:12]) == (0, 0, len(before.subgraphs[0].tensors))
    assert [item.name for item in after.metadata if item is not entry] == [
        item.name for item in before.metadata]
    assert len(after.buffers) == len(before.buffers) + 1
    for old, new in zip(before.buffers, after.buffers):
        assert np.array_equal(np.asarray(old.data if old.data is not None else []),
                              np.asarray(new.data if new.data is not None else []))
    old_graph, new_graph = before.subgraphs[0], after.subgraphs[0]
    assert [(t.name, list(t.shape), t.type, t.buffer) for t in old_graph.tensors] == [
        (t.name, list(t.shape), t.type, t.buffer) for t in new_graph.tensors]
    assert [(op.opcodeIndex, list(op.inputs), list(op.outputs)) for op in old_graph.operators] \
        == [(op.opcodeIndex, list(op.inputs), list(op.outputs)) for op in new_graph.operators]
    # the converter's 16-byte alignment of buffer data survives the rewrite
    assert all(position % 16 == 0 for position in _buffer_positions(planned))


def test_an_existing_plan_is_replaced(chain_model):
    data = chain_model.read_bytes()
    plan = plan_offline(data)
    once = with_offline_plan(data, plan)
    shifted = dataclasses.replace(plan, offsets=tuple(
        offset + 16 if offset != ONLINE else ONLINE for offset in plan.offsets))
    twice = with_offline_plan(once, shifted)
    assert read_offline_plan(twice) == list(shifted.offsets)
    model = read_model(twice)
    assert [item.name.decode() for item in model.metadata].count(OFFLINE_PLAN_METADATA) == 1
    assert len(model.buffers) == len(read_model(once).buffers)


def test_plan_is_valid_and_as_small_as_the_live_bytes(chain_model):
    data = chain_model.read_bytes()
    plan = plan_offline(data)
    assert plan.overlaps() == []
    _assert_valid(data, list(plan.offsets))
    # a chain: the plan reaches the bound (the most bytes live during one op)
    assert plan.plan_bytes == plan.lower_bound_bytes == 6144
    broken = dataclasses.replace(plan, offsets=tuple(0 if offset != ONLINE else ONLINE
                                                     for offset in plan.offsets))
    assert broken.overlaps()


def test_tflm_outputs_unchanged_and_arena_smaller(chain_model):
    without = measure_tflm_arena(chain_model)
    planned = measure_offline_plan(chain_model, checks=4, seed=1)
    with_plan = planned.arena_with_plan
    assert planned.checked_inputs == 4
    # TFLite Micro's head is edgeship's plan (the reference kernels request no scratch)
    assert with_plan["head_bytes"] == planned.plan.plan_bytes == 6144
    assert with_plan["head_bytes"] < without["head_bytes"] == 8192
    assert with_plan["total_bytes"] < without["total_bytes"]
    assert with_plan["tail_bytes"] == without["tail_bytes"]


def test_changed_outputs_fail_as_edgeships_error(chain_model, monkeypatch):
    """A plan that puts every tensor on the same bytes changes TFLite Micro's outputs: the
    check refuses it (exit 3), it is not embedded."""
    import edgeship.firmware as firmware

    def everything_at_zero(data):
        plan = plan_offline(data)
        return dataclasses.replace(plan, tensors=(), offsets=tuple(
            0 if offset != ONLINE else ONLINE for offset in plan.offsets))

    monkeypatch.setattr(firmware, "plan_candidates", lambda data: [everything_at_zero(data)])
    with pytest.raises(ToolFailureError, match="change with edgeship's offline plan") as caught:
        measure_offline_plan(chain_model)
    assert caught.value.exit_code == 3


def test_embed_offline_plan_writes_and_reports_both_arenas(chain_model, tmp_path):
    plain = embed_model(EmbedConfig(model=str(chain_model), out=str(tmp_path / "plain"),
                                    name="chain"))
    result = embed_model(EmbedConfig(model=str(chain_model), out=str(tmp_path / "planned"),
                                     name="chain", offline_plan=True))
    planned_file = tmp_path / "planned" / "chain_offline_plan.tflite"
    assert planned_file in result.files
    assert read_offline_plan(planned_file.read_bytes()) is not None
    source = (tmp_path / "planned" / "chain_model_data.cc").read_text()
    values = source.split("g_chain_model_data[] = {")[1].split("};")[0]
    embedded = bytes(int(value, 16) for value in values.replace(",", " ").split())
    assert embedded == planned_file.read_bytes()
    footprint = json.loads((tmp_path / "planned" / "chain_footprint.json").read_text())
    report = footprint["offline_plan"]
    assert report["without_plan"]["total_bytes"] == plain.arena_bytes == result.arena_without_plan
    assert footprint["arena_bytes"] == report["with_plan"]["total_bytes"] == result.arena_bytes
    assert result.arena_bytes < plain.arena_bytes
    assert report["with_plan"]["head_bytes"] == report["plan_bytes"] == 6144
    assert report["outputs_bit_exact"] and report["checked_inputs"] == 4
    assert "OfflineMemoryAllocation" in (tmp_path / "planned" / "chain_model_data.h").read_text()
    assert f"{result.arena_without_plan}" in result.summary()
    assert "offline_plan" not in plain.footprint and plain.arena_without_plan is None


def test_offline_plan_is_an_embed_option():
    field = next(item for item in declared_options(EmbedConfig) if item.name == "offline_plan")
    assert flag_name(field) == "--offline-plan" and field.default is False


@pytest.mark.parametrize("name, plan_bytes, smaller", [
    ("vww_96_int8", 55_296, True),  # TFLite Micro alone: 73,728 head bytes
    ("kws_ref_model", 16_000, False),  # TFLite Micro's own plan is already at the bound
])
def test_mlperf_tiny(name, plan_bytes, smaller):
    path = MLPERF_DIR / f"{name}.tflite"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    data = path.read_bytes()
    planned = measure_offline_plan(path)
    _assert_valid(data, read_offline_plan(planned.model_data))
    without = measure_tflm_arena(path)
    assert planned.plan.plan_bytes == planned.plan.lower_bound_bytes == plan_bytes
    assert planned.arena_with_plan["head_bytes"] == plan_bytes
    assert (planned.arena_with_plan["total_bytes"] < without["total_bytes"]) is smaller
    assert planned.arena_with_plan["total_bytes"] <= without["total_bytes"]
