"""Build the phone demo page for a run and serve it on localhost.

The site is the page's sources (firmware_examples/phone_web/www, shipped in the wheel as
edgeship/phone_web/www) plus what it needs at run time, all local: onnxruntime-web's ESM module
and WASM from a node_modules folder (`npm ci` in firmware_examples/phone_web; elsewhere
--node-modules or $EDGESHIP_NODE_MODULES),
the run's model_int8.onnx, config.json (class names, the manifest's preprocessing, the model's
and runtime's facts, the int8 .tflite's input/output scale and zero point) and
test_images.json (real test images from the run's dataset, as raw pixels). Nothing is
fetched from a CDN when the page runs.

Why ONNX and not the .tflite: LiteRT.js (@litertjs/core 2.5.3) rejects int8 tensors
("Element type INT8 is not supported") and cannot resize the float .tflite's batch
dimension, so the page runs the int8 (QDQ) ONNX export with onnxruntime-web's WASM backend.
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

from edgeship.artifacts import describe_file, write_json_atomic, write_text_atomic, write_with
from edgeship.deps import require
from edgeship.errors import MissingDependencyError, UserInputError
from edgeship.run_dir import ArtifactKind, RunDir

# The page's sources in a checkout; an installed wheel carries www/ and the npm lock file as
# the package edgeship.phone_web (pyproject's package-dir maps the same folder).
PHONE_WEB_DIR = Path(__file__).resolve().parents[1] / "firmware_examples" / "phone_web"
# Where the wheel puts them: edgeship/phone_web beside edgeship/runtime.
INSTALLED_PHONE_WEB_DIR = Path(__file__).resolve().parents[1] / "phone_web"
WEB_DIR_ENV = "EDGESHIP_PHONE_WEB_DIR"
NODE_MODULES_ENV = "EDGESHIP_NODE_MODULES"
SITE_SCHEMA_VERSION = 1
MODEL_FILE = ArtifactKind.INT8_ONNX.file_name
PAGE_FILES = ("index.html", "app.js", "classifier.js", "style.css", "manifest.webmanifest",
              "service-worker.js")
ORT_PACKAGE = "onnxruntime-web"
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
ORT_SITE_DIR = "vendor/onnxruntime-web"
ICON_SIZES = (192, 512)
LITERT_NOTE = ("LiteRT.js (@litertjs/core 2.5.3) cannot run the int8 .tflite (it rejects INT8 "
               "tensors), so this page runs the same model's int8 ONNX export with "
               "onnxruntime-web; the Android example runs the .tflite.")
MIME_TYPES = MappingProxyType({".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
              ".json": "application/json", ".webmanifest": "application/manifest+json",
              ".onnx": "application/octet-stream", ".png": "image/png", ".css": "text/css",
              ".html": "text/html"})


@dataclass(frozen=True)
class ServeDemoConfig:
    """What `edgeship serve-demo` builds and where it serves it.

    Attributes:
        run_dir: a run directory after `edgeship convert --int8 --onnx`.
        port: TCP port on host; 0 picks a free one.
        host: address to bind; the default serves this machine only.
        out: the site folder; "" means RUN_DIR/phone_web.
        test_images: how many real test images the page offers (class-balanced).
        rebuild: rebuild even when the site is up to date.
        build_only: build, print where, and do not serve.
        web_dir: the page's sources (www/, package-lock.json); "" finds them (find_web_dir).
        node_modules: the folder holding onnxruntime-web; "" finds it (find_node_modules).
    """

    run_dir: str
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
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.test_images < 0:
            raise ValueError(f"test_images must be 0 or more, got {self.test_images}")

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
    """Write the page, the runtime, the model, config.json and test images into site_dir.

    Skips the work when site_dir/config.json carries the same build stamp (model, page
    sources, package-lock.json and options), unless config.rebuild.

    Returns:
        The SiteBuild.

    Raises:
        UserInputError: no manifest, or the run has no model_int8.onnx.
        MissingDependencyError: the page's npm packages are not installed.
    """
    run = RunDir(config.run_dir)
    run_dir = run.path
    site_dir = config.site_dir
    if not run_dir.is_dir():
        raise UserInputError(f"run directory {run_dir} does not exist")
    manifest = run.manifest()
    model_path = run.path_of(ArtifactKind.INT8_ONNX)
    if not model_path.is_file() or "convert" not in manifest:
        raise UserInputError(f"{run_dir} has no {MODEL_FILE}; make it first with: "
                             f"edgeship convert {run_dir} --int8 --onnx")
    web_dir = find_web_dir(config.web_dir)
    stamp = _build_stamp(web_dir, config.test_images, model_path, run.manifest_path)
    site_config_path = site_dir / "config.json"
    if not config.rebuild and _stamp_of(site_config_path) == stamp:
        existing = json.loads(site_config_path.read_text())
        return SiteBuild(site_dir, existing["model"]["name"], False,
                         existing["test_image_count"])
    ort_dir = _ort_dist_dir(find_node_modules(config.node_modules, web_dir))
    site_dir.mkdir(parents=True, exist_ok=True)
    for name in PAGE_FILES:
        _copy(web_dir / "www" / name, site_dir / name)
    for name in ORT_FILES:
        _copy(ort_dir / name, site_dir / ORT_SITE_DIR / name)
    _copy(model_path, site_dir / "model" / MODEL_FILE)
    for size in ICON_SIZES:
        write_with(site_dir / f"icon-{size}.png", functools.partial(_draw_icon, size=size))
    images, notes = _test_images(run, config.test_images)
    write_text_atomic(site_dir / "test_images.json", json.dumps(images, separators=(",", ":")))
    site_config = _site_config(run, manifest, model_path, ort_dir, len(images["images"]), stamp)
    write_json_atomic(site_config_path, site_config)
    return SiteBuild(site_dir, MODEL_FILE, True, len(images["images"]), tuple(notes))


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
    """The node_modules folder holding onnxruntime-web: the given one, else
    $EDGESHIP_NODE_MODULES, else web_dir's (in a checkout, where `npm ci` puts it)."""
    if given:
        return Path(given)
    if os.environ.get(NODE_MODULES_ENV):
        return Path(os.environ[NODE_MODULES_ENV])
    return web_dir / "node_modules"


