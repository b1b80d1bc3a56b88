"""The library call behind `edgeship codegen`: generate_c and its config and result."""

from argparse import ArgumentTypeError
from dataclasses import dataclass
from pathlib import Path

from edgeship.artifacts import write_json_atomic, write_text_atomic
from edgeship.convert.codegen.emit import model_states, render_header, render_source
from edgeship.convert.codegen.kernels import KERNEL_CHOICES, kernel_variant, resolve_kernels
from edgeship.convert.codegen.kernels.cmsis_nn_variant import (
    CMSIS_NN,
    check_cmsis_nn_dir,
    write_cmsis_nn_build,
)
from edgeship.convert.codegen.lowering import lower_graph
from edgeship.convert.codegen.order import order_for_memory
from edgeship.convert.codegen.patches import PatchReport, parse_patches, plan_with_patches
from edgeship.convert.firmware_sources import (
    FirmwareSourceConfig,
    QuantizedIO,
    Samples,
    read_firmware_model,
    write_samples,
)
from edgeship.errors import UserInputError
from edgeship.options import format_bytes, option, parse_bytes
from edgeship.reports import REPORT_SCHEMA_VERSION

MAC_RULE = ("CONV_2D out_h*out_w*out_c*k_h*k_w*in_c; DEPTHWISE_CONV_2D out_h*out_w*out_c*k_h*k_w; "
            "FULLY_CONNECTED batches*in*out; every other op 0")


@dataclass(frozen=True)
class CodegenConfig(FirmwareSourceConfig):
    """What `edgeship codegen` generates: NAME.h, NAME.c, NAME_ops.json (and NAME_samples.h/.c).

    Attributes:
        kernels: the kernel variant (see edgeship.convert.codegen.kernels), or "auto": dsp
            when `target` is a core with the DSP extension, portable otherwise.
        target: the core the C is for ("cortex-m4"), which "auto" decides by; "" when unknown.
        cmsis_nn: the CMSIS-NN folder, needed by kernels="cmsis-nn" (NAME_cmsis_nn.mk lists
            the sources to compile with -IDIR/Include).
        keep_input: keep the input's bytes intact through the run (the plan reuses them once
            the model has read them, otherwise), for applications that read it afterwards.
        patches: "off", an integer N (the first, high-resolution stage computed in N x N
            patches, MCUNetV2's patch-based inference; see codegen.patches) or "auto".
        max_ram: the largest RAM buffer in bytes (an int, or text like "40KB"): kernels that
            stage constants in SRAM for speed (dsp) stage less until the plan fits; patches
            "auto" picks the smallest patch grid that fits; and codegen refuses a model that
            does not fit. None: no limit.
    """

    kernels: str = option("auto", choices=KERNEL_CHOICES,
                          help="kernel variant: auto (dsp on Cortex-M cores with the DSP "
                               "extension when --target names one, else portable), "
                               "portable, dsp, ...")
    target: str = option("", help="the core the C is for (e.g. cortex-m4); decides "
                                  "--kernels auto")
    cmsis_nn: str | None = option(None, metavar="DIR",
                                  help="CMSIS-NN folder (Include/, Source/) that --kernels "
                                       "cmsis-nn compiles against")
    keep_input: bool = option(False, help="keep the input intact through the run (costs its "
                                          "bytes in RAM; by default they are reused once "
                                          "the model has read them)")
    patches: str | int = option("off", metavar="N|auto",
                                help="compute the first, high-resolution stage patch by patch "
                                     "in an N x N grid (MCUNetV2), bit-exact, recomputing the "
                                     "overlaps: off, N, or auto (the smallest grid that fits "
                                     "--max-ram)")
    max_ram: int | None = option(None, parse=parse_bytes, format=format_bytes, metavar="SIZE",
                                 help="largest RAM buffer (activations, I/O and scratch), "
                                      "e.g. 40KB: dsp kernels stage fewer constants in SRAM "
                                      "until it fits, --patches auto picks the smallest grid "
                                      "that fits; codegen refuses a model that does not fit")

    def __post_init__(self):
        super().__post_init__()
        if self.kernels not in KERNEL_CHOICES:
            raise UserInputError(f"kernels must be one of {', '.join(KERNEL_CHOICES)}, "
                             f"got {self.kernels!r}")
        parse_patches(self.patches)
        if self.max_ram is not None:
            try:
                max_ram = parse_bytes(self.max_ram)
            except (TypeError, ValueError, ArgumentTypeError) as error:
                raise UserInputError(f"max_ram: {error}") from None
            if max_ram <= 0:
                raise UserInputError(f"max_ram must be a positive size, got {self.max_ram!r}")
            object.__setattr__(self, "max_ram", max_ram)

    @property
    def variant(self) -> str:
        """The kernel variant generated: `kernels`, with "auto" resolved for `target`."""
        return resolve_kernels(self.kernels, self.target or None)


