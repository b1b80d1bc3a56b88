"""Files other converters write that are valid for TFLite Micro though unusual: edgeship's
checks accept them and codegen stays bit-exact (found on public models: TFLite Micro's own
person_detect stores a depthwise bias's per-channel axis as 3; Vela's Ethos-U models carry
raw uint8 bytes without quantization for their custom op)."""

import numpy as np
import pytest

from edgeship.errors import UserInputError
from edgeship.firmware import CodegenConfig, generate_c
from edgeship.model_check import check_tflite_bytes
from edgeship.runtime.backends import open_backend
from edgeship.tflite_graph import read_model, write_model


def _per_channel_biases(model):
    """Indices of 1-d int32 tensors quantized per channel (conv and depthwise biases)."""
    tensors = model.subgraphs[0].tensors
    return [index for index, tensor in enumerate(tensors)
            if tensor.quantization is not None and tensor.quantization.scale is not None
            and len(tensor.quantization.scale) > 1 and len(tensor.shape) == 1]


def test_bias_with_the_weights_axis_as_quantized_dimension_is_read_along_its_only_axis(
        codegen_models, tmp_path):
    source = codegen_models["dscnn"]
    model = read_model(source.path.read_bytes())
    biases = _per_channel_biases(model)
    assert biases, "the fixture should have per-channel biases"
    for index in biases:
        model.subgraphs[0].tensors[index].quantization.quantizedDimension = 3
    quirky = tmp_path / "quirky.tflite"
    quirky.write_bytes(write_model(model))
    check_tflite_bytes(quirky.read_bytes(), "quirky.tflite")  # no error
    result = generate_c(CodegenConfig(model=str(quirky), out=str(tmp_path / "c")))
    assert result.ops
    with open_backend("litert-ref", source.path) as backend:
        raw = backend.quantize_input(source.images[:8])
    outputs = {}
    for name in ("c", "tflm"):
        with open_backend(name, quirky) as backend:
            outputs[name] = np.asarray(backend.infer_raw(raw))
    np.testing.assert_array_equal(outputs["c"], outputs["tflm"])


def test_int8_tensor_without_quantization_is_still_refused(codegen_models, tmp_path):
    model = read_model(codegen_models["lenet5"].path.read_bytes())
    tensors = model.subgraphs[0].tensors
    tensors[model.subgraphs[0].inputs[0]].quantization = None
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(write_model(model))
    with pytest.raises(UserInputError, match="INT8 without quantization"):
        check_tflite_bytes(broken.read_bytes(), "broken.tflite")
