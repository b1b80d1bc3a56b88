"""Shared pieces of every report: schema version, tool versions, environment, tables."""

import importlib.metadata
import platform

REPORT_SCHEMA_VERSION = 1

_TOOL_DISTRIBUTIONS = (
    "edgeship", "tensorflow", "tf-keras", "tensorflow-model-optimization", "numpy", "onnx",
    "tf2onnx", "onnxruntime", "onnxruntime-gpu", "ai-edge-litert", "tflite-micro",
)


def tool_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape edgeship's numbers."""
    versions = {"python": platform.python_version()}
    for name in _TOOL_DISTRIBUTIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or platform's best guess."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    """Machine description stored beside measured numbers."""
    import os

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "machine": platform.machine(),
            "system": platform.system(), "versions": tool_versions()}


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured Markdown table; floats keep the caller's formatting."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines) + "\n"
