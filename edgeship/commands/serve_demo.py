"""`edgeship serve-demo`: build the phone web demo for a run and serve it on localhost.

ServeDemoConfig (runtime/serve_demo.py) has no option fields; its options are declared here
with its defaults (tests/edgeship/test_cli.py checks they agree).
"""

from dataclasses import dataclass, fields

from edgeship.commands import Command, OptionGroup
from edgeship.options import option
from edgeship.runtime.serve_demo import ServeDemoConfig

_DEFAULTS = ServeDemoConfig(run_dir="")


@dataclass(frozen=True)
class ServeDemoOptions:
    run_dir: str = option(positional=True, metavar="RUN_DIR",
                          help="run directory after `edgeship convert --int8` (with --onnx for "
                          "--runtime onnx)")
    runtime: str = option(_DEFAULTS.runtime, choices=("litert", "onnx"),
                          help="what runs the model in the page: litert (LiteRT.js runs "
                          "model_int8_xnnpack.tflite, the float .tflite beside it) or onnx "
                          "(onnxruntime-web runs model_int8.onnx, the float ONNX beside it)")
    port: int = option(_DEFAULTS.port, help="TCP port (0 picks a free one)")
    host: str = option(_DEFAULTS.host, help="address to bind (default: this machine only)")
    out: str = option(_DEFAULTS.out, help="site folder (default: RUN_DIR/phone_web)")
    test_images: int = option(_DEFAULTS.test_images, help="real test images the page offers")
    rebuild: bool = option(_DEFAULTS.rebuild, help="rebuild even when up to date")
    build_only: bool = option(_DEFAULTS.build_only, help="build the site, do not serve")
    web_dir: str = option(_DEFAULTS.web_dir, metavar="DIR",
                          help="the page's sources (www/, package-lock.json; default: "
                          "$EDGESHIP_PHONE_WEB_DIR, the checkout's firmware_examples/phone_web, "
                          "else the copy installed with edgeship)")
    node_modules: str = option(_DEFAULTS.node_modules, metavar="DIR",
                               help="node_modules holding the runtime's npm package (default: "
                               "$EDGESHIP_NODE_MODULES, else the web folder's, made by `npm ci`)")


GROUPS = (OptionGroup(ServeDemoOptions),)


def build(values: dict) -> ServeDemoConfig:
    return ServeDemoConfig(**{item.name: values[item.name] for item in fields(ServeDemoOptions)}
                           | {"run_dir": str(values["run_dir"])})


def execute(config: ServeDemoConfig, values: dict):
    from edgeship.runtime.serve_demo import serve_demo

    return serve_demo(config, report=lambda line: print(line, flush=True))


def render(site, values: dict) -> int:
    return 0


def result(site, values: dict):
    from edgeship.commands.result import Result
    from edgeship.tables import Table

    record = {"site_dir": str(site.site_dir), "model_file": site.model_file,
              "rebuilt": site.rebuilt, "test_images": site.test_images}
    return Result(Table.from_records("phone web demo", [record], tuple(record)),
                  {"site": site.site_dir}, record)


COMMAND = Command("serve-demo", "build the phone web demo for a run (int8 model in the "
                  "browser) and serve it on localhost", GROUPS, build, execute, render, result)
