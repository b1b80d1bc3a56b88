"""Atomic artifact writes and the run manifest that ties the stages together.

Every file edgeship produces is written to a temporary name in the same folder, flushed,
fsynced and renamed into place, so a final name never holds a half-written file. The
manifest (manifest.json) records each artifact's SHA-256, size and the options that made it.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from edgeship.errors import UserInputError

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA_VERSION = 1
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(final_path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside final_path; rename it into place on success.

    Use for writers that insist on a file name (Keras' model.save, matplotlib's savefig).
    On an exception the temporary file is removed and final_path is left untouched. The
    temporary name, `.STEM.PID.XXXXXXXX.tmpSUFFIX`, carries the writer's process id, so
    `remove_stale_temp_files` can tell a killed writer's leftovers from a live one's.
    """
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(
        prefix=f".{final_path.stem}.{os.getpid()}.", suffix=f".tmp{final_path.suffix}",
        dir=final_path.parent)
    os.close(handle)
    temp_path = Path(temp_name)
    try:
        yield temp_path
        os.chmod(temp_path, 0o666 & ~_UMASK)
        with open(temp_path, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temp_path, final_path)
    finally:
        if temp_path.exists():
            temp_path.unlink()


_TEMP_NAME = re.compile(r"^\..+\.(?P<pid>\d+)\.[a-z0-9_]{8}\.tmp(\.[^.]+)?$")


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete atomic_path's temporary files whose writer process is gone (SIGKILL, power loss).

    A live writer's temporary file is left alone, so this is safe beside a concurrent edgeship
    command. Returns the removed paths.
    """
    removed = []
    for path in Path(folder).rglob(".*.tmp*"):
        match = _TEMP_NAME.match(path.name)
        if match and path.is_file() and not _process_alive(int(match.group("pid"))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write bytes to path through a temporary file and a rename."""
    with atomic_path(path) as temp_path:
        with open(temp_path, "wb") as stream:
            stream.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text to path through a temporary file and a rename."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, payload: dict) -> Path:
    """Write a JSON document (sorted keys, indented) atomically."""
    return write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Call writer(temp_path) and rename the result to path."""
    with atomic_path(path) as temp_path:
        writer(temp_path)
    return Path(path)


KERAS_ARCHIVE_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold


def save_keras(model, path: str | os.PathLike) -> Path:
    """model.save to path atomically, as a byte-reproducible .keras archive.

    Keras stamps each save with the wall clock (metadata.json's date_saved and the weights
    entry's zip time), so the same weights would hash differently on every run. The archive is
    rewritten with every entry at KERAS_ARCHIVE_TIME and without date_saved; the entries'
    contents, order and compression are kept, so Keras loads it as before.
    """
    def writer(temp_path: Path) -> None:
        model.save(temp_path)
        _normalise_keras_archive(temp_path)

    return write_with(path, writer)


def _normalise_keras_archive(path: Path) -> None:
    with zipfile.ZipFile(path) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in entries:
            if info.filename == "metadata.json":
                metadata = json.loads(data)
                metadata.pop("date_saved", None)
                data = json.dumps(metadata).encode("utf-8")
            fixed = zipfile.ZipInfo(info.filename, date_time=KERAS_ARCHIVE_TIME)
            fixed.compress_type = info.compress_type
            fixed.external_attr = info.external_attr
            archive.writestr(fixed, data)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_file(path: str | os.PathLike) -> dict:
    """The manifest entry for one file: its SHA-256 and size in bytes."""
    path = Path(path)
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def read_manifest(run_dir: str | os.PathLike) -> dict:
    """Load run_dir/manifest.json; a missing or corrupt manifest is bad input."""
    path = Path(run_dir) / MANIFEST_NAME
    if not path.is_file():
        raise UserInputError(f"{run_dir} has no {MANIFEST_NAME}: is it a run directory made by edgeship?")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserInputError(f"{path} is not readable JSON: {error}") from error
    if not isinstance(manifest, dict):
        raise UserInputError(f"{path} does not hold a JSON object")
    return manifest


@contextlib.contextmanager
def manifest_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run directory while manifest.json is read and rewritten.

    Each stage reads the manifest, changes its own section and writes it back; two edgeship
    commands on one run directory at once (validate beside bench in CI) would otherwise lose
    one's update. The lock is flock on the directory itself, so it leaves no file behind and
    the kernel drops it when a killed process's descriptor closes.
    """
    descriptor = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def update_manifest(run_dir: str | os.PathLike, section: str, entry: dict,
                    artifacts: dict[str, str | os.PathLike] | None = None) -> dict:
    """Merge one stage's entry and its artifacts' hashes into manifest.json atomically.

    Args:
        run_dir: the run directory holding manifest.json.
        section: the stage's key ("train", "convert", ...); replaced whole.
        entry: plain-JSON description of the stage (options, versions, results).
        artifacts: name -> path of files this stage wrote; each gets sha256, size and stage.
            Entries the same stage recorded before and did not write now are dropped.

    Returns:
        The manifest as written.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with manifest_lock(run_dir):
        return _update_manifest(run_dir, section, entry, artifacts or {})


def _update_manifest(run_dir: Path, section: str, entry: dict, artifacts: dict) -> dict:
    path = run_dir / MANIFEST_NAME
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    manifest["schema_version"] = MANIFEST_SCHEMA_VERSION
    manifest[section] = entry
    recorded = manifest.setdefault("artifacts", {})
    # A stage's artifacts are replaced whole, so the manifest never lists a file it no longer made.
    for stale in [name for name, info in recorded.items() if info.get("stage") == section
                  and name not in artifacts]:
        del recorded[stale]
    for name, artifact_path in artifacts.items():
        recorded[name] = {**describe_file(artifact_path), "stage": section,
                          "path": os.path.relpath(artifact_path, run_dir)}
    write_json_atomic(path, manifest)
    return manifest


def forget_stage(run_dir: str | os.PathLike, section: str, remove_files: bool = False) -> dict:
    """Drop a stage's entry and its artifacts' records before the stage runs again.

    A stage rewrites its files one by one and records them at its end; were its old records
    kept, a run killed in between would leave a manifest whose hashes no longer match the
    disk. Without them the manifest claims only files no running stage touches.

    Args:
        run_dir: the run directory.
        section: the stage's manifest key.
        remove_files: also delete the files the records named (the rerun makes them anew,
            and one it no longer makes must not linger).

    Returns:
        The manifest as written ({} when there is none).
    """
    run_dir = Path(run_dir)
    if not (run_dir / MANIFEST_NAME).is_file():
        return {}
    with manifest_lock(run_dir):
        return _forget_stage(run_dir, section, remove_files)


def _forget_stage(run_dir: Path, section: str, remove_files: bool) -> dict:
    path = run_dir / MANIFEST_NAME
    if not path.is_file():
        return {}
    manifest = read_manifest(run_dir)
    recorded = manifest.get("artifacts", {})
    stale = [name for name, info in recorded.items()
             if isinstance(info, dict) and info.get("stage") == section]
    if section not in manifest and not stale:
        return manifest
    manifest.pop(section, None)
    files = [run_dir / recorded.pop(name).get("path", name) for name in stale]
    write_json_atomic(path, manifest)  # records first: a kill in between leaves no claim
    for file in files if remove_files else []:
        if file.resolve().is_relative_to(run_dir.resolve()):
            file.unlink(missing_ok=True)
    return manifest


def find_run_dir_for(path: str | os.PathLike) -> Path | None:
    """The run directory whose manifest records this file's hash, if any."""
    path = Path(path)
    manifest_path = path.parent / MANIFEST_NAME
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        digest = sha256_file(path)
    except (OSError, ValueError):
        return None
    for entry in manifest.get("artifacts", {}).values():
        if isinstance(entry, dict) and entry.get("sha256") == digest:
            return path.parent
    return None
