"""RAM of the generated C, step by step, beside TFLite Micro's arena and X-CUBE-AI's published
RAM; writes the memory section of docs/results.md.

For every model codegen takes, per kernel variant (portable, dsp), the RAM the generated C
needs besides the stack (activations + input + output + scratch, and an LSTM's hidden and
cell state, kept between invokes), after each step of issue 30:

- before: each op as the .tflite has it, input and output in the caller's buffers beside the
  activation buffer (what codegen generated before);
- PAD fused: PADs read by one convolution are implicit in it (lowering.fuse);
- I/O in plan: input and output planned with the activations, the input's bytes reused;
- order: branches run in the order with the smallest buffer (codegen.order) = what
  `edgeship codegen` generates now; keep-input: the same with --keep-input.

Beside them, TFLite Micro's own arena (its RecordingMicroAllocator) for the model as it is and
for the model with edgeship's offline plan (`edgeship embed --offline-plan`,
edgeship.convert.offline_plan), total and non-persistent part, with TFLite Micro's outputs
checked unchanged by the plan.

Every generated model is compiled for the host and compared with TFLite Micro bit for bit on
random inputs. Models: the four MLPerf Tiny ones ($EDGESHIP_MLPERF_TINY, default
../shared/models/mlperf_tiny), a small untrained one with PADs (padded_96), and every .tflite in $EDGESHIP_OUTSIDE_MODELS (skipped when
unset or missing; models codegen refuses are listed as such). Estimated cycles with and
without the PAD fusion come from `edgeship profile` on a Cortex-M4, for the models with PADs
small enough to emulate (--cycles-max-macs).

    python benchmarks/bench_memory.py [--no-doc] [--samples 4]
"""

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.results_doc import machine_line, publish_section
from edgeship.artifacts import write_json_atomic
from edgeship.reports import markdown_table

MLPERF_DIR = Path(os.environ.get("EDGESHIP_MLPERF_TINY",
                                 REPO.parent / "shared" / "models" / "mlperf_tiny"))
MLPERF_MODELS = {"kws": "kws_ref_model.tflite", "vww": "vww_96_int8.tflite",
                 "ic": "pretrainedResnet_quant.tflite", "ad": "ad01_int8.tflite"}
PUBLISHED_KEYS = {"KWS": "kws", "VWW": "vww", "IC": "ic", "AD": "ad"}
VARIANTS = ("portable", "dsp")


def published_ram(readme: Path) -> dict[str, int]:
    """X-CUBE-AI's published RAM per MLPerf Tiny model, read from the shared README."""
    text = " ".join(readme.read_text().split())
    found = re.search(r"X-CUBE-AI 9\.0 reports RAM \(activations\) / flash \(weights\) in bytes: "
                      r"(.*?)\.", text)
    if found is None:
        return {}
    return {PUBLISHED_KEYS[name]: int(ram.replace(",", ""))
            for name, ram in re.findall(r"(KWS|VWW|IC|AD) ([\d,]+) /", found.group(1))}


def padded_model(folder: Path) -> Path:
    """A small untrained int8 model with asymmetric PADs before convs and depthwise convs
    (96x96x3 input, like VWW's): cheap to emulate, so its cycles are measured."""
    from edgeship.convert.tflite import export_tflite
    from edgeship.deps import import_tf_keras

    tensorflow, keras = import_tf_keras()
    tensorflow.random.set_seed(0)
    layers = keras.layers
    inputs = keras.Input((96, 96, 3))
    # Pads of 1 on every side before stride-2 windows (PyTorch's MobileNets): not SAME
    # padding, so the converter keeps them as PAD ops.
    x = layers.Conv2D(8, 3, strides=2, activation="relu")(layers.ZeroPadding2D(1)(inputs))
    for channels in (16, 32):
        x = layers.ZeroPadding2D(1)(x)
        x = layers.DepthwiseConv2D(3, strides=2, activation="relu")(x)
        x = layers.Conv2D(channels, 1, activation="relu")(x)
    x = layers.Dense(2)(layers.GlobalAveragePooling2D()(x))
    samples = np.random.default_rng(0).uniform(-1, 1, (16, 96, 96, 3)).astype(np.float32)
    path = folder / "padded_96_int8.tflite"
    path.write_bytes(export_tflite(keras.Model(inputs, x), representative_samples=samples))
    return path


