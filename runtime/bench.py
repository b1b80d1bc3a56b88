"""`edgeship bench`: latency the way benchmark_model and onnxruntime_perf_test measure it.

For each artifact x backend x threads x batch: time the load (open + allocate), the first
inference, then `warmup` untimed runs and `runs` timed runs of the inference call alone. The
inputs are made and quantized beforehand; the timed region holds nothing but
`backend.infer_raw(prepared)`, so the numbers are the runtime's, not the harness's. Timing
wraps the backend from outside: no backend times itself.

A model file edgeship did not make (no manifest beside it records its hash) is checked,
loaded and timed in a child process with a time limit (edgeship.runtime.isolation), so a
crafted file that crashes or hangs the runtime is an error, not a dead CLI. The run's own
artifacts are timed in this process.

The baseline gate compares each record's p50 with a stored run and fails (exit 1) on a
regression larger than `max_regression`, the CI latency gate.
"""

import functools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgeship.artifacts import sha256_file, write_json_atomic
from edgeship.cpu_features import cpu_features
from edgeship.errors import UserInputError
from edgeship.model_check import check_model_file, check_tflite_file
from edgeship.options import comma_list, option, positive_int_list
from edgeship.reports import REPORT_SCHEMA_VERSION, environment, markdown_table
from edgeship.runtime.backends import (
    DEVICES,
    Backend,
    backends_for,
    check_backend_name,
    open_backend,
    primary_backend,
)
from edgeship.runtime.isolation import (
    DEFAULT_TIMEOUT_S,
    TIMEOUT_HELP,
    call_isolated,
    check_timeout,
    is_trusted,
)

FORMATS = ("edgeship", "gab")


@dataclass(frozen=True)
class BenchConfig:
    """What `edgeship bench` measures.

    Attributes:
        artifacts: model files (.tflite, .onnx, .keras).
        backends: backend names; each artifact runs on those that open its format. Empty:
            litert for .tflite, onnxruntime for .onnx, keras for .keras.
        runs: timed inferences per record.
        warmup: untimed inferences after the first one.
        threads: thread counts to measure (one record each).
        batch: batch sizes to measure (one record each).
        device: "cpu" or "gpu".
        seed: seed of the random inputs.
        timeout_s: time limit of each measurement of an untrusted artifact (run in a
            child process); the run's own artifacts are measured in this process.
    """

    artifacts: tuple[str, ...]
    backends: tuple[str, ...] = option(
        (), flag="backend", parse=comma_list, metavar="NAME", aliases=("backends",),
        help="backend(s), comma-separated (default: litert for .tflite, onnxruntime for .onnx, "
        "keras for .keras)")
    runs: int = option(200, help="timed inferences")
    warmup: int = option(20, help="untimed inferences first")
    rounds: int = option(4, help="rounds over all the measurements, each taking its share of "
                         "the timed runs, so that files compared side by side see the same "
                         "machine load (a shared machine's speed drifts)")
    threads: tuple[int, ...] = option((1,), parse=positive_int_list, metavar="N[,N]",
                                      help="thread counts, one record each")
    batch: tuple[int, ...] = option((1,), parse=positive_int_list, metavar="N[,N]",
                                    help="batch sizes, one record each")
    device: str = option("cpu", choices=DEVICES, help="cpu or gpu")
    seed: int = option(0, help="seed of the random inputs")
    timeout_s: float = option(DEFAULT_TIMEOUT_S, flag="timeout", metavar="SECONDS",
                              help=TIMEOUT_HELP)

    def __post_init__(self):
        check_timeout(self.timeout_s)
        if not self.artifacts:
            raise UserInputError("bench needs at least one artifact")
        for name in self.backends:
            check_backend_name(name)
        if self.runs < 1:
            raise UserInputError(f"runs must be >= 1, got {self.runs}")
        if self.rounds < 1:
            raise UserInputError(f"rounds must be >= 1, got {self.rounds}")
        if self.warmup < 0:
            raise UserInputError(f"warmup must be >= 0, got {self.warmup}")
        if not self.threads or min(self.threads) < 1:
            raise UserInputError(f"threads must be positive integers, got {self.threads}")
        if not self.batch or min(self.batch) < 1:
            raise UserInputError(f"batch sizes must be positive integers, got {self.batch}")
        if self.device not in DEVICES:
            raise UserInputError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")


