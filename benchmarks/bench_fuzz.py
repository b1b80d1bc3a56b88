"""Fuzz `edgeship validate` and `edgeship bench` with seeded mutations of a tiny model.

Usage: python benchmarks/bench_fuzz.py [--per-format 200] [--seed 0] [--workers 4]
Writes the `fuzz` section of docs/results.md.

A simple_cnn trained briefly on a synthetic 8x8 npz dataset is converted to int8 .tflite
and .onnx; each file is mutated (bit flips, truncations, random bytes, huge dimensions,
swapped or out-of-range indices) and every mutant goes through the real CLI in a
subprocess with a time limit: `edgeship bench` on the file itself and, for a share of them,
`edgeship validate` on a copy of the run whose int8 model was replaced by the mutant. The
only acceptable outcomes are a valid result (exit 0, or exit 1 for a parity check the
damaged weights fail) and a clear error (exit 2, one `edgeship CMD: error:` line, no
traceback). A death by signal or a run past the limit is a failure.

tests/edgeship/test_hostile_models.py runs the same code with bounded counts.
"""

import argparse
import collections
import concurrent.futures
import shutil
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MUTATION_KINDS = ("bit_flip", "truncate", "random_bytes", "huge_dimension", "swap_indices")
GOOD_OUTCOMES = ("valid result", "check failed (exit 1)", "clear error")
BAD_OUTCOMES = ("signal death", "hang", "unclear error")
CHILD_TIMEOUT_S = 20
CLI_LIMIT_S = 90
_HUGE = (2**31 - 1, 2**30, 1 << 20, 65536, -1, -7, 0)


@dataclass(frozen=True)
class Mutant:
    name: str
    format: str  # "tflite" or "onnx"
    kind: str
    data: bytes


@dataclass(frozen=True)
class Outcome:
    mutant: str
    kind: str
    format: str
    command: str
    outcome: str
    returncode: int | None
    last_line: str
    seconds: float


# --- the tiny model --------------------------------------------------------------------------

def write_tiny_dataset(path: Path, seed: int = 0) -> str:
    """Four classes of 8x8 images (a bright quadrant each, plus noise): learnable in one epoch."""
    rng = np.random.default_rng(seed)

    def split(count):
        labels = np.arange(count) % 4
        images = rng.integers(0, 60, (count, 8, 8)).astype(np.uint8)
        for index, label in enumerate(labels):
            row, column = divmod(int(label), 2)
            images[index, row * 4:row * 4 + 4, column * 4:column * 4 + 4] += 180
        return images, labels

    x_train, y_train = split(240)
    x_test, y_test = split(40)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return f"npz:{path}"


def build_tiny_run(workdir: Path) -> Path:
    """Train simple_cnn 2 epochs on the tiny dataset and convert it (int8 .tflite + .onnx)."""
    import edgeship  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
    from edgeship.convert.run import ConvertConfig, run_convert
    from edgeship.train.datasets import DatasetSpec
    from edgeship.train.fit import TrainConfig, train

    workdir.mkdir(parents=True, exist_ok=True)
    dataset = write_tiny_dataset(workdir / "tiny.npz")
    run_dir = workdir / "run"
    train(TrainConfig(model="simple_cnn", dataset=DatasetSpec(name=dataset), out=str(run_dir),
                      epochs=2, seed=0))
    # Per-channel weights, so the corpus (and the mutants) hold per-channel quantization vectors.
    run_convert(ConvertConfig(source=str(run_dir), int8=True, onnx=True,
                              calibration_samples=40, weight_granularity="per-channel"))
    return run_dir


# --- mutations -------------------------------------------------------------------------------

