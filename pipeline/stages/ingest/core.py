"""Stage `ingest`: every raw dump under `raw/` -> one parquet table of records.

Reads: every file under the raw directory (dot files and DVC pointer files skipped).
Writes: the records parquet (one row per abstract, with provenance), `rejects.jsonl` (every
non-blank raw line that is not part of a record, with a reason code) and `ingest.json` (counts).
Params: `ingest` (forced formats, generic column mapping, batch size).

Formats (sniffed per file unless forced in `ingest.formats`):
- `abstract_lines`: one abstract per line behind an `Abstract:` label.
- `viewer_table`: a pasted dataset-viewer table, `<arXiv id> | <abstract> |` rows that may span
  several lines, with header lines such as `stringlengths 9` and `| abstract`.
- `arxiv_snapshot`: JSON lines of the public arXiv metadata dump (`id`, `abstract`, `versions`).
- `jsonl`, `csv`, `parquet`: generic tables read through `ingest.generic` column names.

The raw text is kept as found (labels and cell separators included): `clean` repairs it and
counts each repair. Accounting is checked, not assumed: every non-blank line of a text dump
is inside exactly one record or one reject, otherwise the stage fails.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.contracts import RECORD_SCHEMA
from pipeline.errors import BadInputError
from pipeline.ids import parse_arxiv_id
from pipeline.io.writers import build_file_options, parquet_writer, write_json, write_jsonl
from pipeline.params import KNOWN_FORMATS, IngestParams

_ABSTRACT_LINE = re.compile(r"^\s*(?:abstract\s*[:.]|ABSTRACT\b)", re.IGNORECASE)
_TABLE_ROW = re.compile(
    r"^(?P<id>(?:\d{4}\.\d{4,5}|[a-z]+(?:-[a-z]+)*(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?)\s*\|\s?(?P<text>.*)$"
)
# Header lines a dataset viewer adds when its table is copied: column names and type/length hints.
_TABLE_HEADER = re.compile(
    r"^\s*\|?\s*(?:(?:id|abstract|text|title)\s*\|?|string\s*lengths?\s*\d*(?:\s*[-\u2013]\s*\d+)?|"
    r"(?:string|int64|float64)\s*(?:classes)?)\s*$",
    re.IGNORECASE,
)
_SNIFF_LINES = 200

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
# RE2 supersets of _TABLE_ROW and _TABLE_HEADER: a line they reject cannot match the Python
# pattern. `_DIGIT` also admits every non-ASCII character, a superset of Python's Unicode `\d`;
# the header class admits whitespace, `|`, `-`, digits, the letters of the header words and
# anything non-ASCII (Python's IGNORECASE folds a few non-ASCII letters onto ASCII ones).
_DIGIT = r"[0-9\x{80}-\x{10FFFF}]"
_ROW_CANDIDATE = rf"^(?:{_DIGIT}{{4}}\.{_DIGIT}{{4,5}}|[a-z]+(?:-[a-z]+)*(?:\.[A-Z]{{2}})?/{_DIGIT}{{7}}).*\|"
_HEADER_CANDIDATE = r"^[\t-\r\x1c-\x20|\-0-9abcdefghilnorstxABCDEFGHILNORSTX\x{80}-\x{10FFFF}]*$"


@dataclass(frozen=True)
class Record:
    file: str
    line: int
    format: str
    raw_text: str
    raw_id: str | None = None
    # Non-blank raw lines this record spans; used to prove that no line was lost.
    line_count: int = 1
    version_hint: int | None = None


@dataclass(frozen=True)
class Reject:
    file: str
    line: int
    reason: str
    content: str

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "reason": self.reason, "content": self.content}


Parsed = Iterator[Record | Reject]


@dataclass
class FileStats:
    format: str
    lines: int = 0
    blank_lines: int = 0
    records: int = 0
    rejects: int = 0
    lines_in_records: int = 0
    rejects_by_reason: Counter[str] = field(default_factory=Counter)


class TextLines:
    """Decoded lines of a text dump: BOM, CRLF and trailing whitespace removed, lines counted.

    Undecodable bytes raise `BadInputError` naming the file and line.
    """

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        self.lines = 0
        self.blank_lines = 0

    def __iter__(self) -> Iterator[tuple[int, str]]:
        with self.path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise BadInputError(
                        f"{self.name}:{number}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at "
                        f"column {exc.start + 1}); re-encode the file as UTF-8 and rerun"
                    ) from None
                text = text.rstrip()
                self.lines = number
                if not text:
                    self.blank_lines += 1
                yield number, text


Lines: TypeAlias = pa.LargeStringArray
Numbers: TypeAlias = npt.NDArray[np.int64]
# Records (in RECORD_SCHEMA), rejects and the non-blank lines inside the records, per block.
BlockResult: TypeAlias = tuple[pa.Table, list[Reject], int]


class TextBlocks:
    """The non-blank lines of a text dump a block at a time, as `TextLines` reads them.

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
        with self.path.open("rb") as handle:
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
    """Records of one text dump as a RECORD_SCHEMA table (the columns `RecordBuffer.add` fills)."""
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
    # The source name, locator and paper metadata columns: none in a text dump.
    columns += [pa.nulls(count, field.type) for field in RECORD_SCHEMA][len(columns) :]
    return pa.Table.from_arrays(columns, schema=RECORD_SCHEMA)