@dataclass(frozen=True)
class OpRecord:
    """One op of the generated NAME_run, in execution order (EDGESHIP_OP_HOOK's index)."""

    index: int
    op: str
    kernel: str | None  # None: no code (RESHAPE aliases its input)
    macs: int
    summary: str

    def to_dict(self) -> dict:
        return {"index": self.index, "op": self.op, "kernel": self.kernel, "macs": self.macs,
                "summary": self.summary}


@dataclass(frozen=True)
class CodegenResult:
    """What generate_c wrote. arena_bytes is the whole static buffer, all the RAM the model
    takes besides the stack: activations, the input and output, and the kernels' scratch
    buffers, planned together (input_bytes, output_bytes and scratch_bytes lie inside it).
    memory_timeline holds the bytes live while each op runs; peak_op is where they peak."""

    out_dir: Path
    files: tuple[Path, ...]
    ops: tuple[str, ...]
    op_records: tuple[OpRecord, ...]
    arena_bytes: int
    weight_bytes: int
    sum_of_tensors: int
    input: QuantizedIO
    output: QuantizedIO
    samples: int
    kernels: str  # the variant generated ("auto" resolved)
    c_sources: tuple[Path, ...] = ()  # other C files to compile beside NAME.c (CMSIS-NN's)
    include_dirs: tuple[Path, ...] = ()  # their -I folders
    portable_fallbacks: tuple[str, ...] = ()  # "op N NAME" left on portable kernels
    input_bytes: int = 0
    output_bytes: int = 0
    scratch_bytes: int = 0
    keep_input: bool = False
    memory_timeline: tuple[int, ...] = ()
    peak_op: int | None = None
    patches: PatchReport | None = None  # what patch-based inference saved and cost
    state_bytes: int = 0  # recurrent state (LSTM), static arrays outside the arena

    @property
    def macs(self) -> int:
        return sum(record.macs for record in self.op_records)

    def to_dict(self) -> dict:
        return {"out_dir": str(self.out_dir), "files": [path.name for path in self.files],
                "ops": list(self.ops), "arena_bytes": self.arena_bytes,
                "weight_bytes": self.weight_bytes, "sum_of_tensors": self.sum_of_tensors,
                "macs": self.macs, "kernels": self.kernels, "input": self.input.to_dict(),
                "output": self.output.to_dict(), "samples": self.samples,
                "c_sources": [str(path) for path in self.c_sources],
                "include_dirs": [str(path) for path in self.include_dirs],
                "portable_fallbacks": list(self.portable_fallbacks),
                "ram": {"arena": self.arena_bytes, "input": self.input_bytes,
                        "output": self.output_bytes, "scratch": self.scratch_bytes,
                        "state": self.state_bytes, "keep_input": self.keep_input,
                        "note": "input, output and scratch lie inside the arena; recurrent "
                                "state beside it"},
                "memory_timeline": list(self.memory_timeline), "peak_op": self.peak_op,
                "patches": self.patches.to_dict() if self.patches else None}


def fit_staging(graph, plain: list, lowered: list, variant, max_ram: int,
                keep_input: bool) -> list:
    """The ops with the largest staging budget of the variant (its default, then each of
    variant.stage_limits) whose memory plan fits max_ram, or with the smallest. Staging copies
    constants into SRAM scratch for speed (dsp: 20 KB by default, ResNet-8 53,840 B of RAM
    staged, 35,756 B unstaged); a RAM limit comes first."""
    for budget in variant.stage_limits:
        if order_for_memory(graph, lowered, keep_input=keep_input)[1].arena_bytes <= max_ram:
            return lowered
        lowered = variant.specialize_ops(plain, stage_bytes=budget)
    return lowered