@dataclass(frozen=True)
class Measurement:
    """One backend's timings; latencies in microseconds."""

    load_ms: float
    first_inference_us: float
    latency_us: dict
    batch: int
    runs: int
    warmup: int
    peak_rss_bytes: int | None
    details: dict = field(default_factory=dict)
    samples_ns: np.ndarray | None = None  # the timed runs, for merging rounds

    @property
    def throughput(self) -> float:
        """Images per second at the mean latency."""
        return self.batch * 1e6 / self.latency_us["mean"]


def latency_statistics(samples_ns: np.ndarray) -> dict:
    """min, mean, std, p50, p90, p99 and max of timed runs, in microseconds."""
    samples = np.asarray(samples_ns, dtype=np.float64) / 1e3
    return {"min": float(samples.min()), "mean": float(samples.mean()),
            "std": float(samples.std()), "p50": float(np.percentile(samples, 50)),
            "p90": float(np.percentile(samples, 90)), "p99": float(np.percentile(samples, 99)),
            "max": float(samples.max())}


class OpenMeasurement:
    """A backend opened (load timed), its input prepared, first run timed and warmed up; then
    timed runs in as many calls as wanted (bench alternates several), then `finish`."""

    def __init__(self, open_function: Callable[[], Backend], batch: int, warmup: int,
                 seed: int = 0):
        reset_peak_rss()
        started = time.perf_counter_ns()
        self.backend = open_function()
        self.load_ns = time.perf_counter_ns() - started
        try:
            (input_info,) = self.backend.inputs()
            shape = (batch,) + tuple(side if side > 0 else 1 for side in input_info.shape[1:])
            images = np.random.default_rng(seed).random(shape, dtype=np.float32)
            self.prepared = np.ascontiguousarray(self.backend.quantize_input(images))
            started = time.perf_counter_ns()
            self.backend.infer_raw(self.prepared)
            self.first_ns = time.perf_counter_ns() - started
            for _ in range(warmup):
                self.backend.infer_raw(self.prepared)
        except BaseException:
            self.backend.close()
            raise
        self.peak_rss = peak_rss_bytes()
        self.batch, self.warmup = batch, warmup
        self.samples: list[np.ndarray] = []

    def timed(self, runs: int) -> None:
        samples = np.empty(runs, dtype=np.int64)
        infer_raw, prepared, clock = self.backend.infer_raw, self.prepared, time.perf_counter_ns
        for run in range(runs):
            started = clock()
            infer_raw(prepared)
            samples[run] = clock() - started
        self.samples.append(samples)

    def finish(self) -> Measurement:
        """The Measurement over every timed run; the backend is closed."""
        with self.backend:
            details = self.backend.details()
        samples = np.concatenate(self.samples)
        return Measurement(load_ms=self.load_ns / 1e6, first_inference_us=self.first_ns / 1e3,
                           latency_us=latency_statistics(samples), batch=self.batch,
                           runs=len(samples), warmup=self.warmup, peak_rss_bytes=self.peak_rss,
                           details=details, samples_ns=samples)


def measure(open_function: Callable[[], Backend], batch: int, runs: int, warmup: int,
            seed: int = 0) -> Measurement:
    """Open a backend, prepare one input batch, then time first, warm-up and timed runs.

    Args:
        open_function: opens the backend (timed as the load).
        batch: images per inference.
        runs: timed inferences.
        warmup: untimed inferences after the first.
        seed: seed of the random input images (uniform in [0, 1), like the datasets).

    Returns:
        The Measurement (the backend is closed).
    """
    opened = OpenMeasurement(open_function, batch, warmup, seed)
    try:
        opened.timed(runs)
    except BaseException:
        opened.backend.close()
        raise
    return opened.finish()