def parse_abstract_lines(blocks: TextBlocks) -> Iterator[BlockResult]:
    """One abstract per line behind an `Abstract:` label; any other non-blank line is a reject."""
    for numbers, lines in blocks:
        is_record = _to_numpy(
            pc.and_(pc.starts_with(lines, _LABEL), pc.greater(pc.binary_length(lines), len(_LABEL)))
        )
        rejects = []
        others = np.flatnonzero(~is_record)
        for index, text in zip(others.tolist(), lines.take(others).to_pylist(), strict=True):
            number = int(numbers[index])
            if not _ABSTRACT_LINE.match(text):
                rejects.append(Reject(blocks.name, number, "stray_line", text))
            elif not _ABSTRACT_LINE.sub("", text, count=1).strip():
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
        row = _TABLE_ROW.match(text)
        if row is not None:
            is_row[index] = True
            row_ids.append(row.group("id"))
            start = row.start("text")
            text_start[index] = start if text.isascii() else len(text[:start].encode("utf-8"))
    candidates = np.flatnonzero(_to_numpy(pc.match_substring_regex(lines, _HEADER_CANDIDATE)) & ~is_row)
    for index, text in zip(candidates.tolist(), lines.take(candidates).to_pylist(), strict=True):
        is_header[index] = _TABLE_HEADER.match(text) is not None
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


def _json_objects(lines: TextLines) -> Iterator[tuple[int, str, dict[str, Any] | None]]:
    for number, text in lines:
        if not text:
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            yield number, text, None
            continue
        yield number, text, obj if isinstance(obj, dict) else None


def _max_version(versions: Any) -> int | None:
    """Highest `vN` in the snapshot's `versions` list (`[{"version": "v1", ...}, ...]`)."""
    best: int | None = None
    if isinstance(versions, list):
        for entry in versions:
            label = entry.get("version") if isinstance(entry, dict) else entry
            if isinstance(label, str) and re.fullmatch(r"v\d+", label):
                best = max(best or 0, int(label[1:]))
    return best


def parse_arxiv_snapshot(lines: TextLines, _params: IngestParams) -> Parsed:
    for number, text, obj in _json_objects(lines):
        if obj is None:
            yield Reject(lines.name, number, "invalid_json", text)
            continue
        abstract = obj.get("abstract")
        if not isinstance(abstract, str) or not abstract.strip():
            yield Reject(lines.name, number, "empty_abstract", text)
            continue
        raw_id = obj.get("id")
        yield Record(
            lines.name,
            number,
            "arxiv_snapshot",
            abstract,
            raw_id=str(raw_id) if raw_id is not None else None,
            version_hint=_max_version(obj.get("versions")),
        )


def _generic_record(
    name: str, row_number: int, fmt: str, row: dict[str, Any], params: IngestParams, content: str
) -> Record | Reject:
    text = row.get(params.generic.text_field)
    if not isinstance(text, str) or not text.strip():
        return Reject(name, row_number, "empty_abstract", content)
    raw_id = row.get(params.generic.id_field) if params.generic.id_field else None
    return Record(name, row_number, fmt, text, raw_id=None if raw_id in (None, "") else str(raw_id))