def tflite_landmarks(data: bytes) -> dict[str, list[tuple[int, int]]]:
    """Byte offsets of int32 fields worth corrupting in a valid .tflite, with their values.

    "dimension": every shape element; "index": operator inputs/outputs, subgraph inputs and
    outputs, tensor buffer indices and operator opcode indices.
    """
    from ai_edge_litert import schema_py_generated as schema

    def vector(table, slot):
        offset = table._tab.Offset(slot)
        if not offset:
            return []
        start, length = table._tab.Vector(offset), table._tab.VectorLen(offset)
        return [(start + 4 * item, struct.unpack_from("<i", data, start + 4 * item)[0])
                for item in range(length)]

    def scalar(table, slot):
        offset = table._tab.Offset(slot)
        if not offset:
            return []
        position = table._tab.Pos + offset
        return [(position, struct.unpack_from("<i", data, position)[0])]

    model = schema.Model.GetRootAs(data, 0)
    marks = {"dimension": [], "index": []}
    for graph_index in range(model.SubgraphsLength()):
        graph = model.Subgraphs(graph_index)
        marks["index"] += vector(graph, 6) + vector(graph, 8)  # inputs, outputs
        for tensor_index in range(graph.TensorsLength()):
            tensor = graph.Tensors(tensor_index)
            marks["dimension"] += vector(tensor, 4)  # shape
            marks["index"] += scalar(tensor, 8)  # buffer
        for op_index in range(graph.OperatorsLength()):
            operator = graph.Operators(op_index)
            marks["index"] += scalar(operator, 4) + vector(operator, 6) + vector(operator, 8)
    return marks


def mutate_tflite(data: bytes, kind: str, rng: np.random.Generator) -> bytes:
    if kind in ("huge_dimension", "swap_indices"):
        marks = tflite_landmarks(data)["dimension" if kind == "huge_dimension" else "index"]
        out = bytearray(data)
        for _ in range(int(rng.integers(1, 3))):
            position, value = marks[int(rng.integers(len(marks)))]
            if kind == "huge_dimension":
                new = int(rng.choice(_HUGE))
            elif rng.random() < 0.5:  # swap with another index field's value
                new = marks[int(rng.integers(len(marks)))][1]
            else:  # out of range, or off by a little
                new = int(rng.choice([value + 1, value - 1, value + 1000, -2, 2**31 - 1]))
            struct.pack_into("<i", out, position, new)
        return bytes(out)
    return mutate_bytes(data, kind, rng)


def mutate_bytes(data: bytes, kind: str, rng: np.random.Generator) -> bytes:
    """Format-blind mutations: bit flips, a truncation, a span of random bytes."""
    out = bytearray(data)
    if kind == "bit_flip":
        for _ in range(int(rng.integers(1, 9))):
            position = int(rng.integers(len(out)))
            out[position] ^= 1 << int(rng.integers(8))
        return bytes(out)
    if kind == "truncate":
        return bytes(out[:int(rng.integers(0, len(out)))])
    if kind == "random_bytes":
        if rng.random() < 0.2:  # a whole file of noise, sometimes with the right identifier
            noise = rng.integers(0, 256, int(rng.integers(0, 4096)), dtype=np.uint8).tobytes()
            return noise[:4] + b"TFL3" + noise[8:] if rng.random() < 0.5 else noise
        length = int(rng.integers(1, 65))
        start = int(rng.integers(0, max(len(out) - length, 1)))
        out[start:start + length] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        return bytes(out)
    raise ValueError(f"unknown mutation kind {kind!r}")


def mutate_onnx(data: bytes, kind: str, rng: np.random.Generator) -> bytes:
    if kind not in ("huge_dimension", "swap_indices"):
        return mutate_bytes(data, kind, rng)
    import onnx

    model = onnx.load_from_string(data)
    graph = model.graph
    if kind == "huge_dimension":
        choices = [initializer for initializer in graph.initializer if initializer.dims]
        if rng.random() < 0.3:  # a graph input or output's declared shape
            value = graph.input[0] if rng.random() < 0.5 else graph.output[0]
            dims = value.type.tensor_type.shape.dim
            dims[int(rng.integers(len(dims)))].dim_value = int(rng.choice([2**40, 2**31, 0, 7]))
        else:
            initializer = choices[int(rng.integers(len(choices)))]
            initializer.dims[int(rng.integers(len(initializer.dims)))] = int(
                rng.choice([2**40, 2**31 - 1, 1 << 20, 0, -1]))
    else:  # swap two node inputs, or point one at a name nothing produces
        nodes = [node for node in graph.node if node.input]
        first = nodes[int(rng.integers(len(nodes)))]
        slot = int(rng.integers(len(first.input)))
        if rng.random() < 0.6:
            second = nodes[int(rng.integers(len(nodes)))]
            other = int(rng.integers(len(second.input)))
            first.input[slot], second.input[other] = second.input[other], first.input[slot]
        else:
            first.input[slot] = "no_such_tensor" if rng.random() < 0.5 else "../../etc/passwd"
    return model.SerializeToString()


