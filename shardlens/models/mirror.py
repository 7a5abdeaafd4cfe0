"""A local mirror of hub model weights, pinned by sha256 in ``mirror.lock.json``.

``mirror_model`` copies a model (a local folder, or a Hugging Face hub id taken from the local
HF cache, or downloaded with ``snapshot_download`` when the machine is online) into
``dest_root/<name>/`` and records, in ``dest_root/mirror.lock.json``, the source, the hub
revision when there is one, and the sha256 and size of every file. ``verify_mirror`` rehashes a
mirrored model and refuses one whose files changed, went missing or appeared, so a run on an
offline cluster uses exactly the weights that were mirrored.

Lock file layout (JSON, ``sort_keys``, indent 2, no timestamps, so it diffs cleanly)::

    {"version": 1,
     "models": {"<name>": {"source": "google/owlv2-base-patch16-ensemble",
                           "revision": "<commit or null>",
                           "files": {"config.json": {"sha256": "...", "size": 1234}, ...}}}}

Only the regular files at the top of a model folder are mirrored: that is what
``from_pretrained(folder)`` reads. Writes are atomic (temp file or folder, then ``os.replace``),
and updates of the lock are serialised with an advisory file lock so parallel jobs can mirror
different models into one root.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..atomic import atomic_open, staging_folder
from .detector_backends import OPEN_VOCABULARY

log = logging.getLogger(__name__)

LOCK_NAME = "mirror.lock.json"
LOCK_VERSION = 1
# Patterns fetched when a hub model has to be downloaded (weights, configs, tokenizer files).
DOWNLOAD_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken"]
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class MirrorError(RuntimeError):
    """A model could not be mirrored, or a mirrored model does not match its lock entry."""


def file_sha256(path: Path) -> str:
    """sha256 of a file, always read from disk.

    Not ``weights.sha256_file``: its (path, size, mtime) cache would miss a same-size rewrite
    within one timestamp tick, and catching exactly that is the point of verification.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files_to_mirror(folder: Path) -> list[Path]:
    """Regular (or symlinked) files at the top of ``folder``, hidden ones left out, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _file_table(files: list[Path]) -> dict[str, dict[str, Any]]:
    return {p.name: {"sha256": file_sha256(p), "size": p.stat().st_size} for p in files}


def _default_name(source: str, local: bool) -> str:
    if local:
        return Path(source.rstrip("/\\")).expanduser().resolve().name
    return source.replace("/", "--")


def _check_name(name: str) -> str:
    if not _NAME_RE.match(name) or name in (".", ".."):
        raise MirrorError(f"mirror name {name!r} must be a plain folder name (letters, digits, . _ + -)")
    return name


def _resolve_source(source: str, cache_dir: Path | None, revision: str | None, local_files_only: bool) -> tuple[Path, bool, str | None]:
    """``(folder, is_local, revision)`` holding the files of ``source``."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path.resolve(), True, None
    if path.exists() or os.path.isabs(source) or source.startswith((".", "~")) or source.count("/") > 1:
        raise MirrorError(f"model source {source!r} is not a directory (and not a hub id of the form org/name)")
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(source, revision=revision, cache_dir=cache_dir, local_files_only=True))
    except Exception as cache_err:  # not in the local cache
        if local_files_only:
            raise MirrorError(f"hub model {source!r} is not in the local Hugging Face cache and local_files_only is set: {cache_err}") from cache_err
        try:
            folder = Path(snapshot_download(source, revision=revision, cache_dir=cache_dir, allow_patterns=DOWNLOAD_PATTERNS))
            if not any(p.suffix == ".safetensors" for p in _files_to_mirror(folder)):
                folder = Path(snapshot_download(source, revision=revision, cache_dir=cache_dir, allow_patterns=DOWNLOAD_PATTERNS + ["*.bin"]))
        except Exception as err:
            raise MirrorError(
                f"could not fetch hub model {source!r}: it is not in the local Hugging Face cache and the "
                f"download failed ({err}). This machine may be offline: mirror it on a connected machine "
                f"and copy the mirror folder over, or give a local directory."
            ) from err
    return folder, False, folder.name


@contextlib.contextmanager
def _locked(dest_root: Path) -> Iterator[None]:
    """Serialise read-modify-write of the lock file across processes (advisory, POSIX only)."""
    dest_root.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX: no cross-process locking
        yield
        return
    with open(dest_root / ".mirror.lock.guard", "a+") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(guard, fcntl.LOCK_UN)


