"""Where model weight files live, and their sha256 (cached per path, size and mtime)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | Path) -> str:
    """sha256 of a file, cached for the life of the process by (path, size, mtime)."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _HASH_CACHE[key] = digest.hexdigest()
    return _HASH_CACHE[key]


def package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it (cheap at DAG-build time)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {package!r} is not installed in this environment")
    return Path(next(iter(spec.submodule_search_locations)))


def rapidocr_model(name: str) -> Path:
    """A model file shipped inside the rapidocr wheel (e.g. ``PP-OCRv6_det_small.onnx``)."""
    path = package_dir("rapidocr") / "models" / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: reinstall rapidocr==3.10.0, whose wheel ships it")
    return path


def short_version(backend: str, path: Path) -> str:
    """``backend:file-stem@sha12`` (the first 12 hex digits of the sha256): names a model and the
    exact weights in one string."""
    return f"{backend}:{path.stem}@{sha256_file(path)[:12]}"
