"""TFLite Micro in a child process of its own: its crashes become one-line errors.

The crafted models are the session's lenet5 int8 file with one operator code changed, each a
real trigger found by fuzzing opcodes: RESHAPE read as ADD makes TFLite Micro abort
(SIGABRT, printing nothing) while it allocates tensors, as it does on some int8 Keras
Applications models; RESHAPE read as TILE is an op TFLite Micro lacks; SOFTMAX read as
MAXIMUM loads and then crashes in invoke. No test hook: the child dies for real.
"""

import os
import signal
import time

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from edgeship.errors import UserInputError
from edgeship.runtime.backends import open_backend
from edgeship.runtime.backends import tflm as tflm_module
from edgeship.runtime.isolation import ChildFailure, IsolatedObject

_OP = schema.BuiltinOperator


def with_opcode(data: bytes, old: int, new: int) -> bytes:
    """The model with every use of builtin operator `old` read as `new`."""
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    codes = [code for code in model.operatorCodes if code.builtinCode == old]
    assert codes, f"the model has no operator {old}"
    for code in codes:
        code.builtinCode = code.deprecatedBuiltinCode = new
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.fixture
def crafted(tmp_path, artifacts_dir):
    data = (artifacts_dir / "model_int8.tflite").read_bytes()

    def write(name: str, old: int, new: int):
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(with_opcode(data, old, new))
        return path

    return write


def test_tflm_runs_in_its_own_child_and_matches_the_in_process_interpreter(artifacts_dir,
                                                                          test_images):
    path = artifacts_dir / "model_int8.tflite"
    with open_backend("tflm", path) as backend:
        assert isinstance(backend, tflm_module.TFLMProcessBackend)
        child = backend._child._process
        assert child.pid != os.getpid() and child.is_alive()
        raw = backend.quantize_input(test_images[:8])
        isolated = backend.infer_raw(raw)
        arena = backend.arena_usage()
    assert not child.is_alive()  # closing ends the child
    in_process = tflm_module.TFLMBackend(path)
    np.testing.assert_array_equal(isolated, in_process.infer_raw(raw))
    assert arena == in_process.arena_usage() and arena["total_bytes"] > 0


def test_abort_while_loading_a_users_file_is_exit_2_in_one_line(crafted):
    path = crafted("abort", _OP.RESHAPE, _OP.ADD)
    started = time.perf_counter()
    with pytest.raises(UserInputError) as raised:
        open_backend("tflm", path)
    assert type(raised.value) is UserInputError and raised.value.exit_code == 2
    assert str(raised.value) == (f"TFLite Micro crashed loading {path} (signal SIGABRT); "
                                 "it printed nothing")
    assert time.perf_counter() - started < 10


def test_abort_on_a_file_edgeship_made_is_exit_3(crafted, monkeypatch):
    path = crafted("abort", _OP.RESHAPE, _OP.ADD)
    monkeypatch.setattr(tflm_module, "is_trusted", lambda _: True)  # as if the manifest vouched
    with pytest.raises(tflm_module.TFLMFailureError, match=r"\(signal SIGABRT\)") as raised:
        open_backend("tflm", path)
    assert raised.value.exit_code == 3


def test_missing_op_names_tflms_own_reason(crafted):
    path = crafted("tile", _OP.RESHAPE, _OP.TILE)
    with pytest.raises(UserInputError) as raised:
        open_backend("tflm", path)
    assert str(raised.value).startswith(
        f"TFLite Micro cannot load {path}: Didn't find op for builtin opcode 'TILE'")
    assert "(TFLM failed to allocate tensors)" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_crash_while_running_a_loaded_model_is_exit_3_and_a_runtime_error(crafted,
                                                                         artifacts_dir):
    path = crafted("maximum", _OP.SOFTMAX, _OP.MAXIMUM)
    with open_backend("tflm", path) as backend:  # it loads
        batch = np.zeros((1, *backend.inputs()[0].shape[1:]), backend.inputs()[0].dtype)
        with pytest.raises(tflm_module.TFLMFailureError) as raised:
            backend.infer_raw(batch)
    assert isinstance(raised.value, RuntimeError)  # the per-op comparison records it, goes on
    assert raised.value.exit_code == 3
    assert str(raised.value).startswith(f"TFLite Micro crashed running {path} (signal SIG")


def test_isolated_object_reports_signal_and_last_message():
    child = IsolatedObject(_Dying, (), 30)
    assert child.call("echo", np.arange(3)).tolist() == [0, 1, 2]
    with pytest.raises(ChildFailure) as raised:
        child.call("die")
    assert raised.value.signal_name == signal.Signals.SIGABRT.name
    assert raised.value.last_message == "about to abort"
    with pytest.raises(ChildFailure, match="closed"):
        child.call("echo", 1)


def test_isolated_object_time_limit():
    child = IsolatedObject(_Dying, (), 30)
    started = time.perf_counter()
    with pytest.raises(ChildFailure) as raised:
        child.call("sleep", 30, timeout_s=1)
    assert raised.value.timed_out == 1 and time.perf_counter() - started < 5


def test_opening_tflm_costs_milliseconds_not_a_process_start(artifacts_dir, test_images):
    path = artifacts_dir / "model_int8.tflite"
    open_backend("tflm", path).close()  # the fork server starts once per process
    started = time.perf_counter()
    for _ in range(10):
        with open_backend("tflm", path) as backend:
            backend.infer(test_images[:1])
    assert (time.perf_counter() - started) / 10 < 0.5


class _Dying:
    """An object for IsolatedObject's own tests (module level: the child imports it)."""

    def echo(self, value):
        return value

    def die(self):
        os.write(2, b"about to abort\n")
        os.abort()

    def sleep(self, seconds):
        time.sleep(seconds)

