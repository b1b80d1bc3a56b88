"""SIGKILL `edgeship pipeline` at 10 seeded moments: nothing truncated, nothing stale, and the
resumed run ends with the uninterrupted run's .tflite hashes.

The moments are drawn across the baseline's timeline (start-up, then each stage for as long
as it took there). One chain of runs shares a folder: each run resumes what the killed one
left, and is killed in turn at the next moment, located by the pipeline's own stage lines
("[2/6] convert ...") so that machine load does not shift which stage a moment falls in.
"""

import json
import os
import queue
import random
import signal
import subprocess
import threading
import time
import zipfile

import pytest

from edgeship.artifacts import remove_stale_temp_files, sha256_file
from edgeship.model_check import check_tflite_file
from edgeship.pipeline import LOCK_NAME, STAGES
from edgeship.run_dir import MANIFEST_NAME
from tests.helpers import pipeline_command

KILLS = 10
SEED = 9


def _timeline(baseline) -> list[tuple[str, float, float]]:
    """(segment, start, end) in seconds since the baseline process started."""
    manifest = json.loads((baseline.out / MANIFEST_NAME).read_text())
    stages = [stage for stage in STAGES if stage in manifest["pipeline"]]  # profile: skipped
    seconds = [manifest["pipeline"][stage]["seconds"] for stage in stages]  # without its tools
    startup = max(baseline.seconds - sum(seconds), 0.5)
    segments, start = [("startup", 0.0, startup)], startup
    for stage, duration in zip(stages, seconds):
        segments.append((stage, start, start + duration))
        start += duration
    return segments


def _is_temp(path) -> bool:
    return path.name.startswith(".") and ".tmp" in path.name


def _assert_consistent(out, baseline_out):
    """The manifest matches the disk, and no file under a final name is partial."""
    manifest_path = out / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    for name, info in manifest.get("artifacts", {}).items():
        path = out / info["path"]
        assert path.is_file(), f"manifest lists {name} but it is not on disk"
        assert sha256_file(path) == info["sha256"], f"{name} does not match its recorded hash"
    for path in out.rglob("*"):
        if not path.is_file() or _is_temp(path) or path.name == LOCK_NAME:
            continue
        data = path.read_bytes()
        assert data, f"{path.name} is empty"
        baseline_file = baseline_out / path.relative_to(out)
        if path.suffix in (".tflite", ".onnx"):  # deterministic: the baseline's bytes exactly
            assert data == baseline_file.read_bytes(), f"{path.name} differs from the baseline"
        elif path.suffix == ".json":
            json.loads(data)
        elif path.suffix == ".png":
            assert data.endswith(b"IEND\xaeB`\x82"), f"{path.name} is truncated"
        elif path.suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                assert archive.testzip() is None
        elif path.suffix == ".html":
            assert data.rstrip().endswith(b"</html>"), f"{path.name} is truncated"
    if (out / "model_int8.tflite").exists():
        check_tflite_file(out / "model_int8.tflite")


def _run_and_kill(out, moment, timeline, rng) -> tuple[bool, str]:
    """Start the pipeline on out and SIGKILL it at `moment` of the baseline's timeline.

    Returns (killed, where): where names the segment the kill landed in.
    """
    segment = next((item for item in timeline if item[1] <= moment < item[2]), timeline[-1])
    name, start, _ = segment
    lines: queue.Queue = queue.Queue()
    with open(out.parent / f"{out.name}.stderr", "ab") as stderr:
        process = subprocess.Popen(pipeline_command(out), stdout=subprocess.PIPE, stderr=stderr,
                                   text=True, env={**os.environ, "PYTHONUNBUFFERED": "1",
                                                   "TF_CPP_MIN_LOG_LEVEL": "3"})
        reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout],
                                  daemon=True)
        reader.start()
        started = time.monotonic()
        where = name
        if name == "startup":
            deadline = started + moment
        else:
            deadline = None
            while deadline is None and process.poll() is None:
                try:
                    line = lines.get(timeout=0.2)
                except queue.Empty:
                    continue
                if line.startswith("[") and line.rstrip().endswith(" ..."):
                    running = line.split("] ", 1)[1].split(" ", 1)[0]
                    if running == name:  # the moment's stage: the same offset into it
                        deadline = time.monotonic() + (moment - start)
                    elif STAGES.index(running) > STAGES.index(name):
                        # the moment's stage was done already: hit the first one that runs
                        deadline, where = time.monotonic() + rng.uniform(0, 0.5), running
        while deadline is not None and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.01)
        killed = process.poll() is None
        if killed:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=120)
        reader.join(timeout=10)
    assert process.returncode == (-signal.SIGKILL if killed else 0)
    return killed, where