def parse_jsonl(lines: TextLines, params: IngestParams) -> Parsed:
    for number, text, obj in _json_objects(lines):
        if obj is None:
            yield Reject(lines.name, number, "invalid_json", text)
        else:
            yield _generic_record(lines.name, number, "jsonl", obj, params, text)


def _require_column(name: str, columns: list[str], column: str, key: str) -> None:
    if column not in columns:
        raise BadInputError(
            f"{name}: has no column {column!r} (columns: {', '.join(columns)}); set {key} in params.yaml"
        )


def parse_csv(path: Path, name: str, params: IngestParams) -> Parsed:
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            columns = list(reader.fieldnames or [])
            _require_column(name, columns, params.generic.text_field, "ingest.generic.text_field")
            row_number = 0
            for row_number, row in enumerate(reader, start=1):
                content = json.dumps(row, ensure_ascii=False)
                yield _generic_record(name, row_number, "csv", row, params, content)
    except UnicodeDecodeError:
        raise BadInputError(
            f"{name}: row {row_number + 1}: not valid UTF-8; re-encode the file as UTF-8 and rerun"
        ) from None
    except csv.Error as exc:
        raise BadInputError(f"{name}: row {row_number + 1}: malformed CSV ({exc})") from None


def parse_parquet(path: Path, name: str, params: IngestParams) -> Parsed:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise BadInputError(f"{name}: not a readable parquet file ({exc})") from None
    columns = parquet.schema_arrow.names
    _require_column(name, columns, params.generic.text_field, "ingest.generic.text_field")
    wanted = [params.generic.text_field]
    if params.generic.id_field in columns:
        wanted.append(params.generic.id_field)
    row_number = 0
    for batch in parquet.iter_batches(columns=wanted, batch_size=params.batch_rows):
        for row in batch.to_pylist():
            row_number += 1
            yield _generic_record(
                name, row_number, "parquet", row, params, json.dumps(row, ensure_ascii=False, default=str)
            )


BLOCK_PARSERS: dict[str, Callable[[TextBlocks], Iterator[BlockResult]]] = {
    "abstract_lines": parse_abstract_lines,
    "viewer_table": parse_viewer_table,
}
TEXT_PARSERS: dict[str, Callable[[TextLines, IngestParams], Parsed]] = {
    "arxiv_snapshot": parse_arxiv_snapshot,
    "jsonl": parse_jsonl,
}
TABLE_PARSERS: dict[str, Callable[[Path, str, IngestParams], Parsed]] = {
    "csv": parse_csv,
    "parquet": parse_parquet,
}
assert set(BLOCK_PARSERS) | set(TEXT_PARSERS) | set(TABLE_PARSERS) == set(KNOWN_FORMATS)


