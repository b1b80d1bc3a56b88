"""convert.xnnpack: the float-softmax-output rewrite keeps int8 top-1 and lets XNNPACK take it all."""

import numpy as np
import pytest

from edgeship.convert.xnnpack import float_softmax_output
from edgeship.errors import UserInputError
from edgeship.runtime.backends import open_backend


def test_float_softmax_output_matches_int8_and_is_delegated(converted_run, mnist5k, tmp_path):
    int8_path = converted_run.out_dir / "model_int8.tflite"
    rewritten = tmp_path / "model_int8_float_softmax.tflite"
    rewritten.write_bytes(float_softmax_output(int8_path.read_bytes()))
    images = mnist5k.x_test[:200]
    for backend in ("litert-ref", "litert", "tflm"):
        # each runtime against its own int8 softmax: same int8 logits, only the softmax differs
        with open_backend(backend, int8_path) as original:
            int8_probabilities = original.infer(images)
            quantum = original.outputs()[0].scale
        with open_backend(backend, rewritten, verify=False) as opened:
            assert opened.outputs()[0].dtype == "float32" and opened.inputs()[0].dtype == "int8"
            probabilities = opened.infer(images)
        # int8 softmax quantizes the same probabilities: within one output quantum
        assert np.abs(probabilities - int8_probabilities).max() <= quantum * 1.01, backend
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
        confident = np.sort(int8_probabilities, axis=1)[:, -2] < int8_probabilities.max(axis=1)
        assert (probabilities.argmax(1) == int8_probabilities.argmax(1))[confident].all(), backend
    with open_backend("litert", rewritten, verify=False) as opened:
        delegation = opened.details()["delegation"]
    assert "SOFTMAX" not in delegation["outside"]
    assert delegation["ops"] == 10  # lenet5's 9 ops and the DEQUANTIZE


def test_float_softmax_output_refuses_a_float_model(converted_run):
    with pytest.raises(UserInputError, match="int8 model whose output is a SOFTMAX"):
        float_softmax_output((converted_run.out_dir / "model_float.tflite").read_bytes())
