"""Fixtures of tests/edgeship: two uninterrupted tiny pipelines, run side by side once.

test_determinism compares the two; test_interruptions uses the first as the baseline its
killed-and-resumed pipeline must reproduce.
"""

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

# Small enough for the default suite: simple_cnn, one epoch, a few bench runs and images.
TINY_PIPELINE = ["--model", "simple_cnn", "--dataset", "mnist5k", "--epochs", "1", "--seed", "0",
                 "--bench-runs", "5", "--validate-limit", "50", "--calibration-samples", "50",
                 "--embed-samples", "2"]


@dataclass(frozen=True)
class PipelineRun:
    out: Path
    returncode: int
    seconds: float
    stdout: str
    stderr: str


def pipeline_command(out: Path) -> list[str]:
    return [sys.executable, "-m", "edgeship.cli", "pipeline", *TINY_PIPELINE, "--out", str(out)]


@pytest.fixture(scope="session")
def clean_pipeline_runs(tmp_path_factory) -> tuple[PipelineRun, PipelineRun]:
    """The tiny pipeline twice, concurrently, into two fresh folders."""
    root = tmp_path_factory.mktemp("clean_pipelines")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.perf_counter()
    processes = [(root / name, subprocess.Popen(pipeline_command(root / name), env=env, text=True,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE))
                 for name in ("first", "second")]
    runs = []
    for out, process in processes:
        stdout, stderr = process.communicate(timeout=600)
        runs.append(PipelineRun(out, process.returncode, time.perf_counter() - started, stdout,
                                stderr))
    return tuple(runs)