def _first_lines(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            text = raw.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip()
            if text:
                found.append((number, text))
                if len(found) >= _SNIFF_LINES:
                    break
    return found


def sniff_format(path: Path, name: str) -> str:
    """Guess a raw file's format from its name and first lines.

    Raises:
        BadInputError: the file is empty or matches no known format.
    """
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix == ".csv":
        return "csv"
    first = _first_lines(path)
    if not first:
        raise BadInputError(f"{name}: file is empty; remove it from raw/ or add its content")
    number, text = first[0]
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            if {"id", "abstract", "versions"} <= obj.keys():
                return "arxiv_snapshot"
            return "jsonl"
    if any(_TABLE_ROW.match(line) for _, line in first) and any(
        _TABLE_HEADER.match(line) or line.endswith("|") for _, line in first
    ):
        return "viewer_table"
    label_lines = sum(1 for _, line in first if _ABSTRACT_LINE.match(line))
    if label_lines and label_lines * 2 >= len(first):
        return "abstract_lines"
    raise BadInputError(
        f"{name}:{number}: cannot tell the format (starts with {text[:60]!r}); known formats are "
        f"{', '.join(KNOWN_FORMATS)}; force one with ingest.formats in params.yaml"
    )


def raw_files(raw_dir: Path) -> list[Path]:
    """The dumps under `raw_dir`, sorted; dot files and DVC pointer files are not dumps."""
    if not raw_dir.is_dir():
        raise BadInputError(f"{raw_dir}: raw directory not found; create it and add a dump")
    files = sorted(
        p
        for p in raw_dir.rglob("*")
        if (p.is_file() or p.is_symlink())
        and not any(part.startswith(".") for part in p.relative_to(raw_dir).parts)
        and p.suffix != ".dvc"
    )
    for path in files:
        if not path.exists():
            raise BadInputError(
                f"{path.relative_to(raw_dir)}: cannot read (broken link); restore its target "
                "(`dvc pull` for a DVC-tracked dump) or remove it"
            )
    if not files:
        raise BadInputError(f"{raw_dir}: no raw dumps found; copy at least one dump into it")
    return files


def parse_file(
    path: Path, name: str, fmt: str, params: IngestParams, stats: FileStats, buffer: RecordBuffer
) -> Iterator[Reject]:
    """Parse one file into `buffer`, yielding its rejects, filling `stats` and checking that every
    non-blank line is accounted for."""
    if fmt in BLOCK_PARSERS:
        blocks = TextBlocks(path, name)
        for table, rejects, lines_in_records in BLOCK_PARSERS[fmt](blocks):
            stats.records += table.num_rows
            stats.lines_in_records += lines_in_records
            buffer.add_table(table)
            yield from rejects
        stats.lines, stats.blank_lines = blocks.lines, blocks.blank_lines
    elif fmt in TABLE_PARSERS:
        for item in TABLE_PARSERS[fmt](path, name, params):
            stats.lines += 1
            if isinstance(item, Record):
                stats.records += 1
                buffer.add(item)
            else:
                yield item
        buffer.end_file()
        return
    else:
        lines = TextLines(path, name)
        for item in TEXT_PARSERS[fmt](lines, params):
            if isinstance(item, Record):
                stats.records += 1
                stats.lines_in_records += item.line_count
                buffer.add(item)
            else:
                yield item
        buffer.end_file()
        stats.lines = lines.lines
        stats.blank_lines = lines.blank_lines
    if stats.lines == 0:
        raise BadInputError(f"{name}: file is empty; remove it from raw/ or add its content")


def check_accounting(name: str, stats: FileStats) -> None:
    """Every non-blank line of a text dump is inside a record or rejected."""
    if stats.format in TABLE_PARSERS:
        return
    non_blank = stats.lines - stats.blank_lines
    if non_blank != stats.lines_in_records + stats.rejects:
        raise BadInputError(
            f"{name}: {non_blank} non-blank lines but {stats.lines_in_records} in records and "
            f"{stats.rejects} rejected; the {stats.format} parser lost lines (a bug: please report it)"
        )


class RecordBuffer:
    """Writes records as parquet row groups of exactly `batch_rows` rows (the last may be
    shorter), whatever the sizes of the tables and records handed to it."""

    def __init__(self, writer: pq.ParquetWriter, batch_rows: int, pool: ThreadPoolExecutor) -> None:
        self.writer = writer
        self.batch_rows = batch_rows
        self.tables: list[pa.Table] = []
        self.rows = 0
        self.records: list[Record] = []
        # Row groups are encoded and compressed in `pool` (one thread, so in order) while the
        # next block is parsed; at most one waits there, which bounds memory.
        self.pool = pool
        self.writing: Future[None] | None = None

    def add(self, record: Record) -> None:
        self.records.append(record)
        if len(self.records) >= self.batch_rows:
            self.end_file()

    def end_file(self) -> None:
        """Move the records added one by one into the table queue."""
        if self.records:
            records, self.records = self.records, []
            self.add_table(_records_to_table(records))

    def add_table(self, table: pa.Table) -> None:
        self.end_file()
        if not table.num_rows:
            return
        self.tables.append(table)
        self.rows += table.num_rows
        while self.rows >= self.batch_rows:
            self._write(self.batch_rows)

    def flush(self) -> None:
        self.end_file()
        if self.rows:
            self._write(self.rows)
        self._wait()

    def _wait(self) -> None:
        if self.writing is not None:
            self.writing.result()
            self.writing = None

    def _write(self, rows: int) -> None:
        queued = pa.concat_tables(self.tables)
        # One chunk per column, as a table built from lists has.
        row_group = queued.slice(0, rows).combine_chunks()
        self._wait()
        self.writing = self.pool.submit(self.writer.write_table, row_group)
        rest = queued.slice(rows)
        self.tables = [rest] if rest.num_rows else []
        self.rows -= rows


def _records_to_table(records: list[Record]) -> pa.Table:
    columns: dict[str, list[Any]] = {name: [] for name in RECORD_SCHEMA.names}
    for record in records:
        parsed = parse_arxiv_id(record.raw_id) if record.raw_id else None
        arxiv_id, version = parsed if parsed else (None, None)
        if arxiv_id is not None and version is None:
            version = record.version_hint
        columns["source"].append(f"{record.file}:{record.line}")
        columns["file"].append(record.file)
        columns["line"].append(record.line)
        columns["format"].append(record.format)
        columns["raw_id"].append(record.raw_id)
        columns["arxiv_id"].append(arxiv_id)
        columns["arxiv_version"].append(version)
        columns["raw_text"].append(record.raw_text)
    for name in columns:
        # The source name, locator and paper metadata columns: not read yet.
        if not columns[name]:
            columns[name] = [None] * len(records)
    return pa.table(columns, schema=RECORD_SCHEMA)


def run_ingest(
    raw_dir: Path, out: Path, rejects_out: Path, report_out: Path, params: IngestParams
) -> dict[str, Any]:
    """Parse every dump in `raw_dir`; write records, rejects and the report atomically.

    Returns the report. Raises `BadInputError` (and writes nothing) on an unreadable,
    undecodable, empty or unrecognised file.
    """
    files = raw_files(raw_dir)
    names = {path.relative_to(raw_dir).as_posix() for path in files}
    for forced in params.formats:
        if forced not in names:
            raise BadInputError(f"ingest.formats names {forced!r}, which is not a file in {raw_dir}")
    rejects: list[Reject] = []
    per_file: dict[str, FileStats] = {}
    options = build_file_options(RECORD_SCHEMA, repeated=("file", "format"))
    with parquet_writer(out, RECORD_SCHEMA, options) as writer, ThreadPoolExecutor(max_workers=1) as pool:
        buffer = RecordBuffer(writer, params.batch_rows, pool)
        for index, path in enumerate(files, start=1):
            name = path.relative_to(raw_dir).as_posix()
            try:
                fmt = params.formats.get(name) or sniff_format(path, name)
                stats = per_file[name] = FileStats(format=fmt)
                for reject in parse_file(path, name, fmt, params, stats, buffer):
                    stats.rejects += 1
                    stats.rejects_by_reason[reject.reason] += 1
                    rejects.append(reject)
                check_accounting(name, stats)
            except OSError as exc:
                raise BadInputError(
                    f"{name}: cannot read ({exc.strerror or exc}); check the file's permissions"
                ) from None
            print(
                f"ingest: [{index}/{len(files)}] {name}: {fmt}, {stats.records} records, "
                f"{stats.rejects} rejects",
                file=sys.stderr,
            )
        buffer.flush()
        total_records = sum(s.records for s in per_file.values())
        if total_records == 0:
            raise BadInputError(f"{raw_dir}: no abstracts found in any dump; see {rejects_out.name}")
        report = build_report(per_file)
        write_jsonl([r.as_dict() for r in rejects], rejects_out)
        write_json(report, report_out)
    return report


def build_report(per_file: dict[str, FileStats]) -> dict[str, Any]:
    by_reason: Counter[str] = Counter()
    by_format: Counter[str] = Counter()
    for stats in per_file.values():
        by_reason.update(stats.rejects_by_reason)
        by_format[stats.format] += stats.records
    return {
        "files": {
            name: {
                "format": s.format,
                "lines": s.lines,
                "blank_lines": s.blank_lines,
                "records": s.records,
                "rejects": s.rejects,
                "rejects_by_reason": dict(sorted(s.rejects_by_reason.items())),
            }
            for name, s in per_file.items()
        },
        "totals": {
            "files": len(per_file),
            "lines": sum(s.lines for s in per_file.values()),
            "blank_lines": sum(s.blank_lines for s in per_file.values()),
            "records": sum(s.records for s in per_file.values()),
            "rejects": sum(s.rejects for s in per_file.values()),
        },
        "rejects_by_reason": dict(sorted(by_reason.items())),
        "records_by_format": dict(sorted(by_format.items())),
    }
