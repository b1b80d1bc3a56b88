"""Per-op cross-runtime parity: every op of an int8 .tflite run alone, on identical inputs.

End-to-end element fractions mix a kernel's own difference with the drift it inherits from
every op before it (and softmax amplifies both), so any fixed bound on them either cries wolf
on deep models or misses real bugs. Here each op is cut out of the file into a one-op model
whose inputs are the reference kernels' own int8 values for that op (captured with LiteRT's
preserve-all-tensors mode on real images), and each runtime's output is compared with the
reference kernels' in quanta. An op is

- bit-exact: every element equal;
- rounding: no element more than one quantum off and no bias (the mean difference stays
  within BIAS_LIMIT quanta), the known cause named where one is known;
- divergent: anything larger, or a biased difference: a failure naming the op and runtime.

Runtimes take the one-op models through the backend registry (litert-ref, litert, tflm, c).
Only quantized ops (int8, uint8, int16 outputs) are compared: int32 shape arithmetic and float
ops are left out. Not covered: ONNX Runtime, whose int8 graph has other ops than the .tflite (it is checked end
to end and by the saturation proof in edgeship.convert.onnx); ops whose one-op model a
runtime cannot open (the op and the reason are listed as "not covered").
"""

import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgeship.backend_registry import REGISTRY, int8_reference_backend
from edgeship.errors import UserInputError
from edgeship.layer_error import capture_reference_tensors
from edgeship.tflite_graph import is_constant, op_names, read_model, tensor_dtype, write_model

REFERENCE_BACKEND = int8_reference_backend()
# The dtypes of quantized tensors.
QUANTIZED_TYPES = ("uint8", "int16", "int8")
# A mean difference beyond this many quanta is a systematic error, not rounding.
BIAS_LIMIT = 0.25
DEFAULT_IMAGES = 64
_COMPILER_ERROR = re.compile(r":\d+:\d+: (fatal )?error: ")
_TEMPORARY_FOLDER = re.compile(r"\S*/(?=[^/\s]+:\d+:\d+:)")


def known_cause(runtime: str, op: str) -> str:
    """The documented reason a runtime's int8 op may differ by a quantum (its registry
    entry's rounding_causes), or ""."""
    cause = REGISTRY[runtime].rounding_causes.get(op, "")
    if not cause and op == "SOFTMAX":
        return "exp and reciprocal approximations differ between implementations"
    return cause


@dataclass(frozen=True)
class OpParity:
    """One op on one runtime against the reference kernels, identical int8 inputs.

    Attributes:
        index: the op's position in the graph.
        op: builtin op name.
        output: the op's output tensor name (a Keras layer name lives in it).
        runtime: backend name.
        verdict: "bit-exact", "rounding", "divergent" or "not covered".
        elements: compared output elements.
        exact_fraction: fraction of elements equal.
        max_quanta: largest absolute difference, in quanta.
        mean_quanta: mean signed difference (runtime - reference), in quanta.
        cause: the known cause of a rounding difference, or why the op is not covered.
    """

    index: int
    op: str
    output: str
    runtime: str
    verdict: str
    elements: int = 0
    exact_fraction: float = 1.0
    max_quanta: int = 0
    mean_quanta: float = 0.0
    cause: str = ""

    @property
    def failed(self) -> bool:
        return self.verdict == "divergent"

    def describe(self) -> str:
        if self.verdict == "not covered":
            return (f"op {self.index} {self.op} ({self.output}) on {self.runtime}: "
                    f"not covered ({self.cause})")
        text = (f"op {self.index} {self.op} ({self.output}) on {self.runtime}: {self.verdict}, "
                f"max {self.max_quanta} quanta, mean {self.mean_quanta:+.3f}, "
                f"{self.exact_fraction:.2%} exact")
        return f"{text} ({self.cause})" if self.cause else text

    def to_dict(self) -> dict:
        return asdict(self)


def classify(candidate: np.ndarray, reference: np.ndarray) -> tuple[str, dict]:
    """Verdict and figures of one op's outputs (raw integers) against the reference's."""
    difference = candidate.astype(np.int64) - reference.astype(np.int64)
    figures = {"elements": int(difference.size),
               "exact_fraction": float(np.mean(difference == 0)) if difference.size else 1.0,
               "max_quanta": int(np.abs(difference).max()) if difference.size else 0,
               "mean_quanta": float(difference.mean()) if difference.size else 0.0}
    if figures["max_quanta"] == 0:
        return "bit-exact", figures
    if figures["max_quanta"] <= 1 and abs(figures["mean_quanta"]) <= BIAS_LIMIT:
        return "rounding", figures
    return "divergent", figures


@dataclass(frozen=True)
class _CutOp:
    index: int
    op: str
    output: str
    output_tensor: int
    input_tensors: tuple[int, ...]
    model: bytes