def _build_stamp(web_dir: Path, test_images: int, model_path: Path, manifest_path: Path) -> str:
    """Hash of everything the site is made from; equal stamps mean an up-to-date site."""
    digest = hashlib.sha256(f"{SITE_SCHEMA_VERSION} {test_images}".encode())
    sources = [model_path, manifest_path, web_dir / "package-lock.json",
               *(web_dir / "www" / name for name in PAGE_FILES)]
    for path in sources:
        digest.update(path.name.encode())
        digest.update(path.read_bytes() if path.is_file() else b"missing")
    return digest.hexdigest()


def _stamp_of(site_config_path: Path) -> str | None:
    try:
        return json.loads(site_config_path.read_text())["build"]["stamp"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _ort_dist_dir(node_modules: Path) -> Path:
    dist = node_modules / ORT_PACKAGE / "dist"
    missing = [name for name in ORT_FILES if not (dist / name).is_file()]
    if missing:
        raise MissingDependencyError(
            f"{ORT_PACKAGE} is not installed in {node_modules} (missing {', '.join(missing)}); "
            f"in a clone: cd firmware_examples/phone_web && npm ci (needs Node.js and npm); "
            f"elsewhere pass --node-modules (or set ${NODE_MODULES_ENV}) with a node_modules "
            f"folder holding {ORT_PACKAGE}")
    return dist


def _copy(source: Path, destination: Path) -> None:
    write_with(destination, lambda temp_path: shutil.copyfile(source, temp_path))


def _site_config(run: RunDir, manifest: dict, model_path: Path, ort_dir: Path,
                 test_image_count: int, stamp: str) -> dict:
    """config.json: everything the page (and the Android app) needs to know about the run."""
    model_entry = manifest["train"].get("model", {})
    ort_version = json.loads((ort_dir.parent / "package.json").read_text())["version"]
    preprocessing = run.preprocessing()
    return {
        "schema_version": SITE_SCHEMA_VERSION,
        "title": f"edgeship: {model_entry.get('name', 'model')} on {run.dataset_spec().name}",
        "class_names": run.class_names(),
        "input_shape": list(run.input_shape()),
        "preprocessing": {key: preprocessing[key] for key in
                          ("scale", "offset", "raw_max", "image_size", "channels", "layout",
                           "formula")},
        "model": {
            "file": f"model/{MODEL_FILE}", "name": MODEL_FILE, **describe_file(model_path),
            "kind": "int8 QDQ ONNX, float input and output",
            "output_quantization": onnx_output_quantization(model_path),
            "accuracy": manifest["convert"].get("accuracy", {}).get(MODEL_FILE),
        },
        "runtime": {"name": ORT_PACKAGE, "version": ort_version,
                    "backend": "WASM (CPU, 1 thread)", "module": f"{ORT_SITE_DIR}/{ORT_FILES[0]}",
                    "wasm_dir": f"{ORT_SITE_DIR}/", "note": LITERT_NOTE},
        "int8_io": manifest["convert"].get("int8_io"),
        "test_images": "test_images.json",
        "test_image_count": test_image_count,
        "build": {"stamp": stamp, "run_dir": str(model_path.parent.resolve())},
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
    report(f"{verb} {build.site_dir} ({build.model_file}, {build.test_images} test images)")
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