def make_mutants(tflite: bytes, onnx_model: bytes, per_format: int, seed: int) -> list[Mutant]:
    """per_format mutants of each file, the kinds in turn, all from one seeded generator."""
    rng = np.random.default_rng(seed)
    mutants = []
    for format_name, data, mutate in (("tflite", tflite, mutate_tflite),
                                      ("onnx", onnx_model, mutate_onnx)):
        for number in range(per_format):
            kind = MUTATION_KINDS[number % len(MUTATION_KINDS)]
            mutants.append(Mutant(f"m{number:04d}_{kind}", format_name, kind,
                                  mutate(data, kind, rng)))
    return mutants


# --- running ---------------------------------------------------------------------------------

def write_mutant(mutant: Mutant, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{mutant.name}.{mutant.format}"
    path.write_bytes(mutant.data)
    return path


def validate_copy(mutant: Mutant, run_dir: Path, folder: Path) -> Path:
    """A copy of the run whose int8 model is the mutant (not in the manifest: untrusted)."""
    copy = folder / f"{mutant.name}_{mutant.format}_run"
    shutil.copytree(run_dir, copy)
    (copy / f"model_int8.{mutant.format}").write_bytes(mutant.data)
    return copy


def cli_arguments(command: str, target: Path, mutant_format: str) -> list[str]:
    if command == "bench":
        return ["bench", str(target), "--runs", "3", "--warmup", "1",
                "--timeout", str(CHILD_TIMEOUT_S)]
    backends = "litert-ref,tflm" if mutant_format == "tflite" else "onnxruntime"
    return ["validate", str(target), "--backends", backends, "--limit", "20",
            "--timeout", str(CHILD_TIMEOUT_S)]


def classify(command: str, returncode: int | None, stderr: str) -> str:
    """Which of GOOD_OUTCOMES / BAD_OUTCOMES one CLI run ended in."""
    if returncode is None:
        return "hang"
    if returncode < 0:
        return "signal death"
    if returncode == 0:
        return "valid result"
    lines = [line for line in stderr.splitlines() if line.strip()]
    if returncode == 1 and command == "validate" and lines and lines[-1].startswith(
            "edgeship validate: parity check failed:"):
        return "check failed (exit 1)"
    if (returncode == 2 and lines and lines[-1].startswith(f"edgeship {command}: error: ")
            and "Traceback" not in stderr):
        return "clear error"
    return "unclear error"


def run_cli(mutant: Mutant, command: str, target: Path, limit_s: float = CLI_LIMIT_S) -> Outcome:
    """One real `edgeship` subprocess; a run past limit_s is killed and counted as a hang."""
    arguments = [sys.executable, "-m", "edgeship.cli",
                 *cli_arguments(command, target, mutant.format)]
    started = time.perf_counter()
    try:
        result = subprocess.run(arguments, capture_output=True, text=True, timeout=limit_s,
                                env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        returncode, stderr = result.returncode, result.stderr
    except subprocess.TimeoutExpired as expired:
        returncode = None
        stderr = (expired.stderr or b"").decode("utf-8", "replace") if isinstance(
            expired.stderr, bytes) else (expired.stderr or "")
    lines = [line for line in stderr.splitlines() if line.strip()]
    return Outcome(mutant=mutant.name, kind=mutant.kind, format=mutant.format, command=command,
                   outcome=classify(command, returncode, stderr), returncode=returncode,
                   last_line=lines[-1][:300] if lines else "",
                   seconds=time.perf_counter() - started)


def plan_cli_runs(mutants: list[Mutant], run_dir: Path, folder: Path,
                  validate_every: int) -> list[tuple[Mutant, str, Path]]:
    """bench for every mutant; validate as well for every validate_every-th one."""
    plan = []
    for index, mutant in enumerate(mutants):
        plan.append((mutant, "bench", write_mutant(mutant, folder / "files")))
        if validate_every and index % validate_every == 0:
            plan.append((mutant, "validate", validate_copy(mutant, run_dir, folder / "runs")))
    return plan


def run_plan(plan: list[tuple[Mutant, str, Path]], workers: int) -> list[Outcome]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda item: run_cli(*item), plan))


