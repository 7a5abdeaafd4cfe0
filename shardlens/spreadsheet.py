"""Cells written for spreadsheets: CSV formula injection (OWASP) and its exact reversal.

A spreadsheet application runs a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return as a formula (``=HYPERLINK(...)``, ``=cmd|' /C calc'!A0``). Every text cell of
the CSV files shardlens writes goes through :func:`csv_cell`: such a value gets a leading ``'``,
which spreadsheets show as text and do not display. So that the round trip through review
re-import is exact, a value that already starts with quotes followed by a trigger (``'=x``) gets
one more; :func:`csv_value` strips exactly one leading ``'`` where only quotes and then a trigger
follow it, and leaves every other value (``'abc``, ``it's``) as it is. JSON, Parquet and SQLite
keep the true values.
"""

from __future__ import annotations

import re

FORMULA_TRIGGERS = "=+-@\t\r"
_WRITTEN_ESCAPED = re.compile(r"'*[=+\-@\t\r]")  # values that get one more leading quote
_READ_ESCAPED = re.compile(r"'+[=+\-@\t\r]")  # values that lose one leading quote


def csv_cell(value):
    """The cell to write for ``value``: text that a spreadsheet would run gets a leading ``'``;
    numbers, None and other text are returned unchanged."""
    if isinstance(value, str) and _WRITTEN_ESCAPED.match(value):
        return "'" + value
    return value


def csv_value(cell: str) -> str:
    """The true value of a cell read back from a CSV written with :func:`csv_cell`."""
    if _READ_ESCAPED.match(cell):
        return cell[1:]
    return cell
