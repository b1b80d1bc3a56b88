"""Patch-based inference (`edgeship codegen --patches`): RAM saved, MACs recomputed, cycles;
writes the patches section of docs/results.md.

Per model, codegen's RAM buffer (activations + input + output + scratch: all the RAM besides
the stack) unpatched, with N x N patches, and with `--patches auto --max-ram SIZE`; beside
it the stage that runs patch by patch, the MACs recomputed in the patches' overlaps, and the
estimated cycles on a Cortex-M4 (edgeship profile's emulator and instruction timings, an
estimate, not a board measurement) with the cycle factor codegen reports from MACs alone.

Every patched build is checked bit for bit: its host-compiled C against TFLite Micro on
random inputs, and its emulated Cortex-M4 output against the unpatched build's.

Models: MLPerf Tiny VWW ($EDGESHIP_MLPERF_TINY, default ../shared/models/mlperf_tiny) and
Keras' MobileNetV2 (alpha 0.35, untrained, seeded) at 96x96 and 128x128, converted to int8
here into a temporary folder (never kept).

    python benchmarks/bench_patches.py [--no-doc] [--kernels portable] [--no-cycles]
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.results_doc import machine_line, publish_section
from edgeship.artifacts import write_json_atomic
from edgeship.errors import UserInputError
from edgeship.reports import markdown_table

MLPERF_DIR = Path(os.environ.get("EDGESHIP_MLPERF_TINY",
                                 REPO.parent / "shared" / "models" / "mlperf_tiny"))
# (model, codegen settings); each settings dict is CodegenConfig's patches and max_ram.
SETTINGS = {
    "vww": ({"patches": "off"}, {"patches": 4}, {"patches": 8},
            {"patches": "auto", "max_ram": "32KB"}, {"patches": "auto", "max_ram": "40KB"}),
    "mobilenet_v2_96": ({"patches": "off"}, {"patches": 2}, {"patches": 4},
                        {"patches": "auto", "max_ram": "160KB"}),
    "mobilenet_v2_128": ({"patches": "off"}, {"patches": 2}, {"patches": 4},
                         {"patches": "auto", "max_ram": "256KB"}),
}


def mobilenet_v2(size: int, folder: Path) -> Path:
    """Keras' MobileNetV2 alpha 0.35 at size x size, untrained (seeded), as full int8."""
    from edgeship.convert.tflite import export_tflite
    from edgeship.deps import import_tf_keras

    tensorflow, keras = import_tf_keras()
    tensorflow.random.set_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=0.35,
                                           weights=None, classes=10)
    samples = np.random.default_rng(0).uniform(-1, 1, (16, size, size, 3)).astype(np.float32)
    path = folder / f"mobilenet_v2_{size}_int8.tflite"
    path.write_bytes(export_tflite(model, representative_samples=samples))
    return path


def host_outputs(model: Path, raw: np.ndarray, kernels: str, **options):
    """(outputs of the host-compiled generated C on raw, CodegenResult)."""
    from edgeship.c_backend import compile_generated

    backend, result = compile_generated(model, kernels=kernels, **options)
    try:
        return np.asarray(backend.infer_raw(raw)).reshape(len(raw), -1), result
    finally:
        backend.close()


def emulated(model: Path, raw: np.ndarray, kernels: str, **options) -> tuple[float, bytes]:
    """(estimated Cortex-M4 cycles of NAME_invoke, its output) from edgeship profile's emulator."""
    from edgeship.convert.codegen import CodegenConfig, generate_c
    from edgeship.profile.emulator import emulate
    from edgeship.profile.firmware import MODEL_NAME, build_firmware
    from edgeship.profile.targets import get_target

    target = get_target("cortex-m4")
    with tempfile.TemporaryDirectory(prefix="bench_patches_m4_") as temporary:
        work = Path(temporary)
        generated = generate_c(CodegenConfig(model=str(model), out=str(work / "src"),
                                             name=MODEL_NAME, kernels=kernels,
                                             target=target.name, **options))
        firmware = build_firmware(work / "src", target, work, generated.c_sources,
                                  generated.include_dirs)
        run = emulate(firmware.elf, target, raw.tobytes())
    cycles = sum(run.ops[op.index].cycles for op in generated.op_records if op.index in run.ops)
    return cycles, np.asarray(run.output).tobytes()