def models(folder: Path) -> dict[str, Path]:
    found = {key: MLPERF_DIR / name for key, name in MLPERF_MODELS.items()
             if (MLPERF_DIR / name).is_file()}
    found["padded_96"] = padded_model(folder)
    outside = os.environ.get("EDGESHIP_OUTSIDE_MODELS")
    if outside and Path(outside).is_dir():
        seen = {path.read_bytes() for path in found.values()}
        for path in sorted(Path(outside).glob("*.tflite")):
            if path.read_bytes() not in seen:  # copies of the MLPerf Tiny models listed once
                found.setdefault(path.stem, path)
    elif outside:
        print(f"EDGESHIP_OUTSIDE_MODELS={outside} is not a folder: outside models skipped",
              file=sys.stderr)
    return found


def steps(path: Path, kernels: str) -> dict:
    """RAM after each step for one model and variant (see the module docstring)."""
    from edgeship.convert.codegen import read_graph
    from edgeship.convert.codegen.kernels import kernel_variant
    from edgeship.convert.codegen.lowering import LOWERINGS, lower_graph
    from edgeship.convert.codegen.lowering.fold import fold_constants
    from edgeship.convert.codegen.order import order_for_memory
    from edgeship.convert.codegen.plan import plan_memory

    graph = read_graph(path.read_bytes())
    variant = kernel_variant(kernels)
    fused = variant.specialize_ops(lower_graph(graph))  # refuses what codegen cannot take
    unfused = variant.specialize_ops([LOWERINGS[op.name](graph, op)
                                      for op in fold_constants(graph).operators])
    outside = plan_memory(graph, unfused, io_in_arena=False)
    io = outside.input_bytes + outside.output_bytes
    _, ordered = order_for_memory(graph, fused)
    _, kept = order_for_memory(graph, fused, keep_input=True)
    # A recurrent model's state (LSTM hidden and cell) is RAM beside the buffer at every step.
    state = sum(array.nbytes for op in fused for array in op.states)
    return {"before": outside.arena_bytes + io + state,
            "pad_fused": plan_memory(graph, fused, io_in_arena=False).arena_bytes + io + state,
            "io_in_plan": plan_memory(graph, fused).arena_bytes + state,
            "order": ordered.arena_bytes + state, "keep_input": kept.arena_bytes + state,
            "state": state,
            "input": ordered.input_bytes, "output": ordered.output_bytes,
            "peak_op": ordered.peak_op, "pads": sum(op.name in ("PAD", "PADV2")
                                                    for op in graph.operators),
            "pads_left": sum(op.name in ("PAD", "PADV2") for op in fused)}


def bit_exact(path: Path, kernels: str, samples: int) -> bool:
    """The generated C (NAME_run, host compiler) equals TFLite Micro on random inputs."""
    from edgeship.c_backend import compile_generated
    from edgeship.convert.firmware_sources import random_inputs
    from edgeship.firmware import run_packed
    from edgeship.runtime.backends import open_backend
    from edgeship.tflite_graph import read_graph

    # Seeded random inputs over each input's type (float32: the range its QUANTIZE maps),
    # several inputs packed per sample as NAME_run takes them.
    graph = read_graph(path.read_bytes())
    raw = random_inputs(graph, samples, seed=0)
    with open_backend("tflm", path) as backend:
        expected = np.asarray(run_packed(backend, graph, raw)).reshape(samples, -1)
    compiled, _ = compile_generated(path, kernels=kernels)
    try:
        generated = np.asarray(compiled.infer_raw(raw)).reshape(samples, -1)
    finally:
        compiled.close()
    return bool(np.array_equal(generated.view(np.uint8), expected.view(np.uint8)))


def tflm_arenas(path: Path) -> dict:
    """TFLite Micro's arena (total and head, its non-persistent part) without and with
    edgeship's offline plan, and the plan's own size; the plan's failure as text."""
    from edgeship.errors import EdgeshipError
    from edgeship.firmware import measure_offline_plan, measure_tflm_arena

    without = measure_tflm_arena(path)
    arenas = {"total": int(without["total_bytes"]), "head": without.get("head_bytes")}
    try:
        planned = measure_offline_plan(path)
    except EdgeshipError as error:
        return {**arenas, "plan_failed": str(error)}
    return {**arenas, "planned_total": int(planned.arena_with_plan["total_bytes"]),
            "planned_head": planned.arena_with_plan.get("head_bytes"),
            "plan_bytes": planned.plan.plan_bytes,
            "plan_lower_bound": planned.plan.lower_bound_bytes}