def bench(config: BenchConfig, plan: list[tuple[Path, tuple[str, ...]]] | None = None
          ) -> list[dict]:
    """Measure every artifact x backend x threads x batch and return one record each.

    Every backend is opened (load timed), run once (timed) and warmed up; then the timed runs
    go in `config.rounds` rounds, each measurement taking its share in every round, so that
    all of them see the same drift in machine speed; a record's statistics are over all its
    timed runs.

    Args:
        config: artifacts, backends, runs, rounds, warm-up, threads, batch sizes and device.
        plan: (artifact, backend names) to measure instead of config's artifacts and backends.

    Returns:
        Plain-JSON records (see `record_key` for what identifies one).

    Raises:
        UserInputError: a missing artifact, a format no chosen backend opens, a bad option.
    """
    plan = list(plan) if plan is not None else _plan(config)
    entries = []
    for path, names in plan:
        if not Path(path).is_file():
            raise UserInputError(f"artifact {path} does not exist")
        path = Path(path)
        digest = sha256_file(path)
        trusted = is_trusted(path)
        if trusted:
            check_model_file(path)
        elif path.suffix.lower() == ".tflite":
            check_tflite_file(path)  # pure Python: refuse a malformed file before any child
        entries += [(path, digest, trusted, backend_name, threads, batch)
                    for backend_name in names for threads in config.threads
                    for batch in config.batch]
    rounds = min(config.rounds, config.runs)
    # The run's own files stay open across the rounds; an untrusted file is measured in a
    # child process each round (its rounds merged).
    opened: dict[int, OpenMeasurement] = {}
    measured: list[list[Measurement]] = [[] for _ in entries]
    try:
        for round_index in range(rounds):
            runs = config.runs // rounds + (round_index < config.runs % rounds)
            for position, (path, _, trusted, backend_name, threads, batch) in enumerate(entries):
                if trusted:
                    if position not in opened:
                        opened[position] = OpenMeasurement(functools.partial(
                            open_backend, backend_name, path, verify=False, threads=threads,
                            device=config.device), batch, config.warmup, config.seed)
                    opened[position].timed(runs)
                    continue
                arguments = (path, backend_name, threads, config.device, batch, runs,
                             config.warmup, config.seed, True)
                measured[position].append(call_isolated(
                    measure_artifact, arguments, config.timeout_s,
                    f"{path.name} on {backend_name}"))
        for position in sorted(opened):
            measured[position].append(opened.pop(position).finish())
    finally:
        for measurement in opened.values():
            measurement.backend.close()
    return [_record(path, digest, backend_name, threads, config.device, _merge(results))
            for (path, digest, _, backend_name, threads, _), results in zip(entries, measured)]


def _merge(results: list[Measurement]) -> Measurement:
    """One measurement from its rounds: statistics over all timed runs, the first load."""
    first = results[0]
    samples = np.concatenate([result.samples_ns for result in results])
    peaks = [result.peak_rss_bytes for result in results if result.peak_rss_bytes is not None]
    return replace(first, latency_us=latency_statistics(samples), runs=len(samples),
                   peak_rss_bytes=max(peaks) if peaks else None, samples_ns=samples)


def _plan(config: BenchConfig) -> list[tuple[Path, tuple[str, ...]]]:
    """(artifact, backend names) from the config: its backends, else each format's default."""
    plan = []
    for artifact in config.artifacts:
        path = Path(artifact)
        if not path.is_file():
            raise UserInputError(f"artifact {path} does not exist")
        if config.backends:
            names = backends_for(path, config.backends)
        else:
            # The runtime a deployment would use: the format's primary backend.
            default = primary_backend(path)
            names = (default,) if default else ()
        if not names:
            wanted = ", ".join(config.backends) if config.backends else "any backend"
            raise UserInputError(f"{path.name}: {wanted} cannot open {path.suffix or 'this'} files")
        plan.append((path, names))
    return plan


