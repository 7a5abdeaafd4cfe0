"""Cache records: the JSON Schemas in ``contracts/`` and one atomic JSONL writer and reader.

The schema files are the single source of each record's fields: the stages validate what they
write against them, the catalog reads them back through :func:`read_jsonl`.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
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
    if record_check(kind)(record):
        return
    errors = sorted(_validator(kind).iter_errors(record), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        field = ".".join(str(p) for p in err.absolute_path) or "(record)"
        prefix = f"{where}: " if where else ""
        raise RecordError(f"{prefix}{kind} record field {field!r}: {err.message}")


def _draft07(schema):
    """The record schema in the dialect fastjsonschema compiles (draft-07), meaning the same:
    2020-12's ``prefixItems`` is draft-07's array form of ``items`` (a following ``items`` becomes
    ``additionalItems``); ``contentEncoding``/``contentMediaType`` are annotations in 2020-12
    (jsonschema does not assert them) and are dropped, as are ``$id`` and ``$schema``."""
    if isinstance(schema, list):
        return [_draft07(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in ("$id", "$schema", "contentEncoding", "contentMediaType", "description", "title"):
            continue
        if key in ("enum", "const"):
            out[key] = copy.deepcopy(value)
        elif key == "properties":
            out[key] = {name: _draft07(spec) for name, spec in value.items()}
        else:
            out[key] = _draft07(value)
    if "prefixItems" in out:
        prefix = out.pop("prefixItems")
        if "items" in out:
            out["additionalItems"] = out.pop("items")
        out["items"] = prefix
    return out


@cache
def record_check(kind: str) -> Callable[[dict], bool]:
    """A fast yes/no check of one record against its schema: fastjsonschema's compiled code (a
    pinned dependency), 30 to 50 times faster than jsonschema's. :func:`validate_record` asks it
    first; a record it refuses goes through jsonschema, the reference, which names the offending
    field. tests/test_incremental_catalog.py checks that both answer alike on valid records and
    on thousands of broken ones."""
    import fastjsonschema

    schema = {"$schema": "http://json-schema.org/draft-07/schema#", **_draft07(load_schema(kind))}
    compiled = fastjsonschema.compile(schema, use_default=False, use_formats=False)
    invalid = fastjsonschema.JsonSchemaValueException

    def check(record: dict) -> bool:
        try:
            compiled(record)
        except invalid:
            return False
        return True

    return check


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
