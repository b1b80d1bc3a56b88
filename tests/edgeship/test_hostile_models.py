"""Model files edgeship did not make: structural checks, the isolated loader, and a fuzz run.

The fuzz code is benchmarks/bench_fuzz.py's (the benchmark runs it at full size and writes
docs/results.md); here it runs with bounded counts: 320 seeded mutants through the CLI's
own entry point (edgeship.cli.main in this process; every untrusted model still loads in a
child process), and a seeded sample through real `edgeship` subprocesses in parallel.
The .tflite mutants also go through embed, inspect and codegen --samples, whose TFLite
Micro runs in a child of its own (edgeship/runtime/backends/tflm.py), with two models
TFLite Micro really aborts on or cannot load.
"""

import collections
import ctypes
import math
import os
import shutil
import time

import numpy as np
import pytest

from benchmarks import bench_fuzz
from edgeship.errors import UserInputError
from edgeship.model_check import check_model_file, check_tflite_bytes
from edgeship.runtime.isolation import call_isolated
from tests.helpers import run_cli, run_cli_in_process

PER_FORMAT = 160
SUBPROCESS_RUNS = 24
FIRMWARE_MUTANTS = 12  # accepted by the structural check; a third as many refused ones


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """simple_cnn on an 8x8 npz dataset: int8 .tflite (~3 KB) and .onnx, mostly structure."""
    return bench_fuzz.build_tiny_run(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def mutants(tiny_run):
    return bench_fuzz.make_mutants((tiny_run / "model_int8.tflite").read_bytes(),
                                   (tiny_run / "model_int8.onnx").read_bytes(), PER_FORMAT, seed=0)


def _schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def _rebuild(data: bytes, change) -> bytes:
    """Unpack a .tflite into the schema's object API, apply change(model), pack it again."""
    import flatbuffers

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    change(model)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _int8_tensor(model, constant: bool):
    """The first int8 tensor with (constant) or without (activation) buffer data."""
    graph = model.subgraphs[0]
    for index, tensor in enumerate(graph.tensors):
        has_data = model.buffers[tensor.buffer].data is not None and len(
            model.buffers[tensor.buffer].data) > 0
        if tensor.type == _schema().TensorType.INT8 and has_data == constant:
            return index, tensor
    raise AssertionError("no such tensor")


def _per_channel_tensor(model, min_rank: int = 1):
    return next(tensor for tensor in model.subgraphs[0].tensors
                if tensor.quantization is not None and tensor.quantization.scale is not None
                and len(tensor.quantization.scale) > 1 and len(tensor.shape) >= min_rank)


def test_checker_accepts_every_model_edgeship_makes(converted_run, tiny_run):
    checked = []
    for folder in (converted_run.out_dir, tiny_run):
        for path in sorted(folder.glob("*.tflite")) + sorted(folder.glob("*.onnx")):
            check_model_file(path)
            checked.append(path.name)
    # Both runs hold float and int8 files of both formats: the loop cannot pass on nothing.
    for name in ("model_float.tflite", "model_int8.tflite", "model.onnx", "model_int8.onnx"):
        assert checked.count(name) == 2, (name, checked)


def _set(obj, name, value):
    setattr(obj, name, value)


CRAFTED = {
    "version 2": (lambda m: _set(m, "version", 2), "schema version 2, expected 3"),
    "operator input out of range": (
        lambda m: _set(m.subgraphs[0].operators[0], "inputs",
                       [len(m.subgraphs[0].tensors) + 5]),
        "subgraph 0 operator 0 inputs name tensor"),
    "operator output negative": (
        lambda m: _set(m.subgraphs[0].operators[0], "outputs", [-3]),
        "subgraph 0 operator 0 outputs name tensor -3"),
    "opcode index out of range": (
        lambda m: _set(m.subgraphs[0].operators[0], "opcodeIndex", 99),
        "subgraph 0 operator 0 uses operator code 99"),
    "graph output out of range": (
        lambda m: _set(m.subgraphs[0], "outputs", [10_000]),
        "subgraph 0 outputs name tensor 10000"),
    "tensor buffer out of range": (
        lambda m: _set(m.subgraphs[0].tensors[0], "buffer", len(m.buffers) + 1),
        "subgraph 0 tensor 0 names buffer"),
    "negative dimension": (
        lambda m: _set(m.subgraphs[0].tensors[0], "shape", np.array([1, -8, 8, 1], np.int32)),
        "has a negative dimension in shape [1, -8, 8, 1]"),
    "huge dimension": (
        lambda m: _set(m.subgraphs[0].tensors[0], "shape",
                       np.array([1, 2**31 - 1, 2**31 - 1, 1], np.int32)),
        "elements), more than 268435456"),
    "constant buffer one byte short": (
        lambda m: _set(m.buffers[m.subgraphs[0].tensors[_int8_tensor(m, True)[0]].buffer],
                       "data", m.buffers[m.subgraphs[0].tensors[
                           _int8_tensor(m, True)[0]].buffer].data[:-1]),
        "bytes but its buffer"),
    "int8 activation without quantization": (
        lambda m: _set(_int8_tensor(m, False)[1], "quantization", None),
        "is INT8 without quantization parameters"),
    "zero scale": (
        lambda m: _set(_int8_tensor(m, False)[1].quantization, "scale",
                       np.array([0.0], np.float32)),
        "quantization scale that is not finite and positive"),
    "NaN scale": (
        lambda m: _set(_int8_tensor(m, False)[1].quantization, "scale",
                       np.array([math.nan], np.float32)),
        "quantization scale that is not finite and positive"),
    "zero point outside int8": (
        lambda m: _set(_int8_tensor(m, False)[1].quantization, "zeroPoint",
                       np.array([300], np.int64)),
        "zero point outside the INT8 range"),
    # (a weight tensor: a 1-d bias has only one axis to read, whatever the file says)
    "per-channel scales on the wrong dimension": (
        lambda m: _set(_per_channel_tensor(m, min_rank=2).quantization, "quantizedDimension", 2),
        "per-channel scales along dimension 2"),
    "per-channel zero points missing": (
        lambda m: _set(_per_channel_tensor(m).quantization, "zeroPoint", np.array([0], np.int64)),
        "zero point(s)"),
    "no subgraph": (lambda m: _set(m, "subgraphs", []), "it holds no subgraph"),
}


@pytest.mark.parametrize("fault", list(CRAFTED))
def test_checker_refuses_crafted_tflite(tiny_run, fault):
    change, message = CRAFTED[fault]
    crafted = _rebuild((tiny_run / "model_int8.tflite").read_bytes(), change)
    with pytest.raises(UserInputError) as raised:
        check_tflite_bytes(crafted, "crafted.tflite")
    assert str(raised.value).startswith("crafted.tflite is not a valid .tflite model: ")
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_eight_byte_file_is_an_error_not_a_crash(tmp_path):
    """TensorFlow issue 115308: an 8-byte file crashes the unverified loading path."""
    path = tmp_path / "eight.tflite"
    path.write_bytes(b"\x08\x00\x00\x00TFL3")
    result = run_cli_in_process("bench", path)
    assert result.returncode == 2
    assert result.stderr.strip() == ("edgeship bench: error: eight.tflite is not a valid .tflite "
                                     "model: root table offset 8 is past the end of the file")


def test_vector_longer_than_the_file_is_refused_before_walking(tiny_run):
    data = bytearray((tiny_run / "model_int8.tflite").read_bytes())
    position, _ = bench_fuzz.tflite_landmarks(bytes(data))["dimension"][0]
    data[position - 4:position] = (2**31).to_bytes(4, "little")  # the shape vector's length
    started = time.perf_counter()
    with pytest.raises(UserInputError, match="shape claims 2147483648 entries, more than"):
        check_tflite_bytes(bytes(data), "long.tflite")
    assert time.perf_counter() - started < 1


def _onnx_with_external_data(folder, tiny_run, location: str):
    import onnx

    model = onnx.load(str(tiny_run / "model.onnx"))
    initializer = max(model.graph.initializer, key=lambda tensor: len(tensor.raw_data))
    initializer.ClearField("raw_data")
    initializer.data_location = onnx.TensorProto.EXTERNAL
    del initializer.external_data[:]
    initializer.external_data.add(key="location", value=location)
    path = folder / "model.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "weights/../../secret.bin",
                                      "link.bin"])
