"""The text dumps of the seeds and the bench corpus, parsed a block of lines at a time.

- `abstract_lines`: one abstract per line behind an `Abstract:` label.
- `viewer_table`: a pasted dataset-viewer table, `<arXiv id> | <abstract> |` rows that may span
  several lines, with header lines such as `stringlengths 9` and `| abstract`.

The raw text is kept as found (labels and cell separators included): `clean` repairs it and
counts each repair. Every non-blank line is inside exactly one record or one reject (checked).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.contracts import RECORD_SCHEMA, TEXT_DUMP_COLUMNS
from pipeline.errors import BadInputError
from pipeline.ids import parse_arxiv_id
from pipeline.io.formats.compression import open_binary

ABSTRACT_LINE = re.compile(r"^\s*(?:abstract\s*[:.]|ABSTRACT\b)", re.IGNORECASE)
TABLE_ROW = re.compile(
    r"^(?P<id>(?:\d{4}\.\d{4,5}|[a-z]+(?:-[a-z]+)*(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?)\s*\|\s?(?P<text>.*)$"
)
# Header lines a dataset viewer adds when its table is copied: column names and type/length hints.
TABLE_HEADER = re.compile(
    r"^\s*\|?\s*(?:(?:id|abstract|text|title)\s*\|?|string\s*lengths?\s*\d*(?:\s*[-\u2013]\s*\d+)?|"
    r"(?:string|int64|float64)\s*(?:classes)?)\s*$",
    re.IGNORECASE,
)

# The columns the text-dump parsers fill; ingest adds the source's columns to them.
TEXT_DUMP_SCHEMA = pa.schema([RECORD_SCHEMA.field(name) for name in TEXT_DUMP_COLUMNS])

# The text dumps are parsed a block of lines at a time with Arrow kernels; the exact Python
# patterns above run only on the few lines the kernels cannot decide, so the records and
# rejects are those of a line-by-line reading.
_BLOCK_BYTES = 16 << 20
_BOM = b"\xef\xbb\xbf"
# What str.rstrip() and str.strip() remove (every character for which str.isspace() holds).
# Arrow's and Rust's whitespace classes leave out \x1c-\x1f, so the set is spelled out.
PY_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# A line starting with this label and not ending there is an abstract line without a regex.
_LABEL = "Abstract:"
# RE2 supersets of TABLE_ROW and TABLE_HEADER: a line they reject cannot match the Python
# pattern. `_DIGIT` also admits every non-ASCII character, a superset of Python's Unicode `\d`;
# the header class admits whitespace, `|`, `-`, digits, the letters of the header words and
# anything non-ASCII (Python's IGNORECASE folds a few non-ASCII letters onto ASCII ones).
_DIGIT = r"[0-9\x{80}-\x{10FFFF}]"
_ROW_CANDIDATE = rf"^(?:{_DIGIT}{{4}}\.{_DIGIT}{{4,5}}|[a-z]+(?:-[a-z]+)*(?:\.[A-Z]{{2}})?/{_DIGIT}{{7}}).*\|"
_HEADER_CANDIDATE = r"^[\t-\r\x1c-\x20|\-0-9abcdefghilnorstxABCDEFGHILNORSTX\x{80}-\x{10FFFF}]*$"


@dataclass(frozen=True)
class Reject:
    file: str
    line: int
    reason: str
    content: str
    # The record's position where it is not a line: "$[3]", "paper[4]", "row 7".
    locator: str = ""
    detail: str = ""

    def as_dict(self, source_name: str, fmt: str) -> dict[str, Any]:
        row = {
            "source_name": source_name,
            "file": self.file,
            "line": self.line,
            "locator": self.locator or f"line {self.line}",
            "format": fmt,
            "reason": self.reason,
            "content": self.content,
        }
        if self.detail:
            row["detail"] = self.detail
        return row


Lines: TypeAlias = pa.LargeStringArray
Numbers: TypeAlias = npt.NDArray[np.int64]
# Records (in TEXT_DUMP_SCHEMA), rejects and the non-blank lines inside the records, per block.
BlockResult: TypeAlias = tuple[pa.Table, list[Reject], int]


class TextBlocks:
    """The non-blank lines of a text dump a block at a time (decompressed where compressed).

    Each item is (line numbers, lines): BOM, CRLF and trailing whitespace removed, blank lines
    counted and dropped. Undecodable bytes raise `BadInputError` naming the file and line.
    """

    def __init__(self, path: Path, name: str, block_bytes: int = _BLOCK_BYTES) -> None:
        self.path = path
        self.name = name
        self.block_bytes = block_bytes
        self.lines = 0
        self.blank_lines = 0

    def __iter__(self) -> Iterator[tuple[Numbers, Lines]]:
        # One buffer for the whole file: fresh 64 MiB allocations per block cost more in page
        # faults than the parsing itself. The lines handed out are copies, never views of it.
        buffer = bytearray(max(self.block_bytes, len(_BOM)))
        newlines = np.empty(len(buffer), dtype=np.bool_)
        with open_binary(self.path) as handle:
            filled = handle.readinto(buffer)
            bom = buffer.startswith(_BOM)
            if bom:
                filled -= len(_BOM)
                buffer[:filled] = buffer[len(_BOM) : filled + len(_BOM)]
            while True:
                # Blocks end at a newline, so no line (and no UTF-8 sequence) is cut.
                cut = buffer.rfind(b"\n", 0, filled) + 1
                if cut:
                    yield self._decode(memoryview(buffer)[:cut], newlines)
                    filled -= cut
                    buffer[:filled] = buffer[cut : cut + filled]
                elif filled == len(buffer):
                    # A line longer than the buffer: make room for it.
                    buffer += bytes(len(buffer))
                    newlines = np.empty(len(buffer), dtype=np.bool_)
                read = handle.readinto(memoryview(buffer)[filled:])
                if not read:
                    break
                filled += read
            if filled:
                yield self._decode(memoryview(buffer)[:filled], newlines)
            elif bom and not self.lines:
                # A file holding only a BOM has one (blank) line.
                self.lines = self.blank_lines = 1

    def _decode(self, block: memoryview, newlines: npt.NDArray[np.bool_]) -> tuple[Numbers, Lines]:
        size = len(block)
        ends = (
            np.flatnonzero(np.equal(np.frombuffer(block, dtype=np.uint8), ord("\n"), out=newlines[:size])) + 1
        )
        if block[size - 1] != ord("\n"):
            ends = np.append(ends, size)
        offsets = np.concatenate([np.zeros(1, dtype=np.int64), ends.astype(np.int64)])
        count = len(ends)
        raw = pa.Array.from_buffers(
            pa.large_binary(), count, [None, pa.py_buffer(offsets), pa.py_buffer(block)]
        )
        try:
            text = raw.cast(pa.large_string())
        except pa.ArrowInvalid:
            self._raise_undecodable(bytes(block))
        lines = pc.utf8_rtrim(text, characters=PY_WHITESPACE)
        non_blank = _to_numpy(pc.greater(pc.binary_length(lines), 0))
        numbers = self.lines + 1 + np.flatnonzero(non_blank)
        self.lines += count
        self.blank_lines += count - len(numbers)
        return numbers, lines.filter(non_blank)

    def _raise_undecodable(self, block: bytes) -> None:
        for index, raw in enumerate(block.split(b"\n")):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadInputError(
                    f"{self.name}:{self.lines + 1 + index}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at "
                    f"column {exc.start + 1}); re-encode the file as UTF-8 and rerun"
                ) from None
        raise AssertionError("Arrow rejected UTF-8 that Python decodes")


def _to_numpy(mask: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.bool_]:
    return np.asarray(mask.to_numpy(zero_copy_only=False), dtype=np.bool_)


def _record_table(
    name: str, fmt: str, numbers: Numbers, texts: Lines, raw_ids: list[str] | None = None
) -> pa.Table:
    """Records of one text dump as a TEXT_DUMP_SCHEMA table."""
    count = len(numbers)
    line = pa.array(numbers, pa.int64())
    if raw_ids is None:
        raw_id = arxiv_id = pa.nulls(count, pa.string())
        version = pa.nulls(count, pa.int64())
    else:
        parsed = [parse_arxiv_id(raw) if raw else None for raw in raw_ids]
        raw_id = pa.array(raw_ids, pa.string())
        arxiv_id = pa.array([p[0] if p else None for p in parsed], pa.string())
        version = pa.array([p[1] if p else None for p in parsed], pa.int64())
    columns = [
        pc.binary_join_element_wise(f"{name}:", line.cast(pa.string()), ""),
        pa.repeat(pa.scalar(name, pa.string()), count),
        line,
        pa.repeat(pa.scalar(fmt, pa.string()), count),
        raw_id,
        arxiv_id,
        version,
        texts.cast(pa.string()),
    ]
    return pa.Table.from_arrays(columns, schema=TEXT_DUMP_SCHEMA)


def parse_abstract_lines(blocks: TextBlocks) -> Iterator[BlockResult]:
    """One abstract per line behind an `Abstract:` label; any other non-blank line is a reject,
    as is a line holding a NUL byte (binary data in a text dump, never an abstract)."""
    for numbers, lines in blocks:
        is_record = _to_numpy(
            pc.and_(
                pc.and_(pc.starts_with(lines, _LABEL), pc.greater(pc.binary_length(lines), len(_LABEL))),
                pc.invert(pc.match_substring(lines, "\x00")),
            )
        )
        rejects = []
        others = np.flatnonzero(~is_record)
        for index, text in zip(others.tolist(), lines.take(others).to_pylist(), strict=True):
            number = int(numbers[index])
            if "\x00" in text:
                rejects.append(Reject(blocks.name, number, "binary_line", text))
            elif not ABSTRACT_LINE.match(text):
                rejects.append(Reject(blocks.name, number, "stray_line", text))
            elif not ABSTRACT_LINE.sub("", text, count=1).strip():
                rejects.append(Reject(blocks.name, number, "empty_abstract", text))
            else:
                is_record[index] = True
        table = _record_table(blocks.name, "abstract_lines", numbers[is_record], lines.filter(is_record))
        yield table, rejects, table.num_rows


def parse_viewer_table(blocks: TextBlocks) -> Iterator[BlockResult]:
    """`<id> | text` rows that run until a line ending in the `|` cell separator.

    A row still open at the end of a block is parsed with the next block.
    """
    carry: tuple[Numbers, Lines] | None = None
    for numbers, lines in blocks:
        if carry is not None:
            numbers = np.concatenate([carry[0], numbers])
            lines = pa.concat_arrays([carry[1], lines])
        result, consumed = _viewer_table_block(blocks.name, numbers, lines, final=False)
        yield result
        carry = numbers[consumed:], lines[consumed:]
    if carry is not None and len(carry[0]):
        yield _viewer_table_block(blocks.name, carry[0], carry[1], final=True)[0]


def _viewer_table_block(name: str, numbers: Numbers, lines: Lines, final: bool) -> tuple[BlockResult, int]:
    """The rows of one block and how many lines they consumed (all unless `final` is false and
    the last row is still open).

    A line is a row start, a header, a continuation of the open row or a stray line. A row
    closes at the next row start or header, or after a line ending in `|`; so the row is open
    before a line exactly when the last row start, header or `|` line before it is a row start
    that does not end in `|`.
    """
    count = len(lines)
    is_row = np.zeros(count, dtype=np.bool_)
    is_header = np.zeros(count, dtype=np.bool_)
    text_start = np.zeros(count, dtype=np.int64)
    row_ids: list[str] = []
    candidates = np.flatnonzero(_to_numpy(pc.match_substring_regex(lines, _ROW_CANDIDATE)))
    for index, text in zip(candidates.tolist(), lines.take(candidates).to_pylist(), strict=True):
        row = TABLE_ROW.match(text)
        if row is not None:
            is_row[index] = True
            row_ids.append(row.group("id"))
            start = row.start("text")
            text_start[index] = start if text.isascii() else len(text[:start].encode("utf-8"))
    candidates = np.flatnonzero(_to_numpy(pc.match_substring_regex(lines, _HEADER_CANDIDATE)) & ~is_row)
    for index, text in zip(candidates.tolist(), lines.take(candidates).to_pylist(), strict=True):
        is_header[index] = TABLE_HEADER.match(text) is not None
    ends_with_bar = _to_numpy(pc.ends_with(lines, "|"))
    opens = is_row & ~ends_with_bar
    last_event = np.where(opens | is_header | ends_with_bar, np.arange(count), -1)
    last_event = np.maximum.accumulate(last_event) if count else last_event
    open_after = (last_event >= 0) & opens[np.maximum(last_event, 0)]
    open_before = np.concatenate([np.zeros(1, dtype=np.bool_), open_after[:-1]])
    consumed = count
    if not final and count and open_after[-1]:
        consumed = int(np.flatnonzero(is_row)[-1])
        is_row, is_header, open_before = is_row[:consumed], is_header[:consumed], open_before[:consumed]
    if consumed == 0:
        return (_record_table(name, "viewer_table", numbers[:0], lines[:0], []), [], 0), 0
    rows = np.flatnonzero(is_row)
    row_ids = row_ids[: len(rows)]
    members = np.flatnonzero(is_row | (~is_header & open_before))
    owner = np.cumsum(is_row)[members] - 1
    line_counts = np.bincount(owner, minlength=len(rows))
    # A row's lines are consecutive, so its text is one slice of the lines joined by newlines,
    # starting after the id and the `|` that follows it.
    newline = pa.scalar("\n", pa.large_string())
    joined = pc.binary_join_element_wise(lines[:consumed], pa.scalar("", pa.large_string()), newline)
    starts = np.frombuffer(joined.buffers()[1], dtype=np.int64)[joined.offset : joined.offset + consumed + 1]
    bounds = np.empty(2 * len(rows) + 2, dtype=np.int64)
    bounds[0], bounds[-1] = starts[0], starts[-1]
    bounds[1:-1:2] = starts[rows] + text_start[rows]
    bounds[2:-1:2] = starts[rows + line_counts] - 1
    pieces = pa.Array.from_buffers(
        pa.large_string(), 2 * len(rows) + 1, [None, pa.py_buffer(bounds), joined.buffers()[2]]
    )
    texts = pieces.take(np.arange(1, 2 * len(rows), 2))
    empty = _to_numpy(pc.equal(pc.binary_length(pc.utf8_trim(texts, " |\n")), 0))
    kept = np.flatnonzero(~empty)
    table = _record_table(
        name, "viewer_table", numbers[rows[kept]], texts.take(kept), [row_ids[k] for k in kept.tolist()]
    )
    reasons = np.zeros(consumed, dtype=np.int8)
    reasons[~is_row & ~is_header & ~open_before] = 1
    reasons[is_header] = 2
    reasons[members[empty[owner]]] = 3
    rejected = np.flatnonzero(reasons)
    names = {1: "stray_line", 2: "table_header", 3: "empty_abstract"}
    rejects = [
        Reject(name, int(numbers[index]), names[reason], text)
        for index, reason, text in zip(
            rejected.tolist(), reasons[rejected].tolist(), lines.take(rejected).to_pylist(), strict=True
        )
    ]
    return (table, rejects, int(line_counts[kept].sum())), consumed


BLOCK_PARSERS: dict[str, Callable[[TextBlocks], Iterator[BlockResult]]] = {
    "abstract_lines": parse_abstract_lines,
    "viewer_table": parse_viewer_table,
}
