"""convert's input quantization rounds halves away from zero, as TFLite and TensorInfo do."""

import numpy as np

from edgeship.convert.tflite import quantize_input
from edgeship.quantization import TensorInfo


def test_quantize_input_rounds_half_away_from_zero_like_tensor_info():
    values = np.array([0.5, 2.5, -0.5, -2.5, 1.49, 200.0, -200.0], np.float32) * 0.1
    info = TensorInfo("input", (7,), "int8", 0.1, 0)
    expected = np.array([1, 3, -1, -3, 1, 127, -128], np.int8)
    np.testing.assert_array_equal(quantize_input(values, info), expected)
    np.testing.assert_array_equal(info.quantize(values), expected)
    shifted = TensorInfo("input", (2,), "uint8", 1.0, 128)
    np.testing.assert_array_equal(quantize_input(np.array([0.5, -2.5]), shifted), [129, 125])
    float_input = TensorInfo("input", (2,), "float32")
    assert quantize_input(np.array([0.25, 1.5]), float_input).dtype == np.float32


def test_one_quantized_tensor_type_for_every_stage():
    """A runtime's TensorInfo, convert's describe_io and codegen's/embed's QuantizedIO are one
    type (they were three, copied field by field)."""
    from edgeship.convert.firmware_sources import QuantizedIO
    from edgeship.runtime.backends import TensorInfo as BackendTensorInfo

    assert QuantizedIO is TensorInfo and BackendTensorInfo is TensorInfo
    io = TensorInfo("x", (1, 4, 4, 1), "int16", 0.5, 0)
    assert (io.size, io.nbytes, io.ctype, io.quantized) == (16, 32, "int16_t", True)
    assert not TensorInfo("indices", (1,), "int32").quantized
    assert io.to_dict() == {"name": "x", "shape": [1, 4, 4, 1], "dtype": "int16", "scale": 0.5,
                            "zero_point": 0}