def measure_artifact(path: Path, backend_name: str, threads: int, device: str, batch: int,
                     runs: int, warmup: int, seed: int, verify: bool) -> Measurement:
    """measure() one artifact on one backend; verify checks the file first, outside the
    timed load (bench checks trusted files once itself)."""
    if verify:
        check_model_file(path)
    opener = functools.partial(open_backend, backend_name, path, verify=False, threads=threads,
                               device=device)
    return measure(opener, batch=batch, runs=runs, warmup=warmup, seed=seed)


def _record(path: Path, digest: str, backend: str, threads: int, device: str,
            result: Measurement) -> dict:
    return {"artifact": path.name, "path": str(path), "sha256": digest, "backend": backend,
            "threads": threads, "batch": result.batch, "device": device, "runs": result.runs,
            "warmup": result.warmup, "load_ms": result.load_ms,
            "first_inference_us": result.first_inference_us, "latency_us": result.latency_us,
            "per_image_p50_us": result.latency_us["p50"] / result.batch,
            "throughput_images_per_s": result.throughput,
            "peak_rss_bytes": result.peak_rss_bytes, "details": result.details,
            "execution": execution_summary(result.details)}


def execution_summary(details: dict) -> dict | None:
    """Where the work ran: LiteRT's delegate partitions and the ops left outside them, or
    ONNX Runtime's nodes in int8 kernels vs float ones (None for other backends)."""
    delegation = details.get("delegation")
    kernels = details.get("kernels")
    if isinstance(delegation, dict):
        return {"kind": "delegate", **delegation}
    if isinstance(kernels, dict):
        return {"kind": "kernels", **kernels}
    return None


def describe_execution(execution: dict | None) -> str:
    """One table cell: 'XNNPACK 3 partitions, 6/9 ops; outside: AVERAGE_POOL_2D x2, SOFTMAX x1'
    or 'int8 kernels 10/14 nodes; float: Softmax x1; 2 Q/DQ'."""
    if not execution:
        return ""

    def counts(by_type: dict) -> str:
        return ", ".join(f"{name} x{count}" for name, count in by_type.items()) or "none"

    if execution["kind"] == "delegate":
        if not execution["delegate"]:
            return f"no delegate ({execution['ops']} ops)"
        text = (f"{execution['delegate']} {execution['partitions']} partition"
                f"{'s' if execution['partitions'] != 1 else ''}, "
                f"{execution['delegated_ops']}/{execution['ops']} ops")
        return text + (f"; outside: {counts(execution['outside'])}" if execution["outside"] else "")
    int8_nodes = sum(execution["int8"].values())
    conversions = sum(execution["conversions"].values())
    text = f"int8 kernels {int8_nodes}/{execution['nodes']} nodes"
    if int8_nodes or conversions:
        text += f"; float: {counts(execution['float'])}; {conversions} Q/DQ"
    return text


def record_key(record: dict) -> str:
    """What makes two records comparable across runs."""
    return (f"{record['artifact']} {record['backend']} threads={record['threads']} "
            f"batch={record['batch']} {record.get('device', 'cpu')}")


def bench_document(records: list[dict]) -> dict:
    """The --json document: records plus the machine, its CPU features (which int8 kernels
    ONNX Runtime picks: AVX2, AVX512, VNNI) and the library versions they came from."""
    return {"schema_version": REPORT_SCHEMA_VERSION, "environment": environment(),
            "cpu": cpu_features(), "records": records}


def gab_entries(records: list[dict]) -> list[dict]:
    """github-action-benchmark's "customSmallerIsBetter" format: one p50 per record."""
    return [{"name": record_key(record), "unit": "us", "value": round(record["latency_us"]["p50"], 3),
             "range": f"± {record['latency_us']['std']:.3f}",
             "extra": (f"p90 {record['latency_us']['p90']:.1f} us, p99 "
                       f"{record['latency_us']['p99']:.1f} us, {record['runs']} runs")}
            for record in records]


