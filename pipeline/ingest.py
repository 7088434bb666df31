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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.arxiv_ids import parse_arxiv_id
from pipeline.errors import BadInputError
from pipeline.outputs import parquet_writer, write_json, write_jsonl
from pipeline.params import KNOWN_FORMATS, IngestParams

RECORD_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("file", pa.string(), nullable=False),
        pa.field("line", pa.int64(), nullable=False),
        pa.field("format", pa.string(), nullable=False),
        pa.field("raw_id", pa.string()),
        pa.field("arxiv_id", pa.string()),
        pa.field("arxiv_version", pa.int64()),
        pa.field("raw_text", pa.string(), nullable=False),
    ]
)

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


def parse_abstract_lines(lines: TextLines, _params: IngestParams) -> Parsed:
    """One abstract per line behind an `Abstract:` label; any other non-blank line is a reject."""
    for number, text in lines:
        if not text:
            continue
        if not _ABSTRACT_LINE.match(text):
            yield Reject(lines.name, number, "stray_line", text)
        elif not _ABSTRACT_LINE.sub("", text, count=1).strip():
            yield Reject(lines.name, number, "empty_abstract", text)
        else:
            yield Record(lines.name, number, "abstract_lines", text)


def parse_viewer_table(lines: TextLines, _params: IngestParams) -> Parsed:
    """`<id> | text` rows that run until a line ending in the `|` cell separator."""
    open_row: dict[str, Any] | None = None

    def close() -> Parsed:
        nonlocal open_row
        if open_row is not None:
            text = "\n".join(open_row["parts"])
            if text.strip(" |\n"):
                yield Record(
                    lines.name,
                    open_row["line"],
                    "viewer_table",
                    text,
                    raw_id=open_row["id"],
                    line_count=len(open_row["raw"]),
                )
            else:
                for number, raw in open_row["raw"]:
                    yield Reject(lines.name, number, "empty_abstract", raw)
        open_row = None

    for number, text in lines:
        if not text:
            continue
        row = _TABLE_ROW.match(text)
        if row is not None:
            yield from close()
            open_row = {
                "id": row.group("id"),
                "line": number,
                "parts": [row.group("text")],
                "raw": [(number, text)],
            }
        elif _TABLE_HEADER.match(text):
            yield from close()
            yield Reject(lines.name, number, "table_header", text)
        elif open_row is not None:
            open_row["parts"].append(text)
            open_row["raw"].append((number, text))
        else:
            yield Reject(lines.name, number, "stray_line", text)
            continue
        if open_row is not None and text.endswith("|"):
            yield from close()
    yield from close()


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


TEXT_PARSERS: dict[str, Callable[[TextLines, IngestParams], Parsed]] = {
    "abstract_lines": parse_abstract_lines,
    "viewer_table": parse_viewer_table,
    "arxiv_snapshot": parse_arxiv_snapshot,
    "jsonl": parse_jsonl,
}
TABLE_PARSERS: dict[str, Callable[[Path, str, IngestParams], Parsed]] = {
    "csv": parse_csv,
    "parquet": parse_parquet,
}
assert set(TEXT_PARSERS) | set(TABLE_PARSERS) == set(KNOWN_FORMATS)


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


def parse_file(path: Path, name: str, fmt: str, params: IngestParams, stats: FileStats) -> Parsed:
    """Parse one file, filling `stats` and checking that every non-blank line is accounted for."""
    if fmt in TABLE_PARSERS:
        for item in TABLE_PARSERS[fmt](path, name, params):
            stats.lines += 1
            yield item
        return
    lines = TextLines(path, name)
    for item in TEXT_PARSERS[fmt](lines, params):
        if isinstance(item, Record):
            stats.lines_in_records += item.line_count
        yield item
    stats.lines = lines.lines
    stats.blank_lines = lines.blank_lines
    if stats.lines == 0:
        raise BadInputError(f"{name}: file is empty; remove it from raw/ or add its content")
    non_blank = stats.lines - stats.blank_lines
    if non_blank != stats.lines_in_records + stats.rejects:
        raise BadInputError(
            f"{name}: {non_blank} non-blank lines but {stats.lines_in_records} in records and "
            f"{stats.rejects} rejected; the {fmt} parser lost lines (a bug: please report it)"
        )


class RecordBuffer:
    """Columnar buffer that flushes a parquet row group every `batch_rows` records."""

    def __init__(self, writer: pq.ParquetWriter, batch_rows: int) -> None:
        self.writer = writer
        self.batch_rows = batch_rows
        self.columns: dict[str, list[Any]] = {name: [] for name in RECORD_SCHEMA.names}

    def add(self, record: Record) -> None:
        parsed = parse_arxiv_id(record.raw_id) if record.raw_id else None
        arxiv_id, version = parsed if parsed else (None, None)
        if arxiv_id is not None and version is None:
            version = record.version_hint
        columns = self.columns
        columns["source"].append(f"{record.file}:{record.line}")
        columns["file"].append(record.file)
        columns["line"].append(record.line)
        columns["format"].append(record.format)
        columns["raw_id"].append(record.raw_id)
        columns["arxiv_id"].append(arxiv_id)
        columns["arxiv_version"].append(version)
        columns["raw_text"].append(record.raw_text)
        if len(columns["source"]) >= self.batch_rows:
            self.flush()

    def flush(self) -> None:
        if self.columns["source"]:
            self.writer.write_table(pa.table(self.columns, schema=RECORD_SCHEMA))
            self.columns = {name: [] for name in RECORD_SCHEMA.names}


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
    with parquet_writer(out, RECORD_SCHEMA) as writer:
        buffer = RecordBuffer(writer, params.batch_rows)
        for index, path in enumerate(files, start=1):
            name = path.relative_to(raw_dir).as_posix()
            try:
                fmt = params.formats.get(name) or sniff_format(path, name)
                stats = per_file[name] = FileStats(format=fmt)
                for item in parse_file(path, name, fmt, params, stats):
                    if isinstance(item, Record):
                        stats.records += 1
                        buffer.add(item)
                    else:
                        stats.rejects += 1
                        stats.rejects_by_reason[item.reason] += 1
                        rejects.append(item)
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
