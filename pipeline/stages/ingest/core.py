"""Stage `ingest`: every raw dump under `raw/` -> one parquet table of records.

Reads: every file under the raw directory (dot files and DVC pointer files skipped) and the
source declarations (`sources.yaml`, see `sources.py`).
Writes: the records parquet (RECORD_SCHEMA: one row per abstract, with provenance and the
paper's metadata), `rejects.jsonl` (every raw record or line that is not a record, with its
source, file, position and a reason) and `ingest.json` (counts per file and per source).
Params: `ingest.batch_rows`.

Formats (declared per source, else sniffed per file, `sniff.py`): the text dumps of the seeds
and the bench corpus (`abstract_lines`, `viewer_table`: `text_dumps.py`, vectorised) and the
scholarly formats read by `pipeline.io.formats` and mapped onto the columns by `mapping.py`.
Accounting is checked, not assumed: every non-blank line of a text dump is inside exactly one
record or one reject; every record a reader yields is a record or a reject; a source that
yields no records is an error.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.contracts import RECORD_SCHEMA, TEXT_DUMP_COLUMNS
from pipeline.errors import BadInputError
from pipeline.io.formats import RawItems, RawRecord
from pipeline.io.formats.acl_anthology import read_acl_anthology
from pipeline.io.formats.arxiv_xml import read_arxiv_atom, read_arxiv_oai
from pipeline.io.formats.bibtex import read_bibtex
from pipeline.io.formats.compression import decompression_errors
from pipeline.io.formats.delimited import read_delimited
from pipeline.io.formats.json_document import read_json_array, read_json_object
from pipeline.io.formats.json_lines import parse_json_line, read_json_lines
from pipeline.io.formats.openalex import read_openalex
from pipeline.io.formats.parquet import read_parquet
from pipeline.io.writers import build_file_options, parquet_writer, write_json, write_jsonl
from pipeline.params import KNOWN_FORMATS, IngestParams
from pipeline.stages.ingest.mapping import (
    DEFAULT_LICENSES,
    FieldPaths,
    Mapped,
    content,
    field_paths,
    map_record,
)
from pipeline.stages.ingest.report import FileStats, build_report, source_summary
from pipeline.stages.ingest.snapshot import parse_block, raw_records
from pipeline.stages.ingest.sniff import sniff_format
from pipeline.stages.ingest.sources import RawFile, assign_sources, load_sources
from pipeline.stages.ingest.text_dumps import BLOCK_PARSERS, Lines, Numbers, Reject, TextBlocks

READERS: dict[str, Callable[[Path, str], RawItems]] = {
    "arxiv_snapshot": read_json_lines,
    "jsonl": read_json_lines,
    "openalex": read_openalex,
    "semantic_scholar": read_json_lines,
    "json_array": read_json_array,
    "json_object": read_json_object,
    "csv": partial(read_delimited, delimiter=","),
    "tsv": partial(read_delimited, delimiter="\t"),
    "parquet": read_parquet,
    "acl_xml": read_acl_anthology,
    "bibtex": read_bibtex,
    "arxiv_oai": read_arxiv_oai,
    "arxiv_atom": read_arxiv_atom,
}
assert set(BLOCK_PARSERS) | set(READERS) == set(KNOWN_FORMATS)
# RowBuilder.add lists a record's values in this order.
assert RECORD_SCHEMA.names == [
    *TEXT_DUMP_COLUMNS,
    "source_name",
    "locator",
    "title",
    "authors",
    "year",
    "published",
    "venue",
    "categories",
    "doi",
    "url",
    "license",
    "source_ids",
]


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
    # A link may point into the project (DVC's symlink or hardlink cache), never out of it:
    # what is released must be rebuildable from the checkout.
    project = raw_dir.resolve().parent
    for path in files:
        if not path.exists():
            raise BadInputError(
                f"{path.relative_to(raw_dir)}: cannot read (broken link); restore its target "
                "(`dvc pull` for a DVC-tracked dump) or remove it"
            )
        if path.is_symlink() and not path.resolve().is_relative_to(project):
            raise BadInputError(
                f"{path.relative_to(raw_dir)}: links outside the project (to {path.resolve()}); a clone "
                "could not rebuild the release: copy the file into raw/ (`dvc add` it if large)"
            )
    if not files:
        raise BadInputError(f"{raw_dir}: no raw dumps found; copy at least one dump into it")
    return files


def _license(raw: RawFile) -> str | None:
    if raw.decl is not None and raw.decl.license is not None:
        return raw.decl.license
    return DEFAULT_LICENSES.get(raw.format)


def complete_text_dump(table: pa.Table, raw: RawFile) -> pa.Table:
    """A text-dump table (TEXT_DUMP_SCHEMA) with the source's columns: source name, locator and
    licence; the metadata the dumps lack is null."""
    count = table.num_rows
    license_id = _license(raw)
    extra: dict[str, pa.Array] = {
        "source_name": pa.repeat(pa.scalar(raw.source, pa.string()), count),
        "locator": pc.binary_join_element_wise("line ", table["line"].cast(pa.string()), ""),
        "license": pa.repeat(pa.scalar(license_id, pa.string()), count),
    }
    columns = [
        table[name]
        if name in TEXT_DUMP_COLUMNS
        else extra.get(name, pa.nulls(count, RECORD_SCHEMA.field(name).type))
        for name in RECORD_SCHEMA.names
    ]
    return pa.Table.from_arrays(columns, schema=RECORD_SCHEMA)


class RowBuilder:
    """RECORD_SCHEMA rows of the mapped formats, a column list each, turned into tables."""

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {name: [] for name in RECORD_SCHEMA.names}
        self.lists = list(self.columns.values())
        self.rows = 0

    def add(
        self, raw: RawFile, record: RawRecord, mapped: Mapped, abstract: str, license_id: str | None
    ) -> None:
        values = (
            f"{raw.name}:{record.line}",
            raw.name,
            record.line,
            raw.format,
            mapped.raw_id,
            mapped.arxiv_id,
            mapped.arxiv_version,
            abstract,
            raw.source,
            record.locator,
            mapped.title,
            mapped.authors,
            mapped.year,
            mapped.published,
            mapped.venue,
            mapped.categories,
            mapped.doi,
            mapped.url,
            license_id,
            mapped.source_ids,
        )
        for column, value in zip(self.lists, values, strict=True):
            column.append(value)
        self.rows += 1

    def take(self) -> pa.Table:
        table = pa.table(self.columns, schema=RECORD_SCHEMA)
        self.columns = {name: [] for name in RECORD_SCHEMA.names}
        self.lists = list(self.columns.values())
        self.rows = 0
        return table


def read_mapped(raw: RawFile, stats: FileStats, buffer: RecordBuffer, batch_rows: int) -> Iterator[Reject]:
    """Read one file of a mapped format into `buffer`, yielding its rejects."""
    decl = raw.decl
    paths = field_paths(raw.format, decl.field if decl else {}, f"{decl.where}.field" if decl else "field")
    defaults = decl.defaults if decl else {}
    if raw.format == "arxiv_snapshot" and not defaults and not (decl and decl.field):
        yield from read_snapshot(raw, stats, buffer, paths)
        return
    yield from map_items(
        raw, READERS[raw.format](raw.path, raw.name), paths, defaults, stats, buffer, batch_rows
    )


def _snapshot_rows(
    raw: RawFile,
    paths: FieldPaths,
    license_id: str | None,
    numbers: Numbers,
    lines: Lines,
    indexes: list[int],
) -> pa.Table:
    """Some lines of a snapshot block through the per-record mapping, as RECORD_SCHEMA rows."""
    builder = RowBuilder()
    for number, text in raw_records(numbers, lines, indexes):
        item = parse_json_line(number, text)
        assert isinstance(item, RawRecord)
        mapped = map_record(item.fields, paths, {}, raw.format)
        builder.add(raw, item, mapped, mapped.abstract or "", license_id)
    return builder.take()


def read_snapshot(
    raw: RawFile, stats: FileStats, buffer: RecordBuffer, paths: FieldPaths
) -> Iterator[Reject]:
    """The arXiv snapshot a block of lines at a time (`snapshot.py`), the per-record mapping
    for what the block expressions leave."""
    license_id = _license(raw)
    blocks = TextBlocks(raw.path, raw.name)
    for numbers, lines in blocks:
        python_rows = partial(_snapshot_rows, raw, paths, license_id, numbers, lines)
        result = parse_block(raw.name, numbers, lines, raw.source, license_id, python_rows)
        if result is None:
            items = (
                parse_json_line(number, text)
                for number, text in raw_records(numbers, lines, list(range(len(lines))))
            )
            yield from map_items(raw, items, paths, {}, stats, buffer, len(lines) or 1)
            continue
        table, rejects, _ = result
        stats.records += table.num_rows
        buffer.add_table(table)
        yield from rejects
    stats.lines, stats.blank_lines = blocks.lines, blocks.blank_lines
    # One record or reject per non-blank line, as for the text dumps.
    stats.lines_in_records = stats.records
    stats.counts_lines = True


def map_items(
    raw: RawFile,
    items: RawItems,
    paths: FieldPaths,
    defaults: Mapping[str, Any],
    stats: FileStats,
    buffer: RecordBuffer,
    batch_rows: int,
) -> Iterator[Reject]:
    """Map a reader's items onto RECORD_SCHEMA rows into `buffer`, yielding the rejects."""
    license_id = _license(raw)
    builder = RowBuilder()
    for item in items:
        if not isinstance(item, RawRecord):
            yield Reject(raw.name, item.line, item.reason, item.content, item.locator, item.detail)
            continue
        mapped = map_record(item.fields, paths, defaults, raw.format)
        if mapped.abstract is None:
            # No field of the abstract's names at all is a mapping problem, not an empty text.
            present = any(steps and steps[0].name in item.fields for steps in paths.paths["abstract"])
            reason = "empty_abstract" if present else "no_abstract_field"
            yield Reject(raw.name, item.line, reason, content(item.fields), item.locator)
            continue
        builder.add(raw, item, mapped, mapped.abstract, license_id)
        stats.records += 1
        if builder.rows >= batch_rows:
            buffer.add_table(builder.take())
    if builder.rows:
        buffer.add_table(builder.take())


