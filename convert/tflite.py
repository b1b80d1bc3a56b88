"""TFLite export: float32, and full-integer int8 with builtin int8 ops only (no float fallback)."""

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgeship.backend_registry import open_backend
from edgeship.deps import import_tf_keras, require
from edgeship.errors import ToolFailureError, UserInputError
from edgeship.quantization import TensorInfo
from edgeship.tflite_graph import Tensor, read_graph

IO_TYPES = ("int8", "uint8", "float32")
# The converter's switch from per-channel to per-tensor weight quantization (all weight ops).
PER_CHANNEL_SWITCH = "_experimental_disable_per_channel"


def export_tflite(model, representative_samples: np.ndarray | None = None,
                  io_type: str = "int8", per_tensor_weights: bool = False) -> bytes:
    """Convert a tf_keras model to a .tflite flatbuffer.

    Args:
        model: the tf_keras model (plain, stripped-pruned, or quantization-aware).
        representative_samples: float32 NHWC calibration images; None exports float32.
        io_type: input/output type of the int8 model: "int8", "uint8" or "float32".
        per_tensor_weights: one weight scale per tensor instead of one per output channel.

    Returns:
        The flatbuffer bytes.
    """
    tf, _ = import_tf_keras()
    return convert_tflite(tf.lite.TFLiteConverter.from_keras_model(model),
                          representative_samples, io_type, per_tensor_weights)


def convert_tflite(converter, representative_samples: np.ndarray | None = None,
                   io_type: str = "int8", per_tensor_weights: bool = False) -> bytes:
    """Run any TFLiteConverter (Keras model or SavedModel) with edgeship's int8 settings.

    Args:
        converter: a tf.lite.TFLiteConverter not yet configured for quantization.
        representative_samples: float32 NHWC calibration images; None exports float32.
        io_type: input/output type of the int8 model: "int8", "uint8" or "float32".
        per_tensor_weights: one weight scale per tensor instead of one per output channel
            (post-training quantization; a QAT model keeps the granularity it trained with).

    Returns:
        The flatbuffer bytes.
    """
    if io_type not in IO_TYPES:
        raise UserInputError(f"io type must be one of {', '.join(IO_TYPES)}, got {io_type!r}")
    tf, _ = import_tf_keras()
    if representative_samples is not None:
        samples = np.asarray(representative_samples, np.float32)

        def representative_dataset() -> Iterator[list[np.ndarray]]:
            for sample in samples:
                yield [sample[np.newaxis]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = getattr(tf, io_type)
        converter.inference_output_type = getattr(tf, io_type)
        if per_tensor_weights:
            if not hasattr(converter, PER_CHANNEL_SWITCH):
                raise RuntimeError(f"this TensorFlow's converter has no {PER_CHANNEL_SWITCH}; "
                                   "per-tensor weights need TensorFlow >= 2.9")
            setattr(converter, PER_CHANNEL_SWITCH, True)
    try:
        return bytes(converter.convert())
    except Exception as error:  # the converter raises ConverterError and plain Exceptions
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ToolFailureError(f"TFLite conversion failed in TensorFlow's converter: "
                               f"{first_line}") from error


def open_interpreter(tflite_bytes: bytes, reference_kernels: bool = False):
    """An allocated ai_edge_litert Interpreter (reference kernels are bit-exact with TFLM)."""
    interpreter_module = require("ai_edge_litert.interpreter")
    resolver = (interpreter_module.OpResolverType.BUILTIN_REF if reference_kernels
                else interpreter_module.OpResolverType.AUTO)
    interpreter = interpreter_module.Interpreter(model_content=tflite_bytes,
                                                 experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    return interpreter


def describe_io(tflite_bytes: bytes) -> dict[str, TensorInfo]:
    """The first input's and first output's name, dtype, shape, scale and zero point."""
    graph = read_graph(tflite_bytes)
    return {"input": graph.tensors[graph.inputs[0]].info(),
            "output": graph.tensors[graph.outputs[0]].info()}


def tensor_types_by_op(tflite_bytes: bytes) -> list[dict]:
    """Each operator with the dtypes of its input and output tensors (weights included).

    Lets a test prove an int8 model is int8 end to end: every op's tensors int8 or int32.
    """
    graph = read_graph(tflite_bytes)
    return [{"op": op.name,
             "dtypes": sorted({graph.tensors[index].dtype for index in op.inputs + op.outputs
                               if index >= 0})}
            for op in graph.operators]


def run_tflite_micro(tflite_bytes: bytes, sample: np.ndarray) -> np.ndarray:
    """Run one already-typed input through TFLite Micro (the registry's tflm backend): a
    load check of bytes not yet written to their place."""
    with tempfile.TemporaryDirectory(prefix="edgeship_tflm_check_") as folder:
        path = Path(folder) / "model.tflite"
        path.write_bytes(tflite_bytes)
        with open_backend("tflm", path, verify=False) as backend:
            return backend.infer_raw(sample)


def quantize_input(images: np.ndarray, quantization: TensorInfo) -> np.ndarray:
    """Float images to the model's input dtype with its scale and zero point (halves away
    from zero, as TFLite rounds: TensorInfo.quantize)."""
    return quantization.quantize(images)


def check_tflite(tflite_bytes: bytes, sample: np.ndarray) -> None:
    """Prove a written .tflite loads and runs in ai_edge_litert and in TFLite Micro."""
    io = describe_io(tflite_bytes)
    typed = quantize_input(sample[np.newaxis], io["input"])
    interpreter = open_interpreter(tflite_bytes)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], typed)
    interpreter.invoke()
    litert_output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    micro_output = run_tflite_micro(tflite_bytes, typed)
    if litert_output.shape != tuple(micro_output.shape):
        raise UserInputError(f"TFLite Micro output shape {micro_output.shape} differs from "
                             f"LiteRT's {litert_output.shape}")


WEIGHT_OPS = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1}


def _weight_tensors(tflite_bytes: bytes) -> list[Tensor]:
    """The weight tensor of each CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED op."""
    graph = read_graph(tflite_bytes)
    return [graph.tensors[op.inputs[WEIGHT_OPS[op.name]]] for op in graph.operators
            if op.name in WEIGHT_OPS and len(op.inputs) > WEIGHT_OPS[op.name]]


def weight_sparsity(tflite_bytes: bytes) -> dict[str, float]:
    """Fraction of exactly-zero weights per CONV/DEPTHWISE/FULLY_CONNECTED weight tensor.

    Measured on the file itself, so it proves the zeros survived conversion.
    """
    return {tensor.name: float(np.mean(tensor.data == 0)) for tensor in _weight_tensors(tflite_bytes)}


def weight_scale_counts(tflite_bytes: bytes) -> dict[str, int]:
    """Quantization scales per weight tensor: 1 per-tensor, the channel count per-channel."""
    return {tensor.name: int(tensor.scales.size) for tensor in _weight_tensors(tflite_bytes)}


def weight_counts(tflite_bytes: bytes) -> dict[str, int]:
    """Number of weights per weight tensor (for sparsity weighted by size)."""
    return {tensor.name: tensor.size for tensor in _weight_tensors(tflite_bytes)}