def measure(name: str, model: Path, kernels: str, cycles: bool, samples: int) -> list[dict]:
    from edgeship.convert.codegen import read_graph
    from edgeship.runtime.backends import open_backend

    graph = read_graph(model.read_bytes())
    shape = graph.tensors[graph.inputs[0]].shape[1:]
    raw = np.random.default_rng(7).integers(-128, 128, (samples, *shape), dtype=np.int8)
    with open_backend("tflm", model) as backend:
        expected = np.asarray(backend.infer_raw(raw)).reshape(samples, -1)
    rows, base_cycles, base_output = [], None, None
    for options in SETTINGS[name]:
        label = " ".join(f"--{key.replace('_', '-')} {value}" for key, value in options.items())
        try:
            outputs, result = host_outputs(model, raw, kernels, **options)
        except UserInputError as error:
            rows.append({"model": name, "setting": label, "refused": str(error)})
            continue
        row = {"model": name, "setting": label, "arena_bytes": result.arena_bytes,
               "macs": result.macs, "bit_exact_host": bool(np.array_equal(outputs, expected)),
               "patches": result.patches.to_dict() if result.patches else None}
        if cycles:
            estimate, output = emulated(model, raw[:1], kernels, **options)
            row["cycles_m4"] = estimate
            if base_cycles is None:
                base_cycles, base_output = estimate, output
            row["bit_exact_m4"] = output == base_output
            row["cycles_ratio"] = estimate / base_cycles
        rows.append(row)
        print(name, label, result.arena_bytes, result.patches and result.patches.summary())
    return rows


def render(rows: list[dict], kernels: str, cycles: bool) -> str:
    table = []
    for row in rows:
        if "refused" in row:
            table.append([row["model"], row["setting"], "refused", "", "", "", "", "", ""])
            continue
        patches = row["patches"]
        stage = (f"{len(patches['stage_ops'])} ops -> {'x'.join(map(str, patches['stage_output']))}"
                 f", {patches['grid']}" if patches else "—")
        unpatched = patches["arena_bytes_unpatched"] if patches else row["arena_bytes"]
        exact = "yes" if row["bit_exact_host"] and row.get("bit_exact_m4", True) else "NO"
        table.append([
            row["model"], row["setting"], stage, f"{row['arena_bytes']:,}",
            f"{row['arena_bytes'] / unpatched:.2f}x",
            f"{patches['extra_macs']:,} (+{patches['extra_macs'] / patches['macs_unpatched']:.1%})"
            if patches else "0",
            f"{row['cycles_m4']:,.0f} ({row['cycles_ratio']:.3f}x)" if cycles else "not run",
            f"{patches['estimated_cycles_factor']:.3f}x" if patches else "1.000x", exact])
    refused = [f"- {row['model']} `{row['setting']}`: {row['refused']}" for row in rows
               if "refused" in row]
    lines = ["## Patch-based inference (`codegen --patches`)", "",
             f"`python benchmarks/bench_patches.py`. {machine_line()}", "",
             ("RAM: codegen's one static buffer (activations, input, output and scratch; all the "
              "RAM besides the stack). Stage: the first ops computed patch by patch, the one "
              "tensor of theirs that exists in full, and the grid. Extra MACs: recomputed in "
              "the patches' overlaps. Cortex-M4 cycles: edgeship profile's emulator and "
              f"instruction timings (an estimate, zero-wait memory), {kernels} kernels; the "
              "patched stage always runs the portable kernels. MAC-based: the cycle factor "
              "codegen reports without emulating. Bit-exact: host-compiled C equal to TFLite "
              "Micro on random inputs, and the emulated output equal to the unpatched one."), "",
             markdown_table(["model", "codegen", "stage", "RAM (B)", "vs unpatched",
                             "extra MACs", "Cortex-M4 cycles", "MAC-based", "bit-exact"],
                            table)]
    if refused:
        lines += ["", "Refused (no grid fits):", *refused]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-doc", action="store_true", help="print, do not write the doc")
    parser.add_argument("--kernels", default="portable", choices=("portable", "dsp"))
    parser.add_argument("--no-cycles", action="store_true", help="skip the emulated cycles")
    parser.add_argument("--samples", type=int, default=4, help="random inputs checked")
    parser.add_argument("--models", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_patches_models_") as temporary:
        for name in args.models:
            if name == "vww":
                model = MLPERF_DIR / "vww_96_int8.tflite"
                if not model.is_file():
                    print(f"skipping vww: {model} missing")
                    continue
            else:
                model = mobilenet_v2(int(name.rsplit("_", 1)[1]), Path(temporary))
            rows += measure(name, model, args.kernels, not args.no_cycles, args.samples)
    write_json_atomic(REPO / "benchmarks" / "results" / "patches.json", {"rows": rows})
    markdown = render(rows, args.kernels, not args.no_cycles)
    if args.no_doc:
        print(markdown)
    else:
        publish_section("patches", markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