def cycles_with_and_without_fusion(path: Path, kernels: str) -> tuple[float, float]:
    """Estimated Cortex-M4 cycles of the model's ops, PAD fusion on and off."""
    from edgeship.convert.codegen import lowering
    from edgeship.profile.run import ProfileConfig, profile_model

    config = ProfileConfig(model=str(path), target="cortex-m4", kernels=kernels)
    fused = profile_model(config).cycles
    keep = lowering.fuse_padding
    lowering.fuse_padding = lambda graph: graph  # the lowering as before the fusion
    try:
        unfused = profile_model(config).cycles
    finally:
        lowering.fuse_padding = keep
    return fused, unfused


def macs(path: Path) -> int:
    from edgeship.convert.codegen import read_graph
    from edgeship.convert.codegen.lowering import lower_graph

    return sum(op.macs for op in lower_graph(read_graph(path.read_bytes())))


def render(rows: list[dict], refused: dict[str, str], published: dict[str, int],
           cycles: list[dict]) -> str:
    lines = ["## Memory: generated-C RAM step by step (benchmarks/bench_memory.py)", "",
             machine_line(), "",
             ("RAM = the generated C's one static buffer (and an LSTM's hidden and cell state, "
              "static arrays kept between invokes) plus, before I/O joined the plan, the "
              "caller's input and output buffers (activations + input + output + scratch; "
              "the stack is not included). Steps are cumulative: PAD fused into convolutions, "
              "then input and output planned with the activations (the input's bytes reused "
              "once read), then the execution order of branches searched (what `edgeship "
              "codegen` generates); keep-input: the same with `--keep-input`. TFLite Micro "
              "arena: its RecordingMicroAllocator's total (I/O included), for the model as it "
              "is and with edgeship's plan as its OfflineMemoryAllocation metadata (`edgeship "
              "embed --offline-plan`; TFLite Micro's outputs checked unchanged on 4 random "
              "inputs); non-persistent: that arena's head (activations, input, output, kernels' "
              "scratch), the part a memory plan decides, the rest being TFLite Micro's "
              "persistent data (tensor and node structs, kernels' per-channel data; 64-bit host "
              "pointers); ratios are to the generated C's plan (order B). X-CUBE-AI: its "
              "published RAM (activations, I/O included) from the MLPerf Tiny README. "
              "Bit-exact: the generated C against TFLite Micro on random inputs (host). dsp "
              "rows include the constants the dsp kernels stage in SRAM scratch for speed "
              "(weights as int16, up to dsp_variant.STAGE_BYTES per op): the portable rows are "
              "the RAM-lean plan, and `edgeship codegen --max-ram SIZE` makes dsp stage less "
              "until its plan fits."), ""]
    table = []
    for row in rows:
        ram = row["steps"]
        xcube = published.get(row["key"])
        table.append([row["name"], row["kernels"], f"{ram['pads']} ({ram['pads_left']} left)",
                      f"{ram['before']:,}", f"{ram['pad_fused']:,}", f"{ram['io_in_plan']:,}",
                      f"{ram['order']:,}", f"{ram['keep_input']:,}",
                      *_tflm_cells(row["tflm"], ram["order"]),
                      f"{xcube:,}" if xcube else "—",
                      "—" if not xcube else ("yes" if ram["order"] <= xcube else "NO"),
                      {True: "yes", False: "NO", None: "not run"}[row["bit_exact"]]])
    lines.append(markdown_table(
        ["model", "kernels", "PADs", "before B", "PAD fused B", "I/O in plan B", "order B",
         "keep-input B", "TFLite Micro arena B", "TFLite Micro arena with offline plan B",
         "with plan / order", "non-persistent with plan B (without)",
         "non-persistent with plan / order", "X-CUBE-AI B", "≤ X-CUBE-AI", "bit-exact"], table))
    if cycles:
        lines += ["", ("Estimated Cortex-M4 cycles of the ops (edgeship profile), PAD fusion "
                       "on and off:"), "", markdown_table(
                      ["model", "kernels", "fused", "unfused", "change"],
                      [[entry["name"], entry["kernels"], f"{entry['fused']:,.0f}",
                        f"{entry['unfused']:,.0f}",
                        f"{100 * (entry['fused'] / entry['unfused'] - 1):+.1f}%"]
                       for entry in cycles])]
    if refused:
        lines += ["", "Not generated (codegen refuses them, by name): "
                  + "; ".join(f"{name} ({reason})" for name, reason in refused.items()) + "."]
    failed = {row["name"]: row["tflm"]["plan_failed"] for row in rows
              if "plan_failed" in row["tflm"]}
    if failed:
        lines += ["", "Offline plan refused or failed: " + "; ".join(
            f"{name} ({reason})" for name, reason in failed.items()) + "."]
    planned = {row["name"]: row["tflm"] for row in rows if "planned_total" in row["tflm"]}
    at_bound = [name for name, arenas in planned.items()
                if arenas["plan_bytes"] == arenas["plan_lower_bound"]]
    as_planned = [name for name, arenas in planned.items()
                  if arenas["planned_head"] == arenas["plan_bytes"]]
    lines += ["", (f"The offline plan places the tensors TFLite Micro allocates, in its own "
                   f"execution order, under its rule that tensors live during the same op never "
                   f"share bytes, so no such plan is smaller than the most bytes live during one "
                   f"op (16-byte aligned). edgeship's plan equals that bound on "
                   f"{len(at_bound)} of {len(planned)} models"
                   + (f" (not on {', '.join(sorted(set(planned) - set(at_bound)))})"
                      if len(at_bound) < len(planned) else "")
                   + f", and TFLite Micro's non-persistent arena with the plan equals the plan "
                   f"on {len(as_planned)} of {len(planned)} (larger where kernels request "
                   f"scratch buffers, which TFLite Micro still places online). The generated C "
                   f"goes below the bound by writing an op's output over its dying input; "
                   f"TFLite Micro's kernels rely on the two being apart (CMSIS-NN's 1x1 "
                   f"convolution, arm_nn_mat_mult_nt_t_s8, reads every input row again for "
                   f"each pair of output channels), so an offline plan cannot overlap them "
                   f"safely. And the generated C keeps per-channel requantization data in "
                   f"flash, where TFLite Micro computes it into its persistent arena. Hence "
                   f"the ratios above 1.")]
    return "\n".join(lines)