def test_onnx_external_data_leaving_the_folder_is_refused(tmp_path, tiny_run, location):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 4096)
    folder = tmp_path / "model"
    folder.mkdir()
    os.symlink(tmp_path / "secret.bin", folder / "link.bin")  # inside by name, outside in fact
    path = _onnx_with_external_data(folder, tiny_run, location)
    result = run_cli_in_process("bench", path)
    assert result.returncode == 2
    assert result.stderr.strip().endswith(
        f"keeps its data at {location!r}, outside the model's folder; edgeship refuses external "
        "data that leaves it")


def test_onnx_external_data_inside_the_folder_loads(tmp_path, tiny_run):
    import onnx

    model = onnx.load(str(tiny_run / "model.onnx"))
    onnx.save(model, str(tmp_path / "model.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="weights.bin", size_threshold=1024)
    assert (tmp_path / "weights.bin").stat().st_size >= 1024  # the dense layer's weights
    check_model_file(tmp_path / "model.onnx")
    result = run_cli_in_process("bench", tmp_path / "model.onnx", "--runs", "3", "--warmup", "0")
    assert result.returncode == 0, result.stderr
    assert "| model.onnx | onnxruntime |" in result.stdout


def test_isolated_crash_and_hang_are_clear_errors():
    with pytest.raises(UserInputError, match=r"^x.tflite on litert crashed the model loader "
                                             r"\(signal SIGSEGV\)"):
        call_isolated(ctypes.string_at, (0,), 30, "x.tflite on litert")
    started = time.perf_counter()
    with pytest.raises(UserInputError, match=r"^x.onnx on onnxruntime did not finish within 1 s"):
        call_isolated(time.sleep, (30,), 1, "x.onnx on onnxruntime")
    assert time.perf_counter() - started < 5


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_isolated_children_start_single_threaded():
    """The fork server preloads the runtimes; forking is safe only if none started a thread."""
    assert len(call_isolated(os.listdir, ("/proc/self/task",), 30, "thread count")) == 1


def test_untrusted_files_load_in_a_child_and_trusted_ones_in_process(tiny_run, tmp_path,
                                                                     monkeypatch):
    import edgeship.runtime.bench as bench_module

    calls = []
    real = bench_module.call_isolated
    monkeypatch.setattr(bench_module, "call_isolated",
                        lambda *args, **kwargs: calls.append(args[3]) or real(*args, **kwargs))
    trusted = run_cli_in_process("bench", tiny_run / "model_int8.tflite", "--runs", "2")
    assert trusted.returncode == 0 and calls == []
    shutil.copy(tiny_run / "model_int8.tflite", tmp_path / "copy.tflite")
    copied = run_cli_in_process("bench", tmp_path / "copy.tflite", "--runs", "2")
    assert copied.returncode == 0, copied.stderr
    assert calls == ["copy.tflite on litert"] * 2  # one child per round (2 runs: 2 rounds)


def test_timeout_must_be_positive(tiny_run):
    result = run_cli_in_process("bench", tiny_run / "model_int8.tflite", "--timeout", "0")
    assert result.returncode == 2
    assert result.stderr.strip() == "edgeship bench: error: timeout must be > 0 seconds, got 0.0"


def test_checker_on_every_mutant_accepts_or_refuses_in_one_line(mutants, tmp_path):
    counts = bench_fuzz.check_in_process(mutants, tmp_path)
    assert len(mutants) == 2 * PER_FORMAT >= 300
    assert counts["other"] == 0
    assert counts["rejected"] >= len(mutants) // 2
    assert counts["accepted"] >= 10  # bit flips in weights and names still load


def test_fuzz_mutants_through_the_cli_entry_point(mutants, tiny_run, tmp_path):
    """Every mutant through `edgeship bench`, every 4th through `edgeship validate` too."""
    plan = bench_fuzz.plan_cli_runs(mutants, tiny_run, tmp_path, validate_every=4)
    outcomes = collections.Counter()
    for mutant, command, target in plan:
        result = run_cli_in_process(*bench_fuzz.cli_arguments(command, target, mutant.format))
        outcome = bench_fuzz.classify(command, result.returncode, result.stderr)
        assert outcome in bench_fuzz.GOOD_OUTCOMES, (mutant.name, mutant.format, command,
                                                     result.returncode, result.stderr[-800:])
        outcomes[(mutant.format, command, outcome)] += 1
    assert sum(outcomes.values()) == len(plan) == 2 * PER_FORMAT * 5 // 4
    for format_name in ("tflite", "onnx"):
        assert outcomes[(format_name, "bench", "clear error")] >= PER_FORMAT // 2
        assert outcomes[(format_name, "bench", "valid result")] >= 3


@pytest.mark.slow  # ~30-60 s on 2 cores; the default suite keeps under 20 minutes
def test_fuzz_mutants_through_real_cli_subprocesses(mutants, tiny_run, tmp_path):
    """A seeded sample as real `edgeship` processes, in parallel: no signal death, no hang.

    The sample favours mutants the structural check accepts: those reach the native loaders.
    """
    accepted, refused = [], []
    for mutant in mutants:
        try:
            if mutant.format == "tflite":
                check_tflite_bytes(mutant.data)
            else:
                check_model_file(bench_fuzz.write_mutant(mutant, tmp_path / "checked"))
            accepted.append(mutant)
        except UserInputError:
            refused.append(mutant)
    rng = np.random.default_rng(1)
    chosen = ([accepted[i] for i in rng.choice(len(accepted), SUBPROCESS_RUNS * 2 // 3, False)]
              + [refused[i] for i in rng.choice(len(refused), SUBPROCESS_RUNS // 3, False)])
    plan = bench_fuzz.plan_cli_runs(chosen, tiny_run, tmp_path, validate_every=4)
    outcomes = bench_fuzz.run_plan(plan, workers=4)
    bad = [outcome for outcome in outcomes if outcome.outcome not in bench_fuzz.GOOD_OUTCOMES]
    assert not bad, bad
    assert len(outcomes) == SUBPROCESS_RUNS + SUBPROCESS_RUNS // 4
    assert {outcome.outcome for outcome in outcomes} >= {"valid result", "clear error"}
    assert max(outcome.seconds for outcome in outcomes) < bench_fuzz.CLI_LIMIT_S


# --- embed, inspect and codegen: TFLite Micro in its own child -----------------------------

def _with_opcode(data: bytes, old: int, new: int) -> bytes:
    """Every use of builtin operator `old` read as `new` (a structurally valid model)."""
    def change(model):
        for code in model.operatorCodes:
            if code.builtinCode == old:
                code.builtinCode = code.deprecatedBuiltinCode = new
    return _rebuild(data, change)


def _firmware_arguments(command: str, path, out) -> list:
    if command == "inspect":
        return ["inspect", path, "--images", "4"]
    return [command, path, "--out", out, "--samples", "2"]


def _assert_one_line_outcome(command: str, result, context) -> None:
    """Exit 0-3; a failure ends in one `edgeship CMD: error` line, a traceback only for 3."""
    assert result.returncode in (0, 1, 2, 3), (context, result.returncode, result.stderr[-800:])
    if result.returncode == 0:
        return
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith(f"edgeship {command}: "), (context, result.stderr[-800:])
    if result.returncode == 2:
        assert "Traceback" not in result.stderr, (context, result.stderr[-800:])


def test_fuzz_mutants_through_embed_inspect_and_codegen(mutants, tmp_path):
    """Mutants the structural check accepts reach TFLite Micro; none may end the process."""
    accepted, refused = [], []
    for mutant in (mutant for mutant in mutants if mutant.format == "tflite"):
        try:
            check_tflite_bytes(mutant.data)
            accepted.append(mutant)
        except UserInputError:
            refused.append(mutant)
    chosen = accepted[:FIRMWARE_MUTANTS] + refused[:FIRMWARE_MUTANTS // 3]
    assert len(chosen) == FIRMWARE_MUTANTS + FIRMWARE_MUTANTS // 3
    codes = collections.Counter()
    for mutant in chosen:
        path = bench_fuzz.write_mutant(mutant, tmp_path / "files")
        for command in ("embed", "codegen", "inspect"):
            result = run_cli_in_process(*_firmware_arguments(
                command, path, tmp_path / "out" / command / mutant.name))
            _assert_one_line_outcome(command, result, (mutant.name, command))
            codes[result.returncode] += 1
    assert codes[0] >= 3 and codes[2] >= FIRMWARE_MUTANTS // 3  # some run, the refused fail


@pytest.mark.parametrize("command", ["embed", "codegen", "inspect"])
def test_tflm_abort_is_one_line_through_the_api_not_a_dead_process(tiny_run, tmp_path, command):
    """RESHAPE read as ADD: TFLite Micro aborts (SIGABRT) allocating tensors; LiteRT refuses."""
    from edgeship.runtime.backends import open_backend

    path = tmp_path / "abort.tflite"
    path.write_bytes(_with_opcode((tiny_run / "model_int8.tflite").read_bytes(), 22, 0))
    with pytest.raises(UserInputError, match=r"^TFLite Micro crashed loading .*abort.tflite "
                                             r"\(signal SIGABRT\); it printed nothing$"):
        open_backend("tflm", path)
    result = run_cli_in_process(*_firmware_arguments(command, path, tmp_path / "out"))
    _assert_one_line_outcome(command, result, command)
    assert result.returncode == 2  # embed: TFLite Micro's abort; codegen, inspect: refused first


def test_tflm_abort_through_the_real_cli(tiny_run, tmp_path):
    """A real `edgeship` process: one line on the console, edgeship.log in the new --out."""
    path = tmp_path / "abort.tflite"
    path.write_bytes(_with_opcode((tiny_run / "model_int8.tflite").read_bytes(), 22, 0))
    out = tmp_path / "out" / "firmware"  # not there yet: created for the log
    result = run_cli("embed", path, "--out", out, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        (f"edgeship embed: error: TFLite Micro crashed loading {path} (signal SIGABRT); it "
         "printed nothing")]
    assert f"==== edgeship embed {path} --out {out}" in (out / "edgeship.log").read_text()


def test_missing_op_names_tflms_reason_on_the_console(tiny_run, tmp_path, capfd):
    """RESHAPE read as TILE: TFLite Micro's own words, not "failed to allocate tensors"."""
    from edgeship.cli import console_main

    path = tmp_path / "tile.tflite"
    path.write_bytes(_with_opcode((tiny_run / "model_int8.tflite").read_bytes(), 22, 69))
    capfd.readouterr()
    assert console_main(["embed", str(path), "--out", str(tmp_path / "out")]) == 2
    assert capfd.readouterr().err.splitlines() == [
        (f"edgeship embed: error: TFLite Micro cannot load {path}: Didn't find op for builtin "
         "opcode 'TILE'; Failed to get registration from op code TILE (TFLM failed to "
         "allocate tensors)")]
    log = (tmp_path / "out" / "edgeship.log").read_text()
    assert "Didn't find op for builtin opcode 'TILE'" in log  # TFLite Micro's text, in full
