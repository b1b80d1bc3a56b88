"""The runtimes the phone demo page can run a model with: one entry per runtime.

Each WebRuntime names its npm package, the files of it the site serves (copied from
node_modules, never fetched from a CDN), the run's model files it runs (the page's model and
the float file it is compared with) and how they go into the site. `edgeship serve-demo
--runtime NAME` picks one; classifier.js holds the matching JavaScript.

LiteRT.js (@litertjs/core 2.5.3) runs the .tflite itself with XNNPACK's WebAssembly kernels,
with two limits of the package that the site build works around, both checked in Chromium by
tests/firmware_examples/test_phone_web.py:
- its JavaScript maps only float32, int32 and uint8 tensors to typed arrays, so it rejects a
  model with int8 inputs or outputs ("Element type INT8 is not supported") although its
  WebAssembly runs them: the site's copy of the module gets the int8 row (Int8Array) added to
  that table (`add_int8_tensors`; the build stops if the pinned source changed);
- it compares an input tensor's shape with the model's shape signature, so a batch dimension
  of -1 (Keras' exports) never matches a [1, ...] tensor: the site's copy of each .tflite has
  the shape signatures removed, leaving the shapes (batch 1) the interpreter runs anyway
  (`with_static_batch`; operators, weights and quantization are untouched).
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgeship.errors import MissingDependencyError, UserInputError
from edgeship.run_dir import ArtifactKind

LITERT_PACKAGE = "@litertjs/core"
# The loader picks litert_wasm_internal (relaxed SIMD) or litert_wasm_compat_internal (SIMD128
# only) by what the browser supports; the threaded and JSPI builds need cross-origin isolation
# or JSPI, which a page served by serve-demo does not have.
LITERT_WASM_FILES = ("litert_wasm_internal.js", "litert_wasm_internal.wasm",
                     "litert_wasm_compat_internal.js", "litert_wasm_compat_internal.wasm")
LITERT_SITE_DIR = "vendor/litertjs"
ORT_PACKAGE = "onnxruntime-web"
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
ORT_SITE_DIR = "vendor/onnxruntime-web"
# The last row of @litertjs/core 2.5.3's DATATYPES table (dist/index.js), and the int8 row
# add_int8_tensors appends after it.
_LITERT_UINT8_ROW = """  {
    dtype: "uint8",
    typedArrayConstructor: Uint8Array,
    elementType: ElementType.UINT8
  }
]);"""
_LITERT_INT8_ROW = """,
  {
    dtype: "int8",
    typedArrayConstructor: Int8Array,
    elementType: ElementType.INT8
  }
]);"""


@dataclass(frozen=True)
class SiteFile:
    """A file the site serves: where it comes from and where it goes inside the site."""

    source: Path
    site_path: str
    transform: Callable[[bytes], bytes] | None = None


@dataclass(frozen=True)
class WebRuntime:
    """One runtime of the phone demo page.

    Attributes:
        name: the --runtime value ("litert", "onnx").
        package: its npm package.
        models: the run's model kinds the page can run, best first (the first the run has).
        reference: the float model the page compares with (its latency beside the int8's).
        backend: how it runs, in words (shown on the page).
        module: the ES module the page imports, inside the site.
        wasm_dir: the folder of its WebAssembly files, inside the site.
        vendor_files: the package's files the site serves, given node_modules.
        site_model: the bytes of a model file as the site serves it.
        convert_hint: the convert command that makes the models.
    """

    name: str
    package: str
    models: tuple[ArtifactKind, ...]
    reference: ArtifactKind
    backend: str
    module: str
    wasm_dir: str
    vendor_files: Callable[[Path], list[SiteFile]]
    site_model: Callable[[bytes], bytes]
    convert_hint: str

    def package_dir(self, node_modules: Path) -> Path:
        return node_modules / self.package

    def version(self, node_modules: Path) -> str:
        import json

        return json.loads((self.package_dir(node_modules) / "package.json").read_text())["version"]

    def checked_vendor_files(self, node_modules: Path) -> list[SiteFile]:
        """vendor_files, or MissingDependencyError naming the missing ones and `npm ci`."""
        files = self.vendor_files(node_modules)
        missing = [str(file.source.relative_to(node_modules)) for file in files
                   if not file.source.is_file()]
        if missing:
            raise MissingDependencyError(
                f"{self.package} is not installed in {node_modules} (missing "
                f"{', '.join(missing)}); in a clone: cd firmware_examples/phone_web && npm ci "
                f"(needs Node.js and npm); elsewhere pass --node-modules (or set "
                f"$EDGESHIP_NODE_MODULES) with a node_modules folder holding {self.package}")
        return files


def add_int8_tensors(module_source: bytes) -> bytes:
    """LiteRT.js's module with int8 tensors (Int8Array) in its table of tensor types.

    Raises:
        MissingDependencyError: the module is not the pinned @litertjs/core 2.5.x source.
    """
    text = module_source.decode()
    if text.count(_LITERT_UINT8_ROW) != 1 or 'dtype: "int8"' in text:
        raise MissingDependencyError(
            f"{LITERT_PACKAGE}'s dist/index.js is not the version package-lock.json pins (its "
            "table of tensor types changed), so the page cannot add int8 tensors to it; run "
            "`npm ci` in firmware_examples/phone_web")
    return text.replace(_LITERT_UINT8_ROW, _LITERT_UINT8_ROW[:-4] + _LITERT_INT8_ROW).encode()


def with_static_batch(tflite_bytes: bytes) -> bytes:
    """The .tflite without shape signatures: every tensor's shape (batch 1) is fixed.

    Raises:
        UserInputError: not a .tflite, or a tensor whose shape has a dimension other than the
            batch left open (0 or -1), which a fixed shape would change.
    """
    from edgeship.model_check import check_tflite_bytes
    from edgeship.tflite_graph import read_model, write_model

    check_tflite_bytes(tflite_bytes)
    model = read_model(tflite_bytes)
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            signature = tensor.shapeSignature
            if signature is None or len(signature) == 0:
                continue
            shape = list(tensor.shape if tensor.shape is not None else [])
            open_sides = [axis for axis, side in enumerate(signature) if side < 0]
            if open_sides not in ([], [0]) or (open_sides and shape[:1] != [1]):
                raise UserInputError(
                    f"tensor {tensor.name!r} has shape {shape} with signature "
                    f"{list(signature)}; LiteRT.js runs fixed shapes and only a batch of 1 "
                    "can be fixed without changing the model")
            tensor.shapeSignature = None
    return write_model(model)


def _litert_files(node_modules: Path) -> list[SiteFile]:
    package = node_modules / LITERT_PACKAGE
    return [SiteFile(package / "dist" / "index.js", f"{LITERT_SITE_DIR}/core.js",
                     add_int8_tensors),
            # dist/index.js imports this by its bare name; index.html's import map points it here
            SiteFile(node_modules / "@litertjs" / "wasm-utils" / "dist" / "index.js",
                     f"{LITERT_SITE_DIR}/wasm-utils.js"),
            *(SiteFile(package / "wasm" / name, f"{LITERT_SITE_DIR}/wasm/{name}")
              for name in LITERT_WASM_FILES)]


def _ort_files(node_modules: Path) -> list[SiteFile]:
    return [SiteFile(node_modules / ORT_PACKAGE / "dist" / name, f"{ORT_SITE_DIR}/{name}")
            for name in ORT_FILES]


RUNTIMES = {
    "litert": WebRuntime(
        name="litert", package=LITERT_PACKAGE,
        models=(ArtifactKind.XNNPACK_INT8_TFLITE, ArtifactKind.INT8_TFLITE),
        reference=ArtifactKind.FLOAT_TFLITE,
        backend="XNNPACK on WebAssembly SIMD (CPU, 1 thread)",
        module=f"{LITERT_SITE_DIR}/core.js", wasm_dir=f"{LITERT_SITE_DIR}/wasm/",
        vendor_files=_litert_files, site_model=with_static_batch,
        convert_hint="edgeship convert {run} --int8"),
    "onnx": WebRuntime(
        name="onnx", package=ORT_PACKAGE, models=(ArtifactKind.INT8_ONNX,),
        reference=ArtifactKind.FLOAT_ONNX, backend="WASM (CPU, 1 thread)",
        module=f"{ORT_SITE_DIR}/{ORT_FILES[0]}", wasm_dir=f"{ORT_SITE_DIR}/",
        vendor_files=_ort_files, site_model=lambda model_bytes: model_bytes,
        convert_hint="edgeship convert {run} --int8 --onnx"),
}


def web_runtime(name: str) -> WebRuntime:
    """The WebRuntime called name, or UserInputError listing the ones there are."""
    if name not in RUNTIMES:
        raise UserInputError(f"unknown web runtime {name!r}; choose one of "
                             f"{', '.join(RUNTIMES)}")
    return RUNTIMES[name]
