"""Write one benchmark's section of docs/results.md in place, between its own markers.

Each script owns a section `<!-- NAME:begin -->` ... `<!-- NAME:end -->`; re-running a script
replaces its section and leaves the others alone, so every number in the doc comes from the
last run of the script that measured it.
"""

import datetime
from pathlib import Path

from edgeship.artifacts import write_text_atomic
from edgeship.reports import environment

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results.md"
HEADER = ("# Measured results\n\nEvery table below is written by a script in `benchmarks/`; "
          "re-run the script named in a section to refresh it. Nothing here is typed by hand.\n")


def machine_line() -> str:
    env = environment()
    versions = env["versions"]
    return (f"Measured {datetime.date.today().isoformat()} on {env['cpu']} ({env['cores']} cores), "
            f"TensorFlow {versions.get('tensorflow', '?')}, ai-edge-litert "
            f"{versions.get('ai-edge-litert', '?')}, onnxruntime {versions.get('onnxruntime', '?')}, "
            f"tflite-micro {versions.get('tflite-micro', '?')}.")


def update_results_section(name: str, markdown: str, path: Path = RESULTS) -> Path:
    """Replace (or append) the section between `<!-- name:begin -->` and `<!-- name:end -->`."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.is_file() else HEADER
    block = f"{begin}\n{markdown.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    return write_text_atomic(path, text)


def publish_section(name: str, markdown: str) -> Path:
    """Write a benchmark's section of docs/results.md and print it with where it went."""
    path = update_results_section(name, markdown)
    print(markdown)
    print(f"wrote {path}")
    return path
