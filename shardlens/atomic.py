"""Atomic writes, one way for every file shardlens writes: a temporary file beside the target,
renamed over it only when complete, so that a reader sees the old file or the whole new one and
an interrupted job leaves nothing half-written. The temporary file is created like any file the
user's programs create (mode 0666 less the umask; ``tempfile.mkstemp`` would force 0600).
A whole folder (a model mirror, the prepared Paddle models) is built in :func:`staging_folder`
beside its target and renamed into place by the caller."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path, durable: bool = True) -> Iterator[Path]:
    """A fresh temporary path beside ``path`` for a writer that wants a file name (pyarrow, an
    exporter); renamed over ``path`` when the block ends without an error, removed otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path)
    try:
        yield tmp
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(path.parent)


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", durable: bool = True, **kwargs: Any) -> Iterator[IO]:
    """``open(path, mode, **kwargs)`` on a temporary file that replaces ``path`` when the block
    ends without an error (``durable``: fsynced first)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    if mode == "w":
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path, durable=False) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
    if durable:
        _fsync_dir(Path(path).parent)


@contextmanager
def staging_folder(target: str | Path) -> Iterator[Path]:
    """A fresh empty folder beside ``target`` (mode 0755: model folders are shared) in which to
    build a whole folder that the caller renames into place (``os.replace``, atomic on one file
    system). Whatever is left of it when the block ends (an error, a rename that lost a race) is
    removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes it 0700
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process: alive
        return False
    return False


def abandoned_temporaries(path: str | Path) -> list[Path]:
    """Temporary files of ``path`` (as :func:`atomic_path` names them) whose writer is gone: a
    process killed before its rename (SIGKILL, power loss). Never a live writer's file."""
    path = Path(path)
    found = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and _process_gone(int(pid)):
            found.append(tmp)
    return found
