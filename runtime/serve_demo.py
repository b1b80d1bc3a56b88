"""Build the phone demo page for a run and serve it on localhost.

The site is the page's sources (firmware_examples/phone_web/www, shipped in the wheel as
edgeship/phone_web/www) plus what it needs at run time, all local: the chosen web runtime's
ES module and WebAssembly files from a node_modules folder (`npm ci` in
firmware_examples/phone_web; elsewhere --node-modules or $EDGESHIP_NODE_MODULES), the run's
int8 model and the float model it is compared with, config.json (class names, the manifest's
preprocessing, the models' and runtime's facts, the int8 .tflite's input/output scale and zero
point) and test_images.json (real test images from the run's dataset, as raw pixels).
Nothing is fetched from a CDN when the page runs.

The runtimes (edgeship.runtime.web_runtimes): `litert` (the default) runs
model_int8_xnnpack.tflite, the phone file, with LiteRT.js's XNNPACK WebAssembly kernels;
`onnx` runs model_int8.onnx with onnxruntime-web's WASM backend.
"""

import errno
import functools
import hashlib
import http.server
import json
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, Self

import numpy as np

from edgeship.artifacts import (
    describe_file,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
    write_with,
)
from edgeship.deps import require
from edgeship.errors import UserInputError
from edgeship.records import ConvertRecord, TrainRecord
from edgeship.run_dir import ArtifactKind, RunDir
from edgeship.runtime.web_runtimes import (  # noqa: F401  ORT_* re-exported for tests
    ORT_FILES,
    ORT_PACKAGE,
    WebRuntime,
    web_runtime,
)

# The page's sources in a checkout; an installed wheel carries www/ and the npm lock file as
# the package edgeship.phone_web (pyproject's package-dir maps the same folder).
PHONE_WEB_DIR = Path(__file__).resolve().parents[1] / "firmware_examples" / "phone_web"
# Where the wheel puts them: edgeship/phone_web beside edgeship/runtime.
INSTALLED_PHONE_WEB_DIR = Path(__file__).resolve().parents[1] / "phone_web"
WEB_DIR_ENV = "EDGESHIP_PHONE_WEB_DIR"
NODE_MODULES_ENV = "EDGESHIP_NODE_MODULES"
SITE_SCHEMA_VERSION = 2
DEFAULT_RUNTIME = "litert"
PAGE_FILES = ("index.html", "app.js", "classifier.js", "style.css", "manifest.webmanifest",
              "service-worker.js")
ICON_SIZES = (192, 512)
RUNTIME_NOTES = MappingProxyType({
    "litert": ("The .tflite a phone app ships, run by LiteRT.js with XNNPACK's WebAssembly "
               "kernels (WebAssembly SIMD maps to the phone's NEON); the float .tflite runs "
               "beside it on the same input for comparison."),
    "onnx": ("The int8 ONNX export of the same model, run by onnxruntime-web; the float ONNX "
             "runs beside it on the same input for comparison. `edgeship serve-demo RUN` (LiteRT.js) "
             "runs the .tflite itself."),
})
MIME_TYPES = MappingProxyType({".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
              ".json": "application/json", ".webmanifest": "application/manifest+json",
              ".onnx": "application/octet-stream", ".png": "image/png", ".css": "text/css",
              ".html": "text/html"})


@dataclass(frozen=True)
class ServeDemoConfig:
    """What `edgeship serve-demo` builds and where it serves it.

    Attributes:
        run_dir: a run directory after `edgeship convert --int8` (`--onnx` for the onnx
            runtime).
        runtime: what runs the model in the page: "litert" (LiteRT.js, the int8 .tflite) or
            "onnx" (onnxruntime-web, the int8 ONNX).
        port: TCP port on host; 0 picks a free one.
        host: address to bind; the default serves this machine only.
        out: the site folder; "" means RUN_DIR/phone_web.
        test_images: how many real test images the page offers (class-balanced).
        rebuild: rebuild even when the site is up to date.
        build_only: build, print where, and do not serve.
        web_dir: the page's sources (www/, package-lock.json); "" finds them (find_web_dir).
        node_modules: the folder holding the runtime's npm package; "" finds it
            (find_node_modules).
    """

    run_dir: str
    runtime: str = DEFAULT_RUNTIME
    port: int = 8000
    host: str = "127.0.0.1"
    out: str = ""
    test_images: int = 20
    rebuild: bool = False
    build_only: bool = False
    web_dir: str = ""
    node_modules: str = ""

    def __post_init__(self):
        if not 0 <= self.port <= 65535:
            raise UserInputError(f"port must be in 0..65535, got {self.port}")
        if self.test_images < 0:
            raise UserInputError(f"test_images must be 0 or more, got {self.test_images}")
        web_runtime(self.runtime)

    @property
    def site_dir(self) -> Path:
        return Path(self.out) if self.out else Path(self.run_dir) / "phone_web"