def parse_file(
    raw: RawFile, params: IngestParams, stats: FileStats, buffer: RecordBuffer
) -> Iterator[Reject]:
    """Parse one file into `buffer`, yielding its rejects, filling `stats` and checking that every
    non-blank line of a text dump is accounted for."""
    if raw.format in BLOCK_PARSERS:
        blocks = TextBlocks(raw.path, raw.name)
        for table, rejects, lines_in_records in BLOCK_PARSERS[raw.format](blocks):
            stats.records += table.num_rows
            stats.lines_in_records += lines_in_records
            buffer.add_table(complete_text_dump(table, raw))
            yield from rejects
        stats.lines, stats.blank_lines = blocks.lines, blocks.blank_lines
        stats.counts_lines = True
        if stats.lines == 0:
            raise BadInputError(f"{raw.name}: file is empty; remove it from raw/ or add its content")
    else:
        yield from read_mapped(raw, stats, buffer, params.batch_rows)


def check_accounting(name: str, stats: FileStats) -> None:
    """Every non-blank line of a text dump or snapshot is inside a record or rejected; the other
    formats count records read as their lines."""
    if not stats.counts_lines:
        stats.lines = stats.records + stats.rejects
        return
    non_blank = stats.lines - stats.blank_lines
    if non_blank != stats.lines_in_records + stats.rejects:
        raise BadInputError(
            f"{name}: {non_blank} non-blank lines but {stats.lines_in_records} in records and "
            f"{stats.rejects} rejected; the {stats.format} parser lost lines (a bug: please report it)"
        )