def read_lock(dest_root: Path) -> dict[str, Any]:
    """The lock file of ``dest_root`` (an empty one when there is none yet)."""
    lock_path = Path(dest_root) / LOCK_NAME
    if not lock_path.exists():
        return {"version": LOCK_VERSION, "models": {}}
    try:
        data = json.loads(lock_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise MirrorError(f"cannot read {lock_path}: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise MirrorError(f"{lock_path} is not a mirror lock file (no 'models' table)")
    return data


def _write_lock(dest_root: Path, data: dict[str, Any]) -> None:
    """Write the lock file atomically, deterministically (sorted keys, indent 2, trailing newline)."""
    text = json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    with atomic_open(dest_root / LOCK_NAME, "w") as handle:
        handle.write(text)


def mirror_model(
    source: str | os.PathLike[str],
    dest_root: Path,
    name: str | None = None,
    *,
    revision: str | None = None,
    cache_dir: Path | None = None,
    local_files_only: bool = False,
) -> dict[str, Any]:
    """Copy ``source`` into ``dest_root/<name>/`` and record it in ``dest_root/mirror.lock.json``.

    ``source`` is a local model folder or a hub id (``org/name``): a hub id is taken from the
    local HF cache (``cache_dir`` or the default one) and only downloaded when it is not there
    and ``local_files_only`` is false. ``name`` defaults to the folder's name, or the hub id with
    ``/`` written ``--``. An existing mirror of the same name is replaced as a whole (the new
    copy is built beside it, then swapped in).

    Returns the lock entry: ``{"source", "revision", "files": {name: {"sha256", "size"}}, "path"}``.
    """
    source = str(source)
    dest_root = Path(dest_root)
    folder, local, resolved_revision = _resolve_source(source, cache_dir, revision, local_files_only)
    name = _check_name(name or _default_name(source, local))
    files = _files_to_mirror(folder)
    if not files:
        raise MirrorError(f"model source {source!r} ({folder}) holds no files to mirror")
    dest = dest_root / name
    with staging_folder(dest) as staging:  # removed unless swapped in
        for path in files:
            shutil.copyfile(path, staging / path.name)  # follows cache symlinks to the blobs
        table = _file_table(_files_to_mirror(staging))
        if table != _file_table(files):
            raise MirrorError(f"copy of {source!r} does not match its source (changed while copying?)")
        entry = {"source": str(folder) if local else source, "revision": resolved_revision, "files": table}
        with _locked(dest_root):
            if dest.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".old", dir=dest_root))
                os.replace(dest, old / name)
                os.replace(staging, dest)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(staging, dest)
            data = read_lock(dest_root)
            data["version"] = LOCK_VERSION
            data["models"][name] = entry
            _write_lock(dest_root, data)
    log.info("mirrored %s into %s (%d files)", source, dest, len(table))
    return {**entry, "path": str(dest)}


def verify_mirror(dest_root: Path, name: str, allow_changed: bool = False, update_lock: bool = True) -> Path:
    """Rehash ``dest_root/<name>/`` against the lock; return the folder when it matches.

    Raises :class:`MirrorError` naming the changed, missing and extra files. With
    ``allow_changed`` the differences are logged as a warning and the lock entry is updated to
    the files now on disk instead (``update_lock``; planning passes False: a plan writes nothing,
    the job that loads the model updates the lock).
    """
    dest_root = Path(dest_root)
    name = _check_name(name)
    folder = dest_root / name
    with _locked(dest_root):
        data = read_lock(dest_root)
        entry = data["models"].get(name)
        if entry is None:
            raise MirrorError(f"model {name!r} is not in {dest_root / LOCK_NAME}; mirrored: {sorted(data['models']) or 'none'}")
        if not folder.is_dir():
            raise MirrorError(f"mirrored model folder {folder} is missing (listed in {dest_root / LOCK_NAME})")
        expected: dict[str, dict[str, Any]] = entry.get("files", {})
        actual = _file_table(_files_to_mirror(folder))
        changed = sorted(f for f in expected if f in actual and actual[f]["sha256"] != expected[f]["sha256"])
        missing = sorted(f for f in expected if f not in actual)
        extra = sorted(f for f in actual if f not in expected)
        if not (changed or missing or extra):
            return folder
        problems = "; ".join(f"{label}: {', '.join(files)}" for label, files in (("changed", changed), ("missing", missing), ("extra", extra)) if files)
        message = f"mirrored model {name!r} in {folder} does not match {LOCK_NAME}: {problems}"
        if not allow_changed:
            raise MirrorError(message + " (re-mirror it, or verify with allow_changed to accept the new files)")
        if not update_lock:
            return folder
        log.warning("%s; accepting the files on disk and updating the lock", message)
        entry["files"] = actual
        data["models"][name] = entry
        _write_lock(dest_root, data)
    return folder


def config_models(config: dict[str, Any]) -> list[tuple[str, str]]:
    """``(config key, model)`` for each model a workflow config loads through transformers, in order:
    ``detect.model`` when ``detect.backend`` is open-vocabulary, ``detect.classifier.model`` when
    ``detect.classifier.backend`` is set. ``config`` is a loaded one (``shardlens.config.load_config``,
    defaults filled). Each model is a hub id or a local folder; what to do with it is the caller's.

    Raises :class:`MirrorError` when such a backend is set without its model.
    """
    detect = config.get("detect") or {}
    named: list[tuple[str, str]] = []
    backend = detect.get("backend")
    if backend in OPEN_VOCABULARY:
        if not detect.get("model"):
            raise MirrorError(f"detect.backend is {backend!r} but detect.model is not set (a hub id or a local folder)")
        named.append(("detect.model", str(detect["model"])))
    classifier = detect.get("classifier") or {}
    if classifier.get("backend"):
        if not classifier.get("model"):
            raise MirrorError(f"detect.classifier.backend is {classifier['backend']!r} but detect.classifier.model is not set")
        named.append(("detect.classifier.model", str(classifier["model"])))
    return named