def cut_single_ops(tflite_bytes: bytes) -> list[_CutOp]:
    """One model per op: the op alone, its activation inputs as graph inputs, its first
    output as the graph output; constants (weights, biases, shapes) stay in place."""
    model = read_model(tflite_bytes)
    if len(model.subgraphs) != 1:
        raise UserInputError("per-op parity handles single-subgraph models only")
    graph = model.subgraphs[0]
    names = op_names(model)
    cut = []
    for index, op in enumerate(graph.operators):
        activations = [int(tensor) for tensor in op.inputs
                       if tensor >= 0 and not is_constant(model, graph.tensors[tensor])]
        if (not activations or len(op.outputs) != 1
                or tensor_dtype(graph.tensors[op.outputs[0]]) not in QUANTIZED_TYPES):
            continue  # shape arithmetic (int32) and float ops are not quantized kernels
        single = read_model(tflite_bytes)
        single_graph = single.subgraphs[0]
        used = sorted({int(tensor) for tensor in op.inputs if tensor >= 0} | {int(op.outputs[0])})
        remap = {old: new for new, old in enumerate(used)}
        single_graph.tensors = [single_graph.tensors[old] for old in used]
        kept = single_graph.operators[index]
        kept.inputs = np.asarray([remap[int(t)] if t >= 0 else -1 for t in kept.inputs], np.int32)
        kept.outputs = np.asarray([remap[int(op.outputs[0])]], np.int32)
        kept.intermediates = None
        single_graph.operators = [kept]
        single_graph.inputs = np.asarray([remap[tensor] for tensor in activations], np.int32)
        single_graph.outputs = np.asarray([remap[int(op.outputs[0])]], np.int32)
        single.signatureDefs = None
        cut.append(_CutOp(index=index, op=names[index],
                          output=_tensor_name(graph.tensors[op.outputs[0]], op.outputs[0]),
                          output_tensor=int(op.outputs[0]), input_tensors=tuple(activations),
                          model=write_model(single)))
    return cut


def per_op_parity(tflite_path: str | Path, raw_images: np.ndarray,
                  runtimes: tuple[str, ...]) -> list[OpParity]:
    """Each op of an int8 .tflite on each runtime against the reference kernels.

    Args:
        tflite_path: a full-integer .tflite.
        raw_images: model inputs in the model's own input dtype (e.g. int8), batch first.
        runtimes: backend names to check (the reference, litert-ref, is always run).

    Returns:
        One OpParity per op and runtime, in graph order.
    """
    from edgeship.runtime.backends import open_backend

    data = Path(tflite_path).read_bytes()
    tensors = capture_reference_tensors(data, raw_images)
    results = []
    with tempfile.TemporaryDirectory(prefix="edgeship-ops-") as folder:
        for cut in cut_single_ops(data):
            path = Path(folder) / f"op{cut.index}.tflite"
            path.write_bytes(cut.model)
            inputs = [tensors[index] for index in cut.input_tensors]
            expected = tensors[cut.output_tensor]
            for runtime in (REFERENCE_BACKEND, *[r for r in runtimes if r != REFERENCE_BACKEND]):
                try:
                    with open_backend(runtime, path, verify=False,
                                      **({"multi_input": True} if REGISTRY[runtime].multi_input
                                         else {})) as backend:
                        outputs = np.stack([
                            np.asarray(backend.infer_raw_inputs([value[i] for value in inputs]))
                            .reshape(expected.shape[1:]) for i in range(len(expected))])
                except (UserInputError, NotImplementedError, RuntimeError, ValueError) as error:
                    results.append(OpParity(cut.index, cut.op, cut.output, runtime,
                                            "not covered", cause=_first_line(error)))
                    continue
                verdict, figures = classify(outputs, expected)
                cause = known_cause(runtime, cut.op) if verdict == "rounding" else ""
                if runtime == REFERENCE_BACKEND and verdict != "bit-exact":
                    cause = "the one-op model does not reproduce the full model's tensor"
                results.append(OpParity(cut.index, cut.op, cut.output, runtime, verdict,
                                        cause=cause, **figures))
    return results


def summarize(results: list[OpParity]) -> dict:
    """Per runtime: ops by verdict, and the divergent ones named."""
    summary: dict = {}
    for result in results:
        entry = summary.setdefault(result.runtime, {"bit-exact": 0, "rounding": 0,
                                                     "divergent": 0, "not covered": 0,
                                                     "divergent_ops": []})
        entry[result.verdict] += 1
        if result.failed:
            entry["divergent_ops"].append(result.describe())
    return summary


def _first_line(error: Exception) -> str:
    """The error's first line; for a compiler failure, whose first line is the command, the
    first diagnostic instead (the file's folder, a temporary one, left out)."""
    lines = str(error).strip().splitlines()
    if not lines:
        return type(error).__name__
    diagnostic = next((line for line in lines[1:] if _COMPILER_ERROR.search(line)), None)
    if diagnostic is None:
        return lines[0]
    return f"{lines[0].split(' (')[0]}: {_TEMPORARY_FOLDER.sub('', diagnostic.strip())}"


def _tensor_name(tensor, index: int) -> str:
    """A tensor's name; the schema allows none (TFLite Micro's own keyword_scrambled model)."""
    return tensor.name.decode() if tensor.name else f"tensor {index}"