@dataclass(frozen=True)
class SiteBuild:
    """A built site: where it is, whether this call (re)built it, and notes for the user."""

    site_dir: Path
    model_file: str
    rebuilt: bool
    test_images: int
    notes: tuple[str, ...] = ()


def build_site(config: ServeDemoConfig) -> SiteBuild:
    """Write the page, the runtime, the models, config.json and test images into site_dir.

    Skips the work when site_dir/config.json carries the same build stamp (runtime, models,
    page sources, package-lock.json and options), unless config.rebuild.

    Returns:
        The SiteBuild.

    Raises:
        UserInputError: no manifest, or the run has no model file for the runtime.
        MissingDependencyError: the runtime's npm package is not installed.
    """
    runtime = web_runtime(config.runtime)
    run = RunDir(config.run_dir)
    run_dir = run.path
    site_dir = config.site_dir
    if not run_dir.is_dir():
        raise UserInputError(f"run directory {run_dir} does not exist")
    run.manifest()  # a directory without one: one bad-input line saying so
    convert = run.read(ConvertRecord)
    model_kind = next((kind for kind in runtime.models if run.path_of(kind).is_file()), None)
    if model_kind is None or convert is None:
        names = " or ".join(kind.file_name for kind in runtime.models)
        raise UserInputError(f"{run_dir} has no {names} for the {runtime.name} runtime; make "
                             f"it first with: {runtime.convert_hint.format(run=run_dir)}")
    model_path = run.path_of(model_kind)
    reference_path = run.path_of(runtime.reference)
    web_dir = find_web_dir(config.web_dir)
    stamp = _build_stamp(web_dir, runtime, config.test_images,
                         [model_path, reference_path, run.manifest_path])
    site_config_path = site_dir / "config.json"
    if not config.rebuild and _stamp_of(site_config_path) == stamp:
        existing = json.loads(site_config_path.read_text())
        return SiteBuild(site_dir, existing["model"]["name"], False,
                         existing["test_image_count"])
    node_modules = find_node_modules(config.node_modules, web_dir)
    vendor_files = runtime.checked_vendor_files(node_modules)
    site_dir.mkdir(parents=True, exist_ok=True)
    for name in PAGE_FILES:
        _copy(web_dir / "www" / name, site_dir / name)
    for file in vendor_files:
        if file.transform is None:
            _copy(file.source, site_dir / file.site_path)
        else:
            write_bytes_atomic(site_dir / file.site_path, file.transform(file.source.read_bytes()))
    models = {"model": _site_model(runtime, model_path, site_dir)}
    if reference_path.is_file():
        models["reference_model"] = _site_model(runtime, reference_path, site_dir)
    for size in ICON_SIZES:
        write_with(site_dir / f"icon-{size}.png", functools.partial(_draw_icon, size=size))
    images, notes = _test_images(run, config.test_images)
    write_text_atomic(site_dir / "test_images.json", json.dumps(images, separators=(",", ":")))
    site_config = _site_config(run, convert, runtime, node_modules, models,
                               len(images["images"]), stamp)
    write_json_atomic(site_config_path, site_config)
    if "reference_model" not in models:
        notes.append(f"no {runtime.reference.file_name} in {run_dir}: the page runs the int8 "
                     "model without a float one to compare with")
    return SiteBuild(site_dir, model_path.name, True, len(images["images"]), tuple(notes))


def find_web_dir(given: str = "") -> Path:
    """The page's sources: the given folder, else $EDGESHIP_PHONE_WEB_DIR, else the checkout's
    firmware_examples/phone_web, else the copy installed with the wheel (edgeship.phone_web)."""
    candidates = ([("--web-dir", Path(given))] if given
                  else [(f"${WEB_DIR_ENV}", Path(os.environ[WEB_DIR_ENV]))]
                  if os.environ.get(WEB_DIR_ENV)
                  else [("the checkout", PHONE_WEB_DIR),
                        ("the installed package", INSTALLED_PHONE_WEB_DIR)])
    for _, folder in candidates:
        if (folder / "www" / "index.html").is_file():
            return folder
    where = ", ".join(f"{folder} ({source})" for source, folder in candidates)
    raise UserInputError(f"the phone demo's page sources (www/index.html) are not in {where}; "
                         "pass --web-dir with a folder like the repository's "
                         "firmware_examples/phone_web")


def find_node_modules(given: str, web_dir: Path) -> Path:
    """The node_modules folder holding the runtime's package: the given one, else
    $EDGESHIP_NODE_MODULES, else web_dir's (in a checkout, where `npm ci` puts it)."""
    if given:
        return Path(given)
    if os.environ.get(NODE_MODULES_ENV):
        return Path(os.environ[NODE_MODULES_ENV])
    return web_dir / "node_modules"