def write_results(path: str | os.PathLike, records: list[dict], output_format: str) -> Path:
    if output_format not in FORMATS:
        raise UserInputError(f"format must be one of {', '.join(FORMATS)}, got {output_format!r}")
    if output_format == "gab":
        from edgeship.artifacts import write_text_atomic

        return write_text_atomic(path, json.dumps(gab_entries(records), indent=2) + "\n")
    return write_json_atomic(path, bench_document(records))


@dataclass(frozen=True)
class BaselineComparison:
    """One record's p50 against the stored baseline's."""

    key: str
    baseline_p50_us: float
    p50_us: float
    max_regression: float

    @property
    def ratio(self) -> float:
        return self.p50_us / self.baseline_p50_us

    @property
    def passed(self) -> bool:
        return self.ratio <= 1 + self.max_regression

    def describe(self) -> str:
        verdict = "ok" if self.passed else "REGRESSION"
        return (f"{self.key}: p50 {self.p50_us:.1f} us vs baseline {self.baseline_p50_us:.1f} us "
                f"({self.ratio - 1:+.1%}, bound +{self.max_regression:.0%}) {verdict}")


def load_baseline(path: str | os.PathLike) -> dict[str, float]:
    """A stored bench JSON (edgeship or gab format) as key -> p50 in microseconds."""
    try:
        payload = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise UserInputError(f"baseline {path} is not readable JSON: {error}") from error
    if isinstance(payload, dict) and isinstance(payload.get("records"), list):
        return {record_key(record): float(record["latency_us"]["p50"])
                for record in payload["records"]}
    if isinstance(payload, list) and all(isinstance(entry, dict) and "name" in entry
                                         for entry in payload):
        return {entry["name"]: float(entry["value"]) for entry in payload}
    raise UserInputError(f"baseline {path} is not a `edgeship bench --json` file")


def compare_to_baseline(records: list[dict], baseline: dict[str, float],
                        max_regression: float) -> tuple[list[BaselineComparison], list[str]]:
    """Each record's p50 against the baseline; returns the comparisons and unmatched keys."""
    if max_regression < 0:
        raise UserInputError(f"max regression must be >= 0, got {max_regression}")
    comparisons, unmatched = [], []
    for record in records:
        key = record_key(record)
        if key in baseline:
            comparisons.append(BaselineComparison(key, baseline[key], record["latency_us"]["p50"],
                                                  max_regression))
        else:
            unmatched.append(key)
    if records and not comparisons:
        raise UserInputError("the baseline has no record for any of these artifacts, backends, "
                             "threads and batch sizes")
    return comparisons, unmatched


def render_table(records: list[dict]) -> str:
    """The percentile table `edgeship bench` prints (Markdown)."""
    rows = []
    for record in records:
        latency = record["latency_us"]
        rss = record["peak_rss_bytes"]
        rows.append([record["artifact"], record["backend"], record["threads"], record["batch"],
                     f"{record['load_ms']:.1f}", f"{record['first_inference_us']:.0f}",
                     f"{latency['min']:.1f}", f"{latency['mean']:.1f}", f"{latency['std']:.1f}",
                     f"{latency['p50']:.1f}", f"{latency['p90']:.1f}", f"{latency['p99']:.1f}",
                     f"{record['throughput_images_per_s']:.0f}",
                     "n/a" if rss is None else f"{rss / 2**20:.0f}",
                     describe_execution(record.get("execution"))])
    return markdown_table(["artifact", "backend", "threads", "batch", "load ms", "first us",
                           "min us", "mean us", "std us", "p50 us", "p90 us", "p99 us",
                           "images/s", "peak RSS MiB", "delegation / kernels"], rows)


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark for this process (Linux); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int | None:
    """Peak resident set size since the last reset (VmHWM), or the process's peak."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except (ImportError, OSError):
        return None