def generate_c(config: CodegenConfig, samples: Samples | None = None) -> CodegenResult:
    """Write standalone C for an int8, 16x8 or mixed .tflite with uint8/int8/int16/float32 I/O
    (see edgeship.convert.codegen).

    Args:
        config: the model, output folder, symbol prefix, kernel variant and sample count.
        samples: the config.samples images with TFLite Micro's outputs for them, written to
            NAME_samples.h/.c; edgeship.firmware.generate_c collects them (it runs TFLite
            Micro, a runtime, which this layer does not import).

    Returns:
        The files written, the footprint of the generated code and each op's MACs.

    Raises:
        UserInputError: unreadable model, unsupported op (named, with the model's op list),
            an op whose dtypes have no kernel (named), a bad name.
        ValueError: config.samples asks for samples and none were given.
    """
    model = read_firmware_model(config, samples, "edgeship.firmware.generate_c", packed=True)
    variant = kernel_variant(config.variant)
    cmsis_root = check_cmsis_nn_dir(config.cmsis_nn) if variant is CMSIS_NN else None
    plain = lower_graph(model.graph)
    lowered = variant.specialize_ops(plain)
    if config.max_ram is not None:
        lowered = fit_staging(model.graph, plain, lowered, variant, config.max_ram,
                              config.keep_input)
    # Branches run in the order that needs the least memory (the model's order otherwise);
    # with patches, the first stage runs patch by patch (codegen.patches).
    lowered, plan, patches = plan_with_patches(model.graph, plain, lowered, config.patches,
                                               config.max_ram, keep_input=config.keep_input)
    source = render_source(config.name, model.graph, lowered, plan, model.labels, model.note,
                           variant)
    # The ops NAME_run executes: shape arithmetic folded at generation time is not among them.
    ops = [low.name for low in lowered]
    state_bytes = sum(state.nbytes for state in model_states(lowered))
    header = render_header(config.name, model.input, model.output, plan.arena_bytes,
                           model.labels, ops, keep_input=config.keep_input,
                           state_bytes=state_bytes, inputs=model.inputs, outputs=model.outputs)
    out = model.out
    files = [write_text_atomic(out / f"{config.name}.h", header),
             write_text_atomic(out / f"{config.name}.c", source),
             *write_samples(out, config.name, samples, "codegen")]
    build = write_cmsis_nn_build(out, config.name, cmsis_root, lowered) if cmsis_root else None
    if build is not None:
        files.append(build.makefile)
    records = tuple(OpRecord(low.index, low.name, low.kernel, low.macs, low.summary)
                    for low in lowered)
    identity = {"schema_version": REPORT_SCHEMA_VERSION, "model": str(model.path),
                "model_sha256": model.sha256}
    ops_path = write_json_atomic(out / f"{config.name}_ops.json", {
        **identity, "kernels": variant.name, "mac_rule": MAC_RULE,
        "hook": "EDGESHIP_OP_HOOK(i) before op i, EDGESHIP_OP_HOOK(len(ops)) after the last",
        "ops": [record.to_dict() for record in records]})
    report_path = out / f"{config.name}_codegen.json"
    result = CodegenResult(out_dir=out, files=(*files, ops_path, report_path),
                           ops=tuple(ops), op_records=records,
                           arena_bytes=plan.arena_bytes,
                           weight_bytes=sum(low.weight_bytes for low in lowered),
                           sum_of_tensors=plan.sum_of_tensors, input=model.input,
                           output=model.output,
                           samples=0 if samples is None else len(samples.inputs),
                           kernels=variant.name,
                           c_sources=build.sources if build else (),
                           include_dirs=build.include_dirs if build else (),
                           portable_fallbacks=build.fallbacks if build else (),
                           input_bytes=plan.input_bytes, output_bytes=plan.output_bytes,
                           scratch_bytes=plan.scratch_bytes, keep_input=config.keep_input,
                           memory_timeline=plan.timeline, peak_op=plan.peak_op,
                           patches=patches, state_bytes=state_bytes)
    write_json_atomic(report_path, {**identity, **result.to_dict()})
    return result
