"""Per-layer quantization error: each integer tensor against the float model's, on real images.

Every int8 tensor of the model (LiteRT reference kernels, preserve-all-tensors mode) is
dequantized and compared with the float .tflite's tensor for the same op on the same images:
SQNR in dB, cosine, mean and max error in units of the tensor's scale. `edgeship inspect`
(edgeship/inspect.py) ranks them and adds the per-op runtime comparison and the attribution;
`convert --activations auto` (edgeship.convert.activations) moves the worst to int16. It lives in
edgeship's core so both stages reach it (edgeship.runtime.inspect re-exports it); it opens
runtimes only through the backend registry.
"""

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgeship.errors import UserInputError


@dataclass(frozen=True)
class LayerError:
    """One op's int8 output against the float model's output of the same op."""

    index: int
    op: str
    output: str
    sqnr_db: float
    cosine: float
    mean_error_quanta: float
    max_error_quanta: float

    def to_dict(self) -> dict:
        return asdict(self)


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of candidate against reference, in dB."""
    reference, candidate = (np.asarray(a, np.float64).ravel() for a in (reference, candidate))
    noise = float(np.sum((reference - candidate) ** 2))
    signal = float(np.sum(reference ** 2))
    if noise == 0:
        return float("inf")
    return 10 * np.log10(signal / noise) if signal > 0 else float("-inf")


def layer_errors(int8_path: Path, float_path: Path, images: np.ndarray) -> list[LayerError]:
    """Each op of the int8 file against the float file's op at the same position.

    The two files must come from one model (same op sequence once QUANTIZE/DEQUANTIZE are
    left out), as `edgeship convert` writes them.
    """
    from edgeship.backend_registry import open_backend
    from edgeship.tflite_graph import align_ops, graph_ops

    int8_ops = graph_ops(int8_path.read_bytes())
    aligned = align_ops(int8_ops, graph_ops(float_path.read_bytes()))
    if aligned is None:
        raise UserInputError(f"{int8_path.name} and {float_path.name} do not have the same ops; "
                             "per-layer error needs the float and int8 files of one model")
    with open_backend("litert-ref", int8_path) as backend:
        raw = backend.quantize_input(images)
    int8_tensors = capture_reference_tensors(int8_path.read_bytes(), raw)
    float_tensors = capture_reference_tensors(float_path.read_bytes(),
                                              np.asarray(images, np.float32))
    details = _tensor_quantization(int8_path.read_bytes())
    errors = []
    for op in int8_ops:
        scale, zero_point, name = details[op.output_tensor]
        float_tensor = aligned[op.index].output_tensor
        if op.output_tensor not in int8_tensors or float_tensor not in float_tensors or not scale:
            continue
        dequantized = (int8_tensors[op.output_tensor].astype(np.float64) - zero_point) * scale
        reference = float_tensors[float_tensor].astype(np.float64)
        difference = np.abs(dequantized - reference)
        norms = np.linalg.norm(dequantized) * np.linalg.norm(reference)
        errors.append(LayerError(
            index=op.index, op=op.op, output=name,
            sqnr_db=round(sqnr_db(reference, dequantized), 3),
            cosine=float(np.sum(dequantized * reference) / norms) if norms else 0.0,
            mean_error_quanta=float(difference.mean() / scale),
            max_error_quanta=float(difference.max() / scale)))
    return errors


def capture_reference_tensors(tflite_bytes: bytes, raw_images: np.ndarray) -> dict[int, np.ndarray]:
    """Every tensor's value per image under the reference kernels (tensor index -> batch)."""
    from edgeship.deps import require

    interpreter_module = require("ai_edge_litert.interpreter")
    interpreter = interpreter_module.Interpreter(
        model_content=tflite_bytes, experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=interpreter_module.OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    wanted = [detail["index"] for detail in interpreter.get_tensor_details()]
    captured: dict[int, list] = {index: [] for index in wanted}
    for image in raw_images:
        interpreter.set_tensor(input_index, image[np.newaxis])
        interpreter.invoke()
        for index in wanted:
            try:
                captured[index].append(interpreter.get_tensor(index).copy())
            except ValueError:  # a tensor with no data (optional inputs)
                captured[index].append(None)
    return {index: np.stack(values) for index, values in captured.items()
            if values and values[0] is not None}


def _tensor_quantization(tflite_bytes: bytes) -> dict[int, tuple[float, int, str]]:
    from edgeship.tflite_graph import read_model

    model = read_model(tflite_bytes)
    found = {}
    for index, tensor in enumerate(model.subgraphs[0].tensors):
        quantization = tensor.quantization
        scales = [] if quantization is None or quantization.scale is None else list(
            quantization.scale)
        zero_points = [] if quantization is None or quantization.zeroPoint is None else list(
            quantization.zeroPoint)
        found[index] = (float(scales[0]) if len(scales) == 1 else 0.0,
                        int(zero_points[0]) if len(zero_points) == 1 else 0,
                        tensor.name.decode())
    return found