def _build_stamp(web_dir: Path, runtime: WebRuntime, test_images: int,
                 sources: list[Path]) -> str:
    """Hash of everything the site is made from; equal stamps mean an up-to-date site."""
    digest = hashlib.sha256(f"{SITE_SCHEMA_VERSION} {runtime.name} {test_images}".encode())
    for path in [*sources, web_dir / "package-lock.json",
                 *(web_dir / "www" / name for name in PAGE_FILES)]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes() if path.is_file() else b"missing")
    return digest.hexdigest()


def _stamp_of(site_config_path: Path) -> str | None:
    try:
        return json.loads(site_config_path.read_text())["build"]["stamp"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _copy(source: Path, destination: Path) -> None:
    write_with(destination, lambda temp_path: shutil.copyfile(source, temp_path))


def _site_model(runtime: WebRuntime, path: Path, site_dir: Path) -> dict:
    """Write one model file into site_dir/model as the runtime runs it; its config entry."""
    site_path = f"model/{path.name}"
    model_bytes = runtime.site_model(path.read_bytes())
    write_bytes_atomic(site_dir / site_path, model_bytes)
    kind = ArtifactKind.of(path)
    entry = {"file": site_path, "name": path.name, **describe_file(path),
             "precision": kind.precision if kind else None, "format": kind.format if kind else None}
    if kind is not None and kind.format == "tflite":
        entry["io"] = tflite_io(path)
        entry["kind"] = (f"{kind.precision} .tflite, {entry['io']['input']['dtype']} input and "
                         f"{entry['io']['output']['dtype']} output")
        if model_bytes != path.read_bytes():
            entry["site_bytes"] = len(model_bytes)
            entry["site_change"] = "shape signatures removed (batch fixed to 1 for LiteRT.js)"
    else:
        entry["kind"] = ("int8 QDQ ONNX, float input and output"
                         if kind is ArtifactKind.INT8_ONNX else "float ONNX")
        if kind is ArtifactKind.INT8_ONNX:
            entry["output_quantization"] = onnx_output_quantization(path)
    return entry


def tflite_io(path: Path) -> dict:
    """dtype, shape, scale and zero point of a .tflite's one input and one output."""
    from edgeship.tflite_graph import read_graph

    graph = read_graph(path.read_bytes())

    def describe(index: int) -> dict:
        tensor = graph.tensors[index]
        return {"dtype": tensor.dtype, "shape": list(tensor.shape), "scale": tensor.scale,
                "zero_point": tensor.zero_point}
    return {"input": describe(graph.inputs[0]), "output": describe(graph.outputs[0])}


def _site_config(run: RunDir, convert: ConvertRecord, runtime: WebRuntime, node_modules: Path,
                 models: dict, test_image_count: int, stamp: str) -> dict:
    """config.json: everything the page (and the Android app) needs to know about the run."""
    train = run.read(TrainRecord)
    if train is None:
        raise UserInputError(f"{run.manifest_path} has no train entry: was this run made by "
                             "`edgeship train` or `edgeship convert`?")
    preprocessing = dict(train.dataset.preprocessing)
    for entry in models.values():
        entry["accuracy"] = convert.accuracy.get(entry["name"])
    return {
        "schema_version": SITE_SCHEMA_VERSION,
        "title": f"edgeship: {train.model.name} on {train.dataset.spec.name}",
        "class_names": list(train.dataset.class_names),
        "input_shape": list(train.dataset.input_shape),
        "preprocessing": {key: preprocessing[key] for key in
                          ("scale", "offset", "raw_max", "image_size", "channels", "layout",
                           "formula")},
        **models,
        "runtime": {"kind": runtime.name, "name": runtime.package,
                    "version": runtime.version(node_modules), "backend": runtime.backend,
                    "module": runtime.module, "wasm_dir": runtime.wasm_dir,
                    "note": RUNTIME_NOTES[runtime.name]},
        "int8_io": convert.int8_io,
        "test_images": "test_images.json",
        "test_image_count": test_image_count,
        "build": {"stamp": stamp, "run_dir": str(run.path.resolve())},
    }


def onnx_output_quantization(model_path: Path) -> dict | None:
    """Scale and zero point of the DequantizeLinear that makes a QDQ model's output, if any.

    One quantum of the output is what a QDQ model's float outputs may differ by across
    ONNX Runtime builds (native vs WASM).
    """
    onnx = require("onnx")
    from onnx import numpy_helper

    graph = onnx.load(str(model_path)).graph
    initializers = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    output_name = graph.output[0].name
    for node in graph.node:
        if output_name in node.output and node.op_type == "DequantizeLinear":
            scale = initializers.get(node.input[1])
            zero_point = initializers.get(node.input[2]) if len(node.input) > 2 else None
            if scale is None:
                return None
            return {"scale": float(np.asarray(scale).reshape(-1)[0]),
                    "zero_point": int(np.asarray(zero_point).reshape(-1)[0])
                    if zero_point is not None else 0}
    return None


def _test_images(run: RunDir, count: int) -> tuple[dict, list[str]]:
    """A class-balanced sample of the run's test split as raw pixels (HWC, 0..raw_max)."""
    from edgeship.train.datasets import class_balanced_indices
    from edgeship.train.stage_data import close_dataset, open_run_dataset

    spec = run.dataset_spec()
    input_shape = list(run.input_shape())
    payload = {"dataset": spec.name, "split_seed": spec.seed, "images": []}
    if count == 0:
        return payload, []
    try:
        dataset = open_run_dataset(run.path, cache=False)  # streamed: decodes only the sample
    except UserInputError as error:
        return payload, [f"no test images on the page: cannot load dataset {spec.name} ({error})"]
    if list(dataset.input_shape) != input_shape:
        close_dataset(dataset)
        note = (f"no test images on the page: dataset {spec.name} now loads as "
                f"{dataset.input_shape}, the model takes {input_shape}")
        return payload, [note]
    indices = class_balanced_indices(dataset.y_test, min(count, len(dataset.y_test)), seed=0)
    images = dataset.x_test[indices]
    close_dataset(dataset)
    preprocessing = run.preprocessing()
    for index, image in zip(indices, images):
        raw = (image.astype(np.float64) - preprocessing["offset"]) / preprocessing["scale"]
        rounded = np.round(raw)
        raw = rounded if np.allclose(raw, rounded, atol=1e-3) else np.round(raw, 6)
        values = [int(value) if float(value).is_integer() else float(value)
                  for value in raw.reshape(-1)]
        payload["images"].append({"index": int(index), "label": int(dataset.y_test[index]),
                                  "raw": values})
    return payload, []


def _draw_icon(path: Path, size: int) -> None:
    """The PWA icon: a bar chart with one highlighted bar, drawn so no binary is committed."""
    image_module = require("PIL.Image")
    from PIL import ImageDraw

    image = image_module.new("RGB", (size, size), (18, 32, 47))
    draw = ImageDraw.Draw(image)
    unit = size / 16
    for bar, height in enumerate((3, 5, 11, 4, 2)):
        left = unit * (3 + 2.1 * bar)
        color = (79, 195, 161) if bar == 2 else (46, 74, 102)
        draw.rectangle((left, unit * (13 - height), left + unit * 1.5, unit * 13), fill=color)
    image.save(path, format="PNG")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with the MIME types the page needs, revalidated on every load."""

    extensions_map: ClassVar[dict[str, str]] = {
        **http.server.SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}
    log_requests: ClassVar[bool] = False

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:
        if self.log_requests:
            super().log_message(format, *args)


class DemoServer:
    """A static file server for a built site, running in a background thread.

    Use as a context manager, or call close(); `url` is the page's address.
    """

    def __init__(self, site_dir: Path, host: str, port: int, log_requests: bool):
        handler = type("SiteHandler", (_QuietHandler,), {"log_requests": log_requests})
        try:
            self._server = http.server.ThreadingHTTPServer(
                (host, port), functools.partial(handler, directory=str(site_dir)))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise UserInputError(f"port {port} on {host} is in use; pass --port with a "
                                     "free port (0 picks one)") from error
            raise UserInputError(f"cannot serve on {host}:{port}: {error}") from error
        self._server.daemon_threads = True
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="edgeship-serve-demo", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host = "localhost" if self.host in ("127.0.0.1", "0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def start_server(site_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 0,
                 log_requests: bool = False) -> DemoServer:
    """Serve site_dir on host:port in a background thread (port 0 picks a free port)."""
    site_dir = Path(site_dir)
    if not (site_dir / "index.html").is_file():
        raise UserInputError(f"{site_dir} holds no built site (no index.html)")
    return DemoServer(site_dir, host, port, log_requests)


def serve_demo(config: ServeDemoConfig, report: Callable[[str], None] = print) -> SiteBuild:
    """Build the site if needed, then serve it until interrupted (Ctrl+C).

    Args:
        config: the ServeDemoConfig.
        report: where progress lines go (the CLI prints them).

    Returns:
        The SiteBuild, once the server has stopped (or at once with build_only).
    """
    build = build_site(config)
    verb = "built" if build.rebuilt else "up to date:"
    report(f"{verb} {build.site_dir} ({build.model_file} in {config.runtime}, "
           f"{build.test_images} test images)")
    for note in build.notes:
        report(f"note: {note}")
    if config.build_only:
        return build
    server = start_server(build.site_dir, config.host, config.port, log_requests=True)
    report(f"serving the phone demo at {server.url} (Ctrl+C stops)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        report("stopped")
    finally:
        server.close()
    return build
