"""Wall time of the README's main job (the pipeline on mnist5k) and of a re-run with nothing changed.

Usage: python benchmarks/bench_pipeline.py [--out runs/bench_pipeline]
Runs the same `edgeship pipeline` command scripts/demo.sh runs, in a fresh output folder, as a
subprocess (import and start-up included), then again; writes the `pipeline` section of
docs/results.md.
"""

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results_doc import machine_line, publish_section
from edgeship.reports import markdown_table

MAIN_JOB = ["pipeline", "--model", "lenet5", "--dataset", "mnist5k", "--epochs", "5", "--qat", "1"]


def _run(out: Path) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "edgeship.cli", *MAIN_JOB, "--out", str(out)],
                            capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"pipeline failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return seconds, result.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/bench_pipeline")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    first, stdout = _run(out)
    second, rerun_stdout = _run(out)
    stages = re.findall(r"\] (\w+): done in ([\d.]+) s", stdout)
    skipped = len(re.findall(r"up to date, skipped", rerun_stdout))
    rows = [[stage, f"{float(seconds):.1f}"] for stage, seconds in stages]
    markdown = "\n".join([
        "## Main job: `edgeship pipeline` on mnist5k", "",
        f"`python benchmarks/bench_pipeline.py`. {machine_line()} Command: `edgeship "
        f"{' '.join(MAIN_JOB)} --out {out}` (what `scripts/demo.sh` runs after installing), "
        "timed as a subprocess including Python and TensorFlow start-up.", "",
        markdown_table(["run", "wall time (s)", "target"], [
            ["first run (every stage)", f"{first:.1f}", "< 300"],
            [f"re-run, nothing changed ({skipped}/{len(stages)} stages skipped)", f"{second:.1f}", "seconds"]]),
        markdown_table(["stage (first run)", "seconds"], rows),
    ])
    publish_section("pipeline", markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
