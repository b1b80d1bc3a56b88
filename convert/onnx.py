"""ONNX export: float from the Keras model (tf2onnx), int8 with ONNX Runtime's static QDQ."""

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeship.convert.onnx_speed import speed_up_int8_onnx
from edgeship.deps import import_tf_keras, require
from edgeship.errors import ToolFailureError, UserInputError
from edgeship.onnx_saturation import saturating_ops

ONNX_OPSET = 17
INPUT_NAME = "image"


QUANT_TYPES = ("uint8", "int8")
QUANT_FORMATS = ("QDQ", "QOperator")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class OnnxQuantization:
    """How the int8 ONNX is made; the defaults are exact on every CPU ONNX Runtime runs on.

    On x86-64 without VNNI, ORT's u8 x s8 kernels add each pair of products into a saturating
    16-bit sum (`vpmaddubsw`): 8-bit weights against 8-bit activations overflow it (255 x 127
    x 2 > 32767) and the outputs drift from the float model. 7-bit weights (reduce_range,
    |w| <= 64) bound every pair sum by 255 x 128 = 32640, so the same file is computed
    exactly with or without VNNI; edgeship.onnx_saturation proves it from the file.

    Attributes:
        activation_type: "uint8" or "int8" activations (ORT's x86 kernels prefer u8 x s8).
        weight_type: "int8" or "uint8" weights (u8 x u8 kernels widen to 16 bits first).
        reduce_range: 7-bit weights; False gives full 8-bit weights, exact only where ORT
            has VNNI or widening kernels (see `exact_on`).
        per_channel: per-output-channel weight scales (as TFLite does).
        calibration_method: ORT calibration ("minmax" matches TFLite's converter).
        quant_format: "QDQ" (what ORT's CPU kernels are tuned for) or "QOperator".
    """

    activation_type: str = "uint8"
    weight_type: str = "int8"
    reduce_range: bool = True
    per_channel: bool = True
    calibration_method: str = "minmax"
    quant_format: str = "QDQ"

    def __post_init__(self):
        for name in ("activation_type", "weight_type"):
            if getattr(self, name) not in QUANT_TYPES:
                raise UserInputError(f"{name} must be one of {', '.join(QUANT_TYPES)}, "
                                 f"got {getattr(self, name)!r}")
        if self.quant_format not in QUANT_FORMATS:
            raise UserInputError(f"quant_format must be one of {', '.join(QUANT_FORMATS)}, "
                             f"got {self.quant_format!r}")
        if self.calibration_method not in CALIBRATION_METHODS:
            raise UserInputError(f"calibration_method must be one of {', '.join(CALIBRATION_METHODS)}, "
                             f"got {self.calibration_method!r}")

    @property
    def exact_everywhere(self) -> bool:
        """True when no 16-bit pair sum of ORT's int8 kernels can overflow, on any CPU."""
        return self.reduce_range or self.weight_type == "uint8"

    @property
    def exact_on(self) -> str:
        """The CPUs on which ORT computes this recipe's integer sums without saturating."""
        if self.exact_everywhere:
            return "every CPU (no 16-bit pair sum can overflow)"
        return ("x86-64 with AVX512-VNNI or AVX-VNNI only; NOT exact on x86-64 without VNNI "
                "(AVX2, AVX512 without VNNI), where ONNX Runtime's 16-bit pair sums saturate")


def export_onnx(model, input_shape: tuple[int, ...]) -> bytes:
    """Float ONNX from a tf_keras model with an explicit batch-dynamic input signature."""
    tf, _ = import_tf_keras()
    tf2onnx = require("tf2onnx")
    signature = [tf.TensorSpec((None, *input_shape), tf.float32, name=INPUT_NAME)]
    try:
        model_proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature,
                                                    opset=ONNX_OPSET)
    except Exception as error:  # tf2onnx raises many types for unsupported graphs
        text = str(error).strip()
        raise ToolFailureError(f"ONNX export failed in tf2onnx: "
                               f"{text.splitlines()[0] if text else type(error).__name__} "
                               "(drop --onnx to export TFLite only)") from error
    drop_identity_reshapes(model_proto)
    return model_proto.SerializeToString()


def drop_identity_reshapes(model_proto) -> int:
    """Removes Reshape nodes whose target shape is their input's shape; returns how many.

    tf2onnx puts such a Reshape between a Conv and its BatchNormalization where the feature
    map is 1x1 (MobileNetV2's last blocks at 32x32 input), and ONNX Runtime's Conv+BN fusion
    does not look through it: the BatchNormalization then stays a float op between int8 ones
    in the quantized model. Dropping a Reshape that changes nothing is exact.
    """
    onnx = require("onnx")
    from onnx import numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model_proto)
    shapes = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [dim.dim_value if dim.HasField("dim_value") else None for dim in dims]
    constants = {item.name: numpy_helper.to_array(item) for item in model_proto.graph.initializer}
    graph_outputs = {output.name for output in model_proto.graph.output}
    removed = []
    for node in model_proto.graph.node:
        if node.op_type != "Reshape" or node.output[0] in graph_outputs:
            continue
        source, target = shapes.get(node.input[0]), constants.get(node.input[1])
        if source is None or target is None or len(source) != len(target) or len(source) < 2:
            continue
        batch_kept = target[0] in (-1, 0) or (source[0] is not None and target[0] == source[0])
        if batch_kept and all(dim is not None and dim == int(want)
                              for dim, want in zip(source[1:], target[1:])):
            removed.append(node)
    for node in removed:
        for consumer in model_proto.graph.node:
            for position, name in enumerate(consumer.input):
                if name == node.output[0]:
                    consumer.input[position] = node.input[0]
        model_proto.graph.node.remove(node)
    used = {name for node in model_proto.graph.node for name in node.input}
    for item in [item for item in model_proto.graph.initializer if item.name not in used]:
        model_proto.graph.initializer.remove(item)
    return len(removed)


def quantize_onnx(float_onnx: bytes, calibration_samples: np.ndarray,
                  recipe: OnnxQuantization = OnnxQuantization()) -> bytes:
    """Static int8 quantization with ORT (QDQ by default), calibrated on the given samples.

    ORT's quant pre-processing (shape inference and graph optimisation) runs first, as its
    documentation recommends; a QDQ result then gets edgeship.convert.onnx_speed's exact
    rewrites (same int8 outputs, faster on ORT's CPU kernels). A recipe meant to be exact on
    every CPU is checked on the result: a file whose 16-bit pair sums could saturate is never
    returned as such.
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

    quant_types = {"uint8": quantization.QuantType.QUInt8, "int8": quantization.QuantType.QInt8}
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
            quant_format=getattr(quantization.QuantFormat, recipe.quant_format),
            per_channel=recipe.per_channel,
            activation_type=quant_types[recipe.activation_type],
            weight_type=quant_types[recipe.weight_type], reduce_range=recipe.reduce_range,
            calibrate_method=method)
        int8_onnx = (work / "int8.onnx").read_bytes()
    if recipe.quant_format == "QDQ":
        int8_onnx, _ = speed_up_int8_onnx(int8_onnx)  # exact: identical int8 outputs on ORT
    if recipe.exact_everywhere and (risky := saturating_ops(int8_onnx)):
        raise RuntimeError("ONNX Runtime quantized weights beyond the recipe's range: "
                           + "; ".join(bound.describe() for bound in risky))
    return int8_onnx


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
