"""The int8 ONNX convert delivers is computed exactly on every x86-64 CPU, proved two ways.

Analytically (edgeship.onnx_saturation): no 16-bit pair sum of ORT's u8 x s8 kernels can
overflow. By emulation: ONNX Runtime under `qemu-x86_64 -cpu Haswell` (AVX2, no VNNI, so
ORT takes its saturating vpmaddubsw kernels) gives the same outputs as on this machine. The
8-bit-weight recipe is the counter-example both must catch.
"""

from pathlib import Path

import numpy as np
import pytest

from edgeship.cpu_features import cpu_features
from edgeship.onnx_saturation import INT16_MAX, pair_sum_bounds, saturating_ops
from edgeship.runtime.emulated_cpu import qemu_path, run_onnx_emulated

QEMU_IMAGES = 200


@pytest.fixture(scope="module")
def full_range_onnx(converted_run, mnist5k, tmp_path_factory):
    """The same float model quantized with 8-bit weights: exact only with VNNI."""
    from edgeship.convert.onnx import OnnxQuantization, quantize_onnx

    recipe = OnnxQuantization(reduce_range=False)
    assert "NOT exact on x86-64 without VNNI" in recipe.exact_on
    path = tmp_path_factory.mktemp("full_range") / "model_int8_full_range.onnx"
    float_onnx = (converted_run.out_dir / "model.onnx").read_bytes()
    path.write_bytes(quantize_onnx(float_onnx, mnist5k.x_train[:100], recipe))
    return path


def test_delivered_int8_onnx_cannot_saturate(converted_run):
    bounds = pair_sum_bounds(converted_run.out_dir / "model_int8.onnx")
    # lenet5: three Conv and two Gemm, all u8 x s8 with 7-bit weights.
    assert [bound.op_type for bound in bounds] == ["Conv"] * 3 + ["Gemm"] * 2
    assert all(bound.kernel == "u8 x s8" for bound in bounds)
    assert max(bound.worst_pair_sum for bound in bounds) <= 255 * 128 <= INT16_MAX
    assert saturating_ops(converted_run.out_dir / "model_int8.onnx") == ()


def test_eight_bit_weights_are_named_as_saturating(full_range_onnx):
    risky = saturating_ops(full_range_onnx)
    assert [bound.op_type for bound in risky] == ["Conv"] * 3 + ["Gemm"] * 2
    assert all(bound.worst_pair_sum > INT16_MAX for bound in risky)
    assert "vpmaddubsw" in risky[0].describe() and "reduce_range" in risky[0].describe()


def test_cpu_features_match_the_kernel_flags():
    features = cpu_features()
    assert {"machine", "source", "avx2", "avx512", "vnni", "int8_pair_sums"} <= set(features)
    if features["source"] != "cpuid":
        pytest.skip(f"no CPUID here ({features['machine']}, {features['source']})")
    flags = Path("/proc/cpuinfo").read_text().split("\nflags")[1].split("\n")[0].split()
    assert features["avx2"] == ("avx2" in flags)
    assert features["avx512_vnni"] == ("avx512_vnni" in flags)
    assert features["int8_pair_sums"] == ("exact-int32" if features["vnni"]
                                          else "saturating-int16")


@pytest.mark.skipif(qemu_path() is None,
                    reason="needs qemu-x86_64 (Debian package qemu-user) on x86-64 Linux")
def test_avx2_cpu_computes_the_delivered_onnx_exactly(converted_run, mnist5k, full_range_onnx):
    """ORT on an emulated Haswell (AVX2, no VNNI) against ORT on this CPU."""
    from edgeship.runtime.backends import open_backend

    images = np.ascontiguousarray(mnist5k.x_test[:QEMU_IMAGES], np.float32)
    delivered = converted_run.out_dir / "model_int8.onnx"
    emulated = run_onnx_emulated([delivered, full_range_onnx], images)
    assert emulated.features["avx2"] and not emulated.features["vnni"]
    assert emulated.features["int8_pair_sums"] == "saturating-int16"
    here = {}
    for path in (delivered, full_range_onnx):
        with open_backend("onnxruntime", path) as backend:
            here[path] = backend.infer(images)
    np.testing.assert_array_equal(emulated.outputs[delivered], here[delivered])
    if cpu_features()["vnni"]:
        # The emulation really takes the saturating kernels: the 8-bit-weight file drifts.
        drift = np.abs(emulated.outputs[full_range_onnx] - here[full_range_onnx]).max()
        assert drift > 3 / 255
