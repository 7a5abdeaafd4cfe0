"""Cache records: the JSON Schemas in ``contracts/`` and one atomic JSONL writer and reader.

The schema files are the single source of each record's fields: the stages validate what they
write against them, the catalog reads them back through :func:`read_jsonl`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from .atomic import atomic_open

SCHEMA_VERSION = 1
CONTRACTS_DIR = Path(__file__).parent / "contracts"


class RecordError(ValueError):
    """A record that does not match its schema, or a cache file that cannot be read."""


def schema_names() -> list[str]:
    """Names of all record kinds that have a schema (``ingest``, ``gate``, ...)."""
    return sorted(p.name.removesuffix(".schema.json") for p in CONTRACTS_DIR.glob("*.schema.json"))


@cache
def load_schema(kind: str) -> dict[str, Any]:
    path = CONTRACTS_DIR / f"{kind}.schema.json"
    if not path.exists():
        raise RecordError(f"no schema for record kind {kind!r}; known: {', '.join(schema_names())}")
    return json.loads(path.read_text(encoding="utf-8"))


@cache
def _validator(kind: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(kind))


def validate_record(kind: str, record: dict[str, Any], where: str = "") -> None:
    """Raise :class:`RecordError` naming ``where`` and the first offending field."""
    errors = sorted(_validator(kind).iter_errors(record), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        field = ".".join(str(p) for p in err.absolute_path) or "(record)"
        prefix = f"{where}: " if where else ""
        raise RecordError(f"{prefix}{kind} record field {field!r}: {err.message}")


def schema_hash() -> str:
    """sha256 over the canonical JSON of every schema, so any contract change changes it."""
    digest = hashlib.sha256()
    for kind in schema_names():
        canonical = json.dumps(load_schema(kind), sort_keys=True, separators=(",", ":"))
        digest.update(kind.encode() + b"\0" + canonical.encode() + b"\0")
    return digest.hexdigest()


def dumps(record: dict[str, Any]) -> str:
    """One JSONL line: compact, keys sorted, UTF-8 kept readable, so equal records give equal bytes."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def write_jsonl(path: str | Path, kind: str, records: Iterable[dict[str, Any]]) -> int:
    """Validate and write ``records`` to ``path`` atomically; return how many were written.

    The lines go to a temporary file in the same folder, are fsynced, and the file is renamed
    over ``path``: a reader sees the old file or the complete new one, never half of it.
    """
    path = Path(path)
    count = 0
    with atomic_open(path, "w", newline="\n") as handle:
        for record in records:
            validate_record(kind, record, where=f"{path} record {count + 1}")
            handle.write(dumps(record) + "\n")
            count += 1
    return count


def write_json(path: str | Path, data: Any) -> None:
    """Write one JSON document atomically (indented, keys sorted)."""
    with atomic_open(path, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, ensure_ascii=False)
        handle.write("\n")


def read_jsonl(path: str | Path, kind: str, validate: bool = True) -> Iterator[dict[str, Any]]:
    """Yield the records of a JSONL cache file; errors name the file and line number."""
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            where = f"{path} line {line_no}"
            if not line.endswith("\n"):
                raise RecordError(f"{where}: last line has no newline: the file is truncated")
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordError(f"{where}: not valid JSON ({exc.msg})") from None
            if validate:
                validate_record(kind, record, where=where)
            yield record


def file_digest(path: str | Path) -> tuple[str, int]:
    """(sha256 of the bytes, number of lines) of a cache file."""
    digest = hashlib.sha256()
    lines = 0
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            lines += chunk.count(b"\n")
    return digest.hexdigest(), lines
