"""Reading a subscribers CSV: one record at a time, bounded, a bad record named
by its line and the rest kept.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from digest.errors import DigestError

# The columns a subscribers file may have (others are refused by name).
COLUMNS = (
    "email",
    "name",
    "sections",
    "timezone",
    "locale",
    "consent_source",
    "consent_at",
    "format",
)

MAX_RECORD = 64 * 1024  # one CSV record (a line, or lines in quotes): far over any real one

MAX_RECORD_LINES = 20


@dataclass(frozen=True)
class BadLine:
    """A record of the file that cannot be read; the rest of the file goes on."""

    reason: str


def _records(handle: BinaryIO) -> Iterator[tuple[int, bytes | BadLine]]:
    """(first line number, the record's bytes) for each CSV record: physical lines
    joined while a quoted field is open (RFC 4180 doubles quotes inside fields, so
    an odd count means one is open). Lines are read with a bound: a 200 MB line
    is skipped in chunks and reported, never held in memory."""
    number, record, start = 0, b"", 0
    while True:
        line = handle.readline(MAX_RECORD + 1)
        if not line:
            break
        number += 1
        if len(line) > MAX_RECORD:
            while line and not line.endswith(b"\n"):  # the rest of that line, unread
                line = handle.readline(MAX_RECORD)
            record = b""
            yield number, BadLine(f"the line is longer than {MAX_RECORD // 1024} KB")
            continue
        if not record:
            start = number
        record += line
        if record.count(b'"') % 2 == 0:
            yield start, record
            record = b""
        elif len(record) > MAX_RECORD or number - start >= MAX_RECORD_LINES:
            yield start, BadLine("a quoted field is never closed")
            record = b""
    if record:
        yield start, BadLine("a quoted field is never closed")


def _read_csv(path: Path) -> Iterator[tuple[int, dict[str, Any] | BadLine]]:
    """Each record as a dict keyed by the header, or why it cannot be read; the
    number is the file's line where the record starts, as an editor sees it."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise DigestError(f"{path}: cannot read: {exc.strerror}") from None
    with handle:
        records = _records(handle)
        first = next(records, None)
        if first is None or isinstance(first[1], BadLine):
            raise DigestError(f"{path}: the first line is not a CSV header")
        try:
            text = first[1].decode("utf-8-sig")
        except UnicodeDecodeError:
            raise DigestError(f"{path}:1: the header is not UTF-8") from None
        header = [h.strip().lower() for h in next(csv.reader([text]), [])]
        if "email" not in header:
            raise DigestError(f"{path}: the header row has no 'email' column")
        unknown = set(header) - set(COLUMNS)
        if unknown:
            raise DigestError(f"{path}: unknown column(s): {', '.join(sorted(unknown))}")
        for number, record in records:
            yield number, record if isinstance(record, BadLine) else _row(header, record)


def _row(header: list[str], record: bytes) -> dict[str, Any] | BadLine:
    try:
        text = record.decode("utf-8")
    except UnicodeDecodeError as exc:
        return BadLine(f"not UTF-8 (byte {record[exc.start]:#04x} at column {exc.start + 1})")
    if not text.strip("\r\n"):
        return {}  # a blank line
    try:
        values = next(csv.reader([text.rstrip("\r\n")], strict=True), [])
    except csv.Error as exc:
        return BadLine(f"not CSV: {exc}")
    if len(values) > len(header):
        return BadLine(f"{len(values)} fields where the header has {len(header)}")
    return dict(zip(header, values, strict=False))
