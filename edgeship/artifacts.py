"""Atomic artifact writes and file hashes.

Every file edgeship produces is written to a temporary name in the same folder, flushed,
fsynced and renamed into place, so a final name never holds a half-written file. The run's
manifest.json, which records each artifact's SHA-256, size and the options that made it, is
edgeship.run_dir's.
"""

import contextlib
import hashlib
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

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
    with atomic_path(path) as temp_path, open(temp_path, "wb") as stream:
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
