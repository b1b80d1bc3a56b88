"""Every backend on the session's lenet5 artifacts: shapes, quantization, agreement, errors."""

import numpy as np
import pytest

from edgeship.errors import UserInputError
from edgeship.onnx_saturation import saturating_ops
from edgeship.runtime.backends import (
    REGISTRY,
    TensorInfo,
    backends_for,
    default_backend_names,
    open_backend,
)

CASES = [("keras", "model.keras"), ("litert", "model_float.tflite"),
         ("litert", "model_int8.tflite"), ("litert-ref", "model_int8.tflite"),
         ("tflm", "model_float.tflite"), ("tflm", "model_int8.tflite"),
         ("onnxruntime", "model.onnx"), ("onnxruntime", "model_int8.onnx")]


@pytest.fixture(scope="module")
def keras_reference(artifacts_dir, test_images):
    with open_backend("keras", artifacts_dir / "model.keras") as backend:
        return backend.infer(test_images)


@pytest.mark.parametrize("name,artifact", CASES)
def test_backend_matches_keras_reference(name, artifact, artifacts_dir, test_images,
                                         keras_reference):
    with open_backend(name, artifacts_dir / artifact) as backend:
        assert backend.name == name
        (input_info,), (output_info,) = backend.inputs(), backend.outputs()
        assert input_info.shape[1:] == (28, 28, 1)
        assert output_info.shape[1:] == (10,)
        outputs = backend.infer(test_images)
        raw = backend.infer_raw(backend.quantize_input(test_images))
    assert outputs.dtype == np.float32 and outputs.shape == (len(test_images), 10)
    np.testing.assert_array_equal(backend.dequantize_output(raw), outputs)
    if "int8" in artifact and artifact.endswith(".tflite"):
        assert input_info.dtype == output_info.dtype == "int8"
        assert input_info.scale == pytest.approx(1 / 255) and input_info.zero_point == -128
        assert raw.dtype == np.int8
        # One output quantum is 1/256; int8 lenet stays within a few quanta of float.
        assert np.abs(outputs - keras_reference).max() < 0.1
    elif "int8" in artifact:
        # A bound every CPU meets only because no 16-bit pair sum can saturate (7-bit weights);
        # with 8-bit weights an AVX2-only CPU measured 0.139 here.
        assert saturating_ops(artifacts_dir / artifact) == ()
        assert np.abs(outputs - keras_reference).max() < 0.1
    else:
        assert not input_info.quantized
        np.testing.assert_allclose(outputs, keras_reference, atol=1e-5, rtol=1e-5)
    agreement = (outputs.argmax(1) == keras_reference.argmax(1)).mean()
    assert agreement >= 0.95


def test_reference_kernels_and_tflm_are_bit_exact(artifacts_dir, test_images):
    path = artifacts_dir / "model_int8.tflite"
    with open_backend("litert-ref", path) as reference, open_backend("tflm", path) as micro:
        raw = reference.quantize_input(test_images)
        np.testing.assert_array_equal(reference.infer_raw(raw), micro.infer_raw(raw))


def test_litert_resizes_between_batch_sizes(artifacts_dir, test_images):
    with open_backend("litert", artifacts_dir / "model_int8.tflite") as backend:
        whole = backend.infer(test_images)
        one = backend.infer(test_images[:1])
        np.testing.assert_array_equal(one, whole[:1])


def test_tflm_reports_arena_bytes(artifacts_dir):
    with open_backend("tflm", artifacts_dir / "model_int8.tflite") as backend:
        arena = backend.details()["arena"]
    # lenet5 int8: a few kilobytes of activations, far below the 4 MiB arena it was given.
    assert 1000 < arena["total_bytes"] < 1 << 20
    assert arena["head_bytes"] + arena["tail_bytes"] == arena["total_bytes"]


