"""Fixtures of tests/edgeship: two uninterrupted tiny pipelines, run side by side once.

test_determinism compares the two; test_interruptions uses the first as the baseline its
killed-and-resumed pipeline must reproduce.
"""

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import pipeline_command


@dataclass(frozen=True)
class PipelineRun:
    out: Path
    returncode: int
    seconds: float
    stdout: str
    stderr: str


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