class RecordBuffer:
    """Writes records as parquet row groups of exactly `batch_rows` rows (the last may be
    shorter), whatever the sizes of the tables handed to it."""

    def __init__(self, writer: pq.ParquetWriter, batch_rows: int, pool: ThreadPoolExecutor) -> None:
        self.writer = writer
        self.batch_rows = batch_rows
        self.tables: list[pa.Table] = []
        self.rows = 0
        # Row groups are encoded and compressed in `pool` (one thread, so in order) while the
        # next block is parsed; at most one waits there, which bounds memory.
        self.pool = pool
        self.writing: Future[None] | None = None

    def add_table(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        self.tables.append(table)
        self.rows += table.num_rows
        while self.rows >= self.batch_rows:
            self._write(self.batch_rows)

    def flush(self) -> None:
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


def _zero_records_message(source: str, stats: list[FileStats], rejects: list[Reject]) -> str:
    reasons: dict[str, int] = {}
    for file_stats in stats:
        for reason, count in file_stats.rejects_by_reason.items():
            reasons[reason] = reasons.get(reason, 0) + count
    first = rejects[0] if rejects else None
    detail = ""
    if first is not None:
        counts = ", ".join(f"{reason}: {count}" for reason, count in sorted(reasons.items()))
        where = first.locator or f"line {first.line}"
        detail = f"; its {sum(reasons.values())} records were rejected ({counts}), the first at"
        detail += f" {first.file} {where}"
    return (
        f"source {source!r} yielded no records{detail}; check its format and field mapping in "
        "sources.yaml (`format:`, `field: {abstract: <field path>}`) or remove its files"
    )


def run_ingest(
    raw_dir: Path,
    out: Path,
    rejects_out: Path,
    report_out: Path,
    params: IngestParams,
    sources_path: Path | None = None,
) -> dict[str, Any]:
    """Parse every dump in `raw_dir` by its source; write records, rejects and the report atomically.

    Returns the report. Raises `BadInputError` (and writes nothing) on an unreadable,
    undecodable, empty or unrecognised file, a bad declaration or a source without records.
    """
    decls = load_sources(sources_path)
    assigned = assign_sources(raw_dir, raw_files(raw_dir), decls, sniff_format)
    rejects: list[tuple[Reject, RawFile]] = []
    per_file: dict[str, FileStats] = {}
    options = build_file_options(RECORD_SCHEMA, repeated=("file", "format", "source_name", "license"))
    with parquet_writer(out, RECORD_SCHEMA, options) as writer, ThreadPoolExecutor(max_workers=1) as pool:
        buffer = RecordBuffer(writer, params.batch_rows, pool)
        for index, raw in enumerate(assigned, start=1):
            stats = per_file[raw.name] = FileStats(
                format=raw.format, source=raw.source, license=_license(raw)
            )
            try:
                for reject in parse_file(raw, params, stats, buffer):
                    stats.rejects += 1
                    stats.rejects_by_reason[reject.reason] += 1
                    rejects.append((reject, raw))
                check_accounting(raw.name, stats)
            except decompression_errors() as exc:
                if isinstance(exc, OSError) and not isinstance(exc, EOFError) and exc.strerror:
                    raise BadInputError(
                        f"{raw.name}: cannot read ({exc.strerror}); check the file's permissions"
                    ) from None
                raise BadInputError(
                    f"{raw.name}: cannot be read or decompressed ({exc}); re-download or re-compress it"
                ) from None
            print(
                f"ingest: [{index}/{len(assigned)}] {raw.name}: {raw.source} ({raw.format}), "
                f"{stats.records} records, {stats.rejects} rejects",
                file=sys.stderr,
            )
        buffer.flush()
        by_source = source_summary(per_file)
        for source, summary in by_source.items():
            if summary["records"] == 0:
                source_stats = [s for s in per_file.values() if s.source == source]
                source_rejects = [r for r, raw in rejects if raw.source == source]
                raise BadInputError(_zero_records_message(source, source_stats, source_rejects))
        report = build_report(per_file)
        write_jsonl([reject.as_dict(raw.source, raw.format) for reject, raw in rejects], rejects_out)
        write_json(report, report_out)
    return report
