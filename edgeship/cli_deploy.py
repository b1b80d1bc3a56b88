"""The commands that run or ship a whole run: pipeline, codegen, embed, serve-demo."""

import argparse

from edgeship.console import error_stream

# --- pipeline --------------------------------------------------------------------------------

def add_pipeline(subparsers) -> None:
    from edgeship.pipeline_config import add_pipeline_options

    parser = subparsers.add_parser(
        "pipeline", help="train -> convert -> validate -> bench -> embed -> profile -> report, "
        "skipping stages whose inputs did not change")
    parser.add_argument("--config", default=None, help="TOML file: tables [pipeline], [train], "
                        "[convert], [validate], [bench], [profile] of the same options (flags win)")
    add_pipeline_options(parser)
    parser.set_defaults(run=run_pipeline)


def pipeline_config(args):
    """The PipelineConfig of the defaults, the --config file and the flags given."""
    from edgeship.pipeline_config import config_from_sources, flag_values, load_config_file

    file_values = load_config_file(args.config) if args.config else {}
    return config_from_sources(file_values, flag_values(args))


def run_pipeline(args) -> int:
    from edgeship.pipeline import run_pipeline as pipeline

    result = pipeline(pipeline_config(args))
    print()
    print(result.summary)
    print(f"report: {result.report_path.resolve()}")
    if result.failures:
        for failure in result.failures:
            print(f"edgeship pipeline: check failed: {failure}", file=error_stream())
        return 1
    return 0


# --- codegen ---------------------------------------------------------------------------------

# command -> (help, model argument's help, --out's help, --name's help)
_FIRMWARE_TEXTS = {
    "codegen": ("int8 .tflite -> standalone C99 (no runtime), bit-exact with TFLite",
                "full-int8 .tflite (e.g. runs/demo/model_int8.tflite)",
                "folder to write NAME.h and NAME.c into", "C prefix of the files and symbols"),
    "embed": (".tflite -> C++ model data, op resolver and arena size for TFLite Micro",
              "the .tflite to embed (e.g. runs/demo/model_int8.tflite)",
              "folder to write the sources into",
              "prefix of files and symbols (g_NAME_model_data)"),
}


def add_codegen(subparsers) -> None:
    from edgeship.convert.codegen import CodegenConfig
    from edgeship.options import add_options

    parser = _add_firmware_command(subparsers, "codegen", run_codegen)
    add_options(parser, CodegenConfig)
    parser.add_argument("--clock-mhz", type=float, default=None,
                        help="with --target: the clock of the printed estimate (default: the "
                             "target's, 120 MHz for cortex-m4)")


def _add_firmware_command(subparsers, command: str, run) -> None:
    """codegen and embed take the same arguments: a model, where to write, a prefix, samples."""
    help_text, model_help, out_help, name_help = _FIRMWARE_TEXTS[command]
    parser = subparsers.add_parser(command, help=help_text)
    parser.add_argument("model", help=model_help)
    _add_firmware_flags(parser, out_help=out_help, name_help=name_help)
    parser.set_defaults(run=run)
    return parser


def _add_firmware_flags(parser: argparse.ArgumentParser, out_help: str, name_help: str) -> None:
    """Flags codegen and embed share: where to write, the C prefix, embedded samples."""
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument("--name", default="model", help=name_help)
    parser.add_argument("--samples", type=int, default=0, metavar="N",
                        help="embed N test images with TFLite Micro's outputs (NAME_samples.c)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample choice")


def _firmware_options(args) -> dict:
    return {"model": args.model, "out": args.out, "name": args.name, "samples": args.samples,
            "seed": args.seed}


def _print_written(result, summary: str) -> None:
    print(f"wrote {', '.join(path.name for path in result.files)} to {result.out_dir}")
    print(summary)


