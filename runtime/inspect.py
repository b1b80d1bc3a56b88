"""`edgeship inspect`: which layer loses accuracy, which runtime's kernel differs, and why.

Per layer: every int8 tensor of the model (LiteRT reference kernels, preserve-all-tensors mode)
dequantized and compared with the float .tflite's tensor for the same op on the same real test
images: SQNR in dB, cosine, mean and max error in units of the tensor's scale, ranked worst
first. Per op: edgeship.runtime.op_parity's one-op comparison on identical int8 inputs.

Not built yet: attribution of end-to-end accuracy to single layers (restoring one layer to
float at a time); the ranking is by the measured tensor error alone.
"""

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgeship.errors import UserInputError

SKIPPED_OPS = ("QUANTIZE", "DEQUANTIZE")


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
    from edgeship.runtime.backends import open_backend
    from edgeship.runtime.op_parity import capture_reference_tensors

    int8_ops = _graph_ops(int8_path.read_bytes())
    float_ops = _graph_ops(float_path.read_bytes())
    if [op for _, op, _ in int8_ops] != [op for _, op, _ in float_ops]:
        raise UserInputError(f"{int8_path.name} and {float_path.name} do not have the same ops; "
                             "per-layer error needs the float and int8 files of one model")
    with open_backend("litert-ref", int8_path) as backend:
        raw = backend.quantize_input(images)
    int8_tensors = capture_reference_tensors(int8_path.read_bytes(), raw)
    float_tensors = capture_reference_tensors(float_path.read_bytes(),
                                              np.asarray(images, np.float32))
    details = _tensor_quantization(int8_path.read_bytes())
    errors = []
    for (index, op, int8_tensor), (_, _, float_tensor) in zip(int8_ops, float_ops):
        scale, zero_point, name = details[int8_tensor]
        if int8_tensor not in int8_tensors or float_tensor not in float_tensors or not scale:
            continue
        dequantized = (int8_tensors[int8_tensor].astype(np.float64) - zero_point) * scale
        reference = float_tensors[float_tensor].astype(np.float64)
        difference = np.abs(dequantized - reference)
        norms = np.linalg.norm(dequantized) * np.linalg.norm(reference)
        errors.append(LayerError(
            index=index, op=op, output=name, sqnr_db=round(sqnr_db(reference, dequantized), 3),
            cosine=float(np.sum(dequantized * reference) / norms) if norms else 0.0,
            mean_error_quanta=float(difference.mean() / scale),
            max_error_quanta=float(difference.max() / scale)))
    return errors


def _graph_ops(tflite_bytes: bytes) -> list[tuple[int, str, int]]:
    """(op index, op name, first output tensor) of every op but QUANTIZE/DEQUANTIZE, in order."""
    from tensorflow.lite.tools import flatbuffer_utils

    from edgeship.runtime.op_parity import _op_names

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite_bytes))
    names = _op_names(model)
    return [(index, names[index], int(op.outputs[0]))
            for index, op in enumerate(model.subgraphs[0].operators)
            if names[index] not in SKIPPED_OPS]


def _tensor_quantization(tflite_bytes: bytes) -> dict[int, tuple[float, int, str]]:
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite_bytes))
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


@dataclass(frozen=True)
class InspectConfig:
    """What `edgeship inspect` looks at.

    Attributes:
        run_dir: a run directory from train + convert (model_int8.tflite, model_float.tflite).
        images: test images used (per layer and per op).
        runtimes: int8 runtimes compared op by op with the reference kernels.
    """

    run_dir: str
    images: int = 100
    runtimes: tuple[str, ...] = ("litert", "tflm")

    def __post_init__(self):
        if self.images < 1:
            raise ValueError(f"images must be >= 1, got {self.images}")


def run_inspect(config: InspectConfig) -> dict:
    """Per-layer quantization error and per-op runtime parity; writes inspect.json/.md.

    Raises:
        UserInputError: not a converted run directory.
    """
    from edgeship.artifacts import read_manifest, write_json_atomic, write_text_atomic
    from edgeship.reports import REPORT_SCHEMA_VERSION, environment
    from edgeship.runtime.backends import open_backend
    from edgeship.runtime.op_parity import per_op_parity, summarize
    from edgeship.runtime.parity import load_test_split

    run_dir = Path(config.run_dir)
    int8_path, float_path = run_dir / "model_int8.tflite", run_dir / "model_float.tflite"
    if not int8_path.is_file() or not float_path.is_file():
        raise UserInputError(f"{run_dir} has no model_int8.tflite and model_float.tflite; run "
                             "`edgeship convert RUN_DIR --int8` first")
    manifest = read_manifest(run_dir)
    images, _, dataset_entry = load_test_split(manifest, None, config.images)
    layers = sorted(layer_errors(int8_path, float_path, images), key=lambda e: e.sqnr_db)
    with open_backend("litert-ref", int8_path) as backend:
        raw = backend.quantize_input(images)
    ops = per_op_parity(int8_path, raw, config.runtimes)
    payload = {"schema_version": REPORT_SCHEMA_VERSION, "run_dir": str(run_dir),
               "dataset": dataset_entry, "int8": int8_path.name, "float": float_path.name,
               "layers": [layer.to_dict() for layer in layers],
               "ops": [op.to_dict() for op in ops], "summary": summarize(ops),
               "environment": environment()}
    write_json_atomic(run_dir / "inspect.json", payload)
    write_text_atomic(run_dir / "inspect.md", render_markdown(payload))
    return payload


def render_markdown(payload: dict) -> str:
    from edgeship.reports import markdown_table

    lines = ["# Inspect", "", f"`{payload['int8']}` against `{payload['float']}` on "
             f"{payload['dataset']['images']} test images.", "",
             "## Per-layer quantization error (worst first)", "",
             "Each op's int8 output (reference kernels) dequantized against the float model's "
             "output of the same op; errors in units of the int8 tensor's scale.", "",
             markdown_table(["#", "op", "output tensor", "SQNR (dB)", "cosine",
                             "mean error (quanta)", "max error (quanta)"],
                            [[str(layer["index"]), layer["op"], f"`{layer['output'][:60]}`",
                              f"{layer['sqnr_db']:.1f}", f"{layer['cosine']:.5f}",
                              f"{layer['mean_error_quanta']:.3f}",
                              f"{layer['max_error_quanta']:.2f}"]
                             for layer in payload["layers"]]), "",
             "## Per-op runtime parity (identical int8 inputs, against the reference kernels)",
             ""]
    runtimes = list(dict.fromkeys(op["runtime"] for op in payload["ops"]))
    by_op: dict = {}
    for op in payload["ops"]:
        by_op.setdefault((op["index"], op["op"]), {})[op["runtime"]] = op
    rows = [[str(index), name] + [
        (lambda cell: "—" if cell is None else cell["verdict"] if cell["verdict"] in (
            "bit-exact", "not covered") else f"{cell['verdict']} (max {cell['max_quanta']})")(
            cells.get(runtime)) for runtime in runtimes]
        for (index, name), cells in by_op.items()]
    lines += [markdown_table(["#", "op", *runtimes], rows), ""]
    causes = sorted({f"{op['runtime']} {op['op']}: {op['cause']}" for op in payload["ops"]
                     if op["cause"]})
    if causes:
        lines += ["Known causes:", ""] + [f"- {cause}" for cause in causes] + [""]
    return "\n".join(lines)
