"""ONNX export: float from the Keras model (tf2onnx), int8 with ONNX Runtime's static QDQ."""

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeship.deps import import_tf_keras, require
from edgeship.errors import UserInputError

ONNX_OPSET = 17
INPUT_NAME = "image"


@dataclass(frozen=True)
class OnnxQuantization:
    """How the int8 ONNX is made; the defaults are the fastest recipe measured on this CPU.

    Attributes:
        activation_type: "uint8" or "int8" activations (ORT's VNNI kernels prefer u8 x s8).
        per_channel: per-output-channel weight scales (as TFLite does).
        calibration_method: ORT calibration ("minmax" matches TFLite's converter).
    """

    activation_type: str = "uint8"
    per_channel: bool = True
    calibration_method: str = "minmax"


def export_onnx(model, input_shape: tuple[int, ...]) -> bytes:
    """Float ONNX from a tf_keras model with an explicit batch-dynamic input signature."""
    tf, _ = import_tf_keras()
    tf2onnx = require("tf2onnx")
    signature = [tf.TensorSpec((None, *input_shape), tf.float32, name=INPUT_NAME)]
    try:
        model_proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature,
                                                    opset=ONNX_OPSET)
    except Exception as error:  # tf2onnx raises many types for unsupported graphs
        raise UserInputError(f"ONNX export failed: {str(error).splitlines()[0]}") from error
    return model_proto.SerializeToString()


def quantize_onnx(float_onnx: bytes, calibration_samples: np.ndarray,
                  recipe: OnnxQuantization = OnnxQuantization()) -> bytes:
    """Static int8 quantization in QDQ format with ORT, calibrated on the given samples.

    ORT's quant pre-processing (shape inference and graph optimisation) runs first, as its
    documentation recommends.
    """
    quantization = require("onnxruntime.quantization")
    shape_inference = require("onnxruntime.quantization.shape_inference")
    samples = np.asarray(calibration_samples, np.float32)

    class _Reader(quantization.CalibrationDataReader):
        def __init__(self):
            self._iterator = iter(samples)

        def get_next(self):
            sample = next(self._iterator, None)
            return None if sample is None else {INPUT_NAME: sample[np.newaxis]}

    activation = (quantization.QuantType.QUInt8 if recipe.activation_type == "uint8"
                  else quantization.QuantType.QInt8)
    method = {"minmax": quantization.CalibrationMethod.MinMax,
              "entropy": quantization.CalibrationMethod.Entropy,
              "percentile": quantization.CalibrationMethod.Percentile}[recipe.calibration_method]
    with tempfile.TemporaryDirectory(prefix="edgeship-onnx-") as work:
        work = Path(work)
        (work / "float.onnx").write_bytes(float_onnx)
        shape_inference.quant_pre_process(str(work / "float.onnx"), str(work / "pre.onnx"),
                                          skip_symbolic_shape=False)
        quantization.quantize_static(
            str(work / "pre.onnx"), str(work / "int8.onnx"), _Reader(),
            quant_format=quantization.QuantFormat.QDQ, per_channel=recipe.per_channel,
            activation_type=activation, weight_type=quantization.QuantType.QInt8,
            calibrate_method=method)
        return (work / "int8.onnx").read_bytes()


def check_onnx(path: str | os.PathLike, sample: np.ndarray) -> None:
    """Full ONNX checker, then one inference in ONNX Runtime."""
    onnx = require("onnx")
    onnxruntime = require("onnxruntime")
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as error:
        raise UserInputError(f"{path} fails the ONNX checker: {str(error).splitlines()[0]}") from error
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    session.run(None, {session.get_inputs()[0].name: sample[np.newaxis].astype(np.float32)})