@pytest.mark.slow  # ~30-60 s on 2 cores; the default suite keeps under 20 minutes
def test_sigkill_at_ten_moments_loses_nothing(clean_pipeline_runs, tmp_path):
    baseline = clean_pipeline_runs[0]
    assert baseline.returncode == 0, baseline.stderr[-2000:]
    timeline = _timeline(baseline)
    rng = random.Random(SEED)
    moments = sorted(rng.uniform(0, timeline[-1][2]) for _ in range(KILLS))
    out = tmp_path / "run"
    hits, leftovers = [], set()
    for moment in moments:
        killed, where = _run_and_kill(out, moment, timeline, rng)
        hits.append(where if killed else f"{where} (finished first)")
        assert not any(path.exists() for path in leftovers if where != "startup"), (
            "a resumed run left an earlier run's temporary files")
        if out.exists():
            _assert_consistent(out, baseline.out)
            leftovers |= {path for path in out.rglob("*") if _is_temp(path)}
    print(f"kills landed in: {hits}; temporary files left by kills: {len(leftovers)}")
    assert sum("finished" not in hit for hit in hits) >= KILLS - 2, hits
    assert len({hit.split(" ")[0] for hit in hits}) >= 3, hits  # spread across the run

    # What a kill in the middle of a write leaves (the moments above may or may not hit one).
    dead = subprocess.Popen(["true"])
    dead.wait()
    planted = out / f".model_int8.{dead.pid}.k1ll3d00.tmp.tflite"
    planted.write_bytes(b"half a model")
    final = subprocess.run(pipeline_command(out), capture_output=True, text=True, timeout=600,
                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, check=False)
    assert final.returncode == 0, final.stderr[-2000:]
    assert f"removed {planted.name}, left by an interrupted run" in final.stdout
    _assert_consistent(out, baseline.out)
    assert not [path for path in out.rglob("*") if _is_temp(path)]
    for name in ("model_float.tflite", "model_int8.tflite"):
        assert sha256_file(out / name) == sha256_file(baseline.out / name), name
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    baseline_manifest = json.loads((baseline.out / MANIFEST_NAME).read_text())
    assert set(manifest["pipeline"]) == set(baseline_manifest["pipeline"]) >= set(STAGES) - {
        "profile"}
    recorded = {name for name, info in manifest["artifacts"].items()}
    expected = {name for name in baseline_manifest["artifacts"]}
    assert recorded == expected


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".model_int8.{dead.pid}.abcd1234.tmp.tflite"
    live = tmp_path / "report_files" / f".chart.{os.getpid()}.efgh5678.tmp.png"
    live.parent.mkdir()
    for path in (stale, live):
        path.write_bytes(b"half")
    assert remove_stale_temp_files(tmp_path) == [stale]
    assert not stale.exists() and live.exists()


@pytest.mark.parametrize("stage", ["convert"])
def test_rerun_stage_drops_its_records_first(tmp_path, stage):
    """A stage that reruns forgets its old records before writing (RunDir.forget)."""
    from edgeship.run_dir import RunDir

    (tmp_path / "a.bin").write_bytes(b"a")
    (tmp_path / "b.bin").write_bytes(b"b")
    run = RunDir(tmp_path)
    run.update("train", {"x": 1}, artifacts={"a.bin": tmp_path / "a.bin"})
    run.update(stage, {"y": 2}, artifacts={"b.bin": tmp_path / "b.bin"})
    manifest = run.forget(stage, remove_files=True)
    assert stage not in manifest and set(manifest["artifacts"]) == {"a.bin"}
    assert (tmp_path / "a.bin").exists() and not (tmp_path / "b.bin").exists()