def count_table(outcomes: list[Outcome]) -> dict:
    """(format, kind) -> outcome -> count, plus the totals per outcome."""
    table = collections.defaultdict(collections.Counter)
    for outcome in outcomes:
        table[(outcome.format, outcome.command, outcome.kind)][outcome.outcome] += 1
    return table


def render_markdown(outcomes: list[Outcome], checker: collections.Counter, seconds: float,
                    command_line: str, machine: str) -> str:
    from edgeship.reports import markdown_table

    table = count_table(outcomes)
    columns = list(GOOD_OUTCOMES + BAD_OUTCOMES)
    rows = [[format_name, command, kind, *[counts.get(column, 0) for column in columns],
             sum(counts.values())]
            for (format_name, command, kind), counts in sorted(table.items())]
    totals = collections.Counter(outcome.outcome for outcome in outcomes)
    rows.append(["**all**", "", "", *[f"**{totals.get(column, 0)}**" for column in columns],
                 f"**{len(outcomes)}**"])
    slowest = max(outcomes, key=lambda outcome: outcome.seconds)
    mutants = len({(outcome.format, outcome.mutant) for outcome in outcomes})
    return "\n".join([
        "## Fuzz: hostile model files through `edgeship validate` and `edgeship bench`", "",
        f"`{command_line}`. {machine} {mutants} seeded mutants of a simple_cnn's int8 "
        f".tflite and .onnx ({', '.join(MUTATION_KINDS)}), {len(outcomes)} real CLI runs "
        f"(each a subprocess limited to {CLI_LIMIT_S} s, model loads in a child limited to "
        f"{CHILD_TIMEOUT_S} s) in {seconds:.0f} s; slowest run {slowest.seconds:.1f} s.", "",
        markdown_table(["file", "command", "mutation", *columns, "runs"], rows),
        f"In-process structural check (edgeship.model_check) on the same mutants: "
        f"{checker.get('accepted', 0)} accepted, {checker.get('rejected', 0)} rejected with one "
        f"line, {checker.get('other', 0)} other exceptions.",
        "A valid result means the mutant still loads and runs (a flipped weight bit, a renamed "
        "tensor); exit 1 means validate ran it and its parity check failed, as damaged weights "
        "should. Signal deaths and hangs must be 0.",
    ])


def check_in_process(mutants: list[Mutant], folder: Path) -> collections.Counter:
    """The structural checker on every mutant: accepted, rejected (UserInputError) or other."""
    from edgeship.errors import UserInputError
    from edgeship.model_check import check_model_file, check_tflite_bytes

    counts = collections.Counter()
    for mutant in mutants:
        try:
            if mutant.format == "tflite":
                check_tflite_bytes(mutant.data, mutant.name)
            else:
                check_model_file(write_mutant(mutant, folder / "checked"))
            counts["accepted"] += 1
        except UserInputError as error:
            counts["rejected" if "\n" not in str(error) else "other"] += 1
        except Exception:
            counts["other"] += 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-format", type=int, default=200, help="mutants of each file")
    parser.add_argument("--validate-every", type=int, default=3,
                        help="also run validate on every Nth mutant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--workdir", default="runs/bench_fuzz")
    args = parser.parse_args()
    from benchmarks.results_doc import machine_line, publish_section

    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    run_dir = build_tiny_run(workdir)
    mutants = make_mutants((run_dir / "model_int8.tflite").read_bytes(),
                           (run_dir / "model_int8.onnx").read_bytes(), args.per_format, args.seed)
    checker = check_in_process(mutants, workdir)
    started = time.perf_counter()
    outcomes = run_plan(plan_cli_runs(mutants, run_dir, workdir, args.validate_every),
                        args.workers)
    seconds = time.perf_counter() - started
    command_line = (f"python benchmarks/bench_fuzz.py --per-format {args.per_format} "
                    f"--validate-every {args.validate_every} --seed {args.seed} "
                    f"--workers {args.workers}")
    markdown = render_markdown(outcomes, checker, seconds, command_line, machine_line())
    publish_section("fuzz", markdown)
    bad = [outcome for outcome in outcomes if outcome.outcome in BAD_OUTCOMES]
    for outcome in bad:
        print(f"FAILED: {outcome}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
