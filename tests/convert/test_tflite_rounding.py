"""convert's input quantization rounds halves away from zero, as TFLite and TensorInfo do."""

import numpy as np

from edgeship.convert.tflite import TensorQuantization, quantize_input
from edgeship.runtime.backends import TensorInfo


def test_quantize_input_rounds_half_away_from_zero_like_tensor_info():
    values = np.array([0.5, 2.5, -0.5, -2.5, 1.49, 200.0, -200.0], np.float32) * 0.1
    quantization = TensorQuantization("input", "int8", (7,), 0.1, 0)
    expected = np.array([1, 3, -1, -3, 1, 127, -128], np.int8)
    np.testing.assert_array_equal(quantize_input(values, quantization), expected)
    info = TensorInfo("input", (7,), "int8", 0.1, 0)
    np.testing.assert_array_equal(info.quantize(values), expected)
    shifted = TensorQuantization("input", "uint8", (2,), 1.0, 128)
    np.testing.assert_array_equal(quantize_input(np.array([0.5, -2.5]), shifted), [129, 125])
