"""JSON documents written piece by piece, laid out exactly as ``json.dumps(document,
ensure_ascii=False, indent=1)`` lays out the whole: an export of millions of items streams its
arrays from a database cursor and never holds them as one list, yet its file is byte for byte the
one the one-shot call would write (the tests compare both).

``json.dumps`` with an indent puts a line break only between structural tokens (a line break in a
string is escaped), so a value nested ``depth`` levels deep is its own dump with every line
indented by ``depth`` more spaces."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import IO, Any


def dumps_at(value: Any, depth: int = 0) -> str:
    """``value`` as ``json.dumps(..., ensure_ascii=False, indent=1)`` writes it ``depth`` levels
    deep inside a document (the first line unindented: it follows a key or the array's indent)."""
    text = json.dumps(value, ensure_ascii=False, indent=1)
    return text.replace("\n", "\n" + " " * depth) if depth else text


class ArrayWriter:
    """A JSON array written item by item at ``depth``: ``add`` each item, then ``close``. Items
    are encoded ``chunk`` at a time (one ``json.dumps`` call for many items: the pure-Python
    encoder that ``indent`` needs costs less per item that way); an empty array is ``[]``."""

    def __init__(self, handle: IO[str], depth: int = 0, chunk: int = 1000) -> None:
        self.handle, self.depth, self.chunk, self.count = handle, depth, chunk, 0
        self._buffer: list[Any] = []

    def add(self, item: Any) -> None:
        self._buffer.append(item)
        if len(self._buffer) >= self.chunk:
            self._flush()

    def extend(self, items: Iterable[Any]) -> int:
        for item in items:
            self.add(item)
        return self.count + len(self._buffer)

    def _flush(self) -> None:
        if not self._buffer:
            return
        body = json.dumps(self._buffer, ensure_ascii=False, indent=1)[2:-2]  # the items of "[\n ...\n]"
        if self.depth:
            body = " " * self.depth + body.replace("\n", "\n" + " " * self.depth)
        self.handle.write(("[\n" if self.count == 0 else ",\n") + body)
        self.count += len(self._buffer)
        self._buffer = []

    def close(self) -> None:
        self._flush()
        self.handle.write("[]" if self.count == 0 else "\n" + " " * self.depth + "]")


class ObjectWriter:
    """A top-level JSON object written member by member: ``value`` for a plain value, ``array``
    for an array streamed from an iterable (items in order), then ``close``."""

    def __init__(self, handle: IO[str]) -> None:
        self.handle, self.count = handle, 0

    def _key(self, key: str) -> None:
        self.handle.write(("{\n" if self.count == 0 else ",\n") + " " + json.dumps(key, ensure_ascii=False) + ": ")
        self.count += 1

    def value(self, key: str, value: Any) -> None:
        self._key(key)
        self.handle.write(dumps_at(value, 1))

    def array(self, key: str, items: Iterable[Any]) -> int:
        self._key(key)
        array = ArrayWriter(self.handle, depth=1)
        array.extend(items)
        array.close()
        return array.count

    def close(self) -> None:
        self.handle.write("{}" if self.count == 0 else "\n}")