def test_tensor_info_quantize_round_trip():
    info = TensorInfo("x", (-1, 4), "int8", scale=0.5, zero_point=-3)
    raw = info.quantize(np.array([-100.0, -0.25, 0.25, 1.0, 100.0], np.float32))
    # round half away from zero (TFLite), then clipped to int8
    assert raw.tolist() == [-128, -4, -2, -1, 127]
    np.testing.assert_array_equal(info.dequantize(raw), [-62.5, -0.5, 0.5, 1.0, 65.0])
    assert not TensorInfo("y", (1,), "float32").quantized


def test_registry_lists_every_runtime_and_matches_suffixes():
    assert {"keras", "litert", "litert-ref", "tflm", "onnxruntime", "c"} <= set(REGISTRY)
    assert set(default_backend_names()) >= {"keras", "litert", "litert-ref", "tflm", "onnxruntime"}
    assert backends_for("m.tflite", default_backend_names()) == ("litert", "litert-ref", "tflm")
    assert backends_for("m.onnx") == ("onnxruntime",)


def test_backend_facts_are_registry_fields():
    """Devices, the format's default backend, the int8 reference, the fork server's preload
    and the known rounding causes come from each BackendEntry, so no comparison names one."""
    from edgeship.runtime.backends import (
        gpu_backend_names,
        int8_reference_backend,
        preload_modules,
        primary_backend,
    )
    from edgeship.runtime.isolation import _PRELOAD
    from edgeship.runtime.op_parity import REFERENCE_BACKEND, known_cause
    from edgeship.runtime.parity_checks import REFERENCE_INT8_BACKEND

    assert gpu_backend_names() == ("keras", "onnxruntime")
    assert {suffix: primary_backend(f"m{suffix}") for suffix in (".keras", ".h5", ".tflite",
                                                                 ".onnx", ".bin")} == {
        ".keras": "keras", ".h5": "keras", ".tflite": "litert", ".onnx": "onnxruntime",
        ".bin": None}
    assert REFERENCE_BACKEND == REFERENCE_INT8_BACKEND == int8_reference_backend() == "litert-ref"
    assert sum(entry.int8_reference for entry in REGISTRY.values()) == 1
    assert REGISTRY[int8_reference_backend()].reference_kernels
    assert {"ai_edge_litert.interpreter", "onnxruntime", "tflite_micro",
            "edgeship.runtime.backends.tflm"} <= set(preload_modules()) <= set(_PRELOAD)
    assert "XNNPACK" in known_cause("litert", "CONV_2D")
    assert "tflite-micro issue 3252" in known_cause("tflm", "CONV_2D") == known_cause("c", "ADD")
    assert known_cause("litert-ref", "CONV_2D") == ""
    assert "exp and reciprocal" in known_cause("tflm", "SOFTMAX")
    assert [name for name, entry in REGISTRY.items() if entry.pair_sum_saturation] == [
        "onnxruntime"]


@pytest.mark.parametrize("name,artifact,options,message", [
    ("nope", "model.onnx", {}, "unknown backend 'nope'"),
    ("litert", "model.onnx", {}, "opens .tflite files"),
    ("onnxruntime", "missing.onnx", {}, "does not exist"),
    ("onnxruntime", "model.onnx", {"thread": 2}, "does not take option(s) thread"),
    ("onnxruntime", "model.onnx", {"threads": 0}, "threads must be a positive integer"),
    ("litert", "model_int8.tflite", {"device": "gpu"}, "runs on the CPU"),
    ("tflm", "model_int8.tflite", {"device": "gpu"}, "runs on the CPU"),
    ("onnxruntime", "model.onnx", {"device": "tpu"}, "device must be one of cpu, gpu"),
])
def test_open_backend_rejects_bad_input(name, artifact, options, message, artifacts_dir):
    with pytest.raises(UserInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        open_backend(name, artifacts_dir / artifact, **options)


def test_gpu_without_gpu_is_an_error_not_a_fallback(artifacts_dir):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA; the no-GPU path cannot be exercised")
    with pytest.raises(UserInputError, match="--device gpu needs onnxruntime-gpu"):
        open_backend("onnxruntime", artifacts_dir / "model.onnx", device="gpu")