def _tflm_cells(arenas: dict, codegen: int) -> list[str]:
    """The TFLite Micro columns: total, total with the plan and its ratio, head with the plan
    (head without) and its ratio."""
    total = f"{arenas['total']:,}"
    if "planned_total" not in arenas:
        return [total, "failed", "—", "—", "—"]
    head = arenas.get("planned_head")
    return [total, f"{arenas['planned_total']:,}", f"{arenas['planned_total'] / codegen:.2f}x",
            f"{head:,} ({arenas['head']:,})" if head is not None else "—",
            f"{head / codegen:.2f}x" if head is not None else "—"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4, help="random inputs per bit-exact check")
    parser.add_argument("--cycles-max-macs", type=int, default=20_000_000,
                        help="profile cycles with and without PAD fusion for models with PADs "
                             "up to this many MACs (0: never)")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" /
                        "memory.json")
    parser.add_argument("--no-doc", action="store_true", help="do not touch docs/results.md")
    args = parser.parse_args(argv)

    from edgeship.errors import UserInputError

    published = published_ram(MLPERF_DIR / "README.md") if MLPERF_DIR.is_dir() else {}
    rows, refused, cycles = [], {}, []
    work = tempfile.TemporaryDirectory(prefix="bench-memory-models-")
    for key, path in models(Path(work.name)).items():
        try:
            per_variant = {kernels: steps(path, kernels) for kernels in VARIANTS}
        except UserInputError as error:
            refused[path.stem] = str(error).split(";")[0].split(". ")[0]
            continue
        arenas = tflm_arenas(path)
        for kernels, ram in per_variant.items():
            exact = bit_exact(path, kernels, args.samples)
            rows.append({"key": key, "name": path.stem, "kernels": kernels, "steps": ram,
                         "tflm_arena": arenas["total"], "tflm": arenas, "bit_exact": exact})
            print(f"{path.stem} {kernels}: {ram}, TFLite Micro {arenas}, bit-exact {exact}",
                  flush=True)
            if ram["pads"] > ram["pads_left"] and 0 < macs(path) <= args.cycles_max_macs:
                fused, unfused = cycles_with_and_without_fusion(path, kernels)
                cycles.append({"name": path.stem, "kernels": kernels, "fused": fused,
                               "unfused": unfused})
    write_json_atomic(args.json, {"schema_version": 1, "published_ram": published,
                                  "rows": rows, "refused": refused, "cycles": cycles})
    markdown = render(rows, refused, published, cycles)
    if args.no_doc:
        print(markdown)
    else:
        publish_section("memory", markdown)
    return 0 if all(row["bit_exact"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