def run_codegen(args) -> int:
    from edgeship.firmware import CodegenConfig, generate_c
    from edgeship.options import option_values

    config = CodegenConfig(**_firmware_options(args), **option_values(args, CodegenConfig))
    result = generate_c(config)
    _print_written(result, f"{len(result.ops)} ops ({', '.join(sorted(set(result.ops)))}), "
                   f"{config.variant} kernels; RAM buffer {result.arena_bytes} bytes "
                   f"(activations, input, output and scratch planned together; all tensors "
                   f"apart: {result.sum_of_tensors}); weights and constants "
                   f"{result.weight_bytes} bytes; {result.samples} samples")
    if result.portable_fallbacks:
        print(f"portable kernels where {config.variant} has none: "
              f"{', '.join(result.portable_fallbacks)}")
    if config.target:
        from edgeship.profile.run import ProfileConfig, profile_model

        report = profile_model(ProfileConfig(model=config.model, target=config.target,
                                             clock_mhz=args.clock_mhz, kernels=config.variant,
                                             cmsis_nn=config.cmsis_nn))
        print(report.summary_line())
    return 0


# --- profile ---------------------------------------------------------------------------------

def add_profile(subparsers) -> None:
    from edgeship.profile.command import add_arguments, run

    parser = subparsers.add_parser(
        "profile", help="int8 .tflite -> generated C on an emulated Cortex-M: instructions and "
        "estimated cycles per op, flash, RAM; --baseline gates on them")
    add_arguments(parser)
    parser.set_defaults(run=run)


# --- serve-demo ------------------------------------------------------------------------------

def add_serve_demo(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve-demo", help="build the phone web demo for a run (int8 model in the browser) and "
        "serve it on localhost")
    parser.add_argument("run_dir", metavar="RUN_DIR",
                        help="run directory after `edgeship convert --int8` (with --onnx for "
                        "--runtime onnx)")
    parser.add_argument("--runtime", choices=("litert", "onnx"), default="litert",
                        help="what runs the model in the page: litert (LiteRT.js runs "
                        "model_int8_xnnpack.tflite, the float .tflite beside it) or onnx "
                        "(onnxruntime-web runs model_int8.onnx, the float ONNX beside it)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: this machine only)")
    parser.add_argument("--out", default="", help="site folder (default: RUN_DIR/phone_web)")
    parser.add_argument("--test-images", type=int, default=20,
                        help="real test images the page offers")
    parser.add_argument("--rebuild", action="store_true", help="rebuild even when up to date")
    parser.add_argument("--build-only", action="store_true", help="build the site, do not serve")
    parser.add_argument("--web-dir", default="", metavar="DIR",
                        help="the page's sources (www/, package-lock.json; default: "
                        "$EDGESHIP_PHONE_WEB_DIR, the checkout's firmware_examples/phone_web, "
                        "else the copy installed with edgeship)")
    parser.add_argument("--node-modules", default="", metavar="DIR",
                        help="node_modules holding the runtime's npm package (default: "
                        "$EDGESHIP_NODE_MODULES, else the web folder's, made by `npm ci`)")
    parser.set_defaults(run=run_serve_demo)


def run_serve_demo(args) -> int:
    from edgeship.runtime.serve_demo import ServeDemoConfig, serve_demo

    config = ServeDemoConfig(run_dir=args.run_dir, runtime=args.runtime, port=args.port,
                             host=args.host, out=args.out,
                             test_images=args.test_images, rebuild=args.rebuild,
                             build_only=args.build_only, web_dir=args.web_dir,
                             node_modules=args.node_modules)
    serve_demo(config, report=lambda line: print(line, flush=True))
    return 0


# --- embed -----------------------------------------------------------------------------------

def add_embed(subparsers) -> None:
    _add_firmware_command(subparsers, "embed", run_embed)


def run_embed(args) -> int:
    from edgeship.firmware import EmbedConfig, embed_model

    result = embed_model(EmbedConfig(**_firmware_options(args)))
    _print_written(result, f"model {result.model_bytes} bytes; TFLite Micro arena "
                   f"{result.arena_bytes} bytes measured, {result.arena_size} with margin; "
                   f"{len(result.ops)} ops: {', '.join(result.ops)}; {result.samples} samples")
    return 0
